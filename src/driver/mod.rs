//! Session drivers: the sockets, threads and clock reads around the sans-IO sessions of `session/`. A driver
//! moves bytes between a socket and a session, carries out the session's actions, and feeds it `now`; it
//! decides nothing the session could decide.

pub mod ctl;
pub mod load;
pub mod receiver;
pub mod sender;
pub mod tcp;
pub mod udp;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::accounting::SendStats;
use crate::auth::{Dir, SessionKeys};
use crate::cancel::Cancel;
use crate::clock::{self, TimerMode, Waiter};
use crate::pacing::{Due, EchoWindow, SendPlan};
use crate::trace::Timer;
use crate::wire::Stamper;

/// What a windowed echo loop (`--outstanding`) does next.
pub enum EchoStep {
    /// Send this message now.
    Send { seq: u64, sched_ns: i64 },
    /// Read replies until then: the next send time or the oldest message's give-up, whichever is first.
    WaitUntil(Instant),
    /// The plan is over and no reply is awaited.
    Over,
}

/// Where a send loop puts the messages of one send call: slot `k` of the call, `len` bytes, the template's
/// bytes already in it (or copied in from `template`), for the header to be stamped in place.
pub trait Slots {
    fn slot(&mut self, k: usize, len: usize, template: &[u8]) -> &mut [u8];
}

/// What a send loop needs besides its socket: the schedule, the message template, cancellation, the
/// session's keys (authenticated sessions MAC every message) and the counters other threads read.
pub struct SendJob {
    pub plan: SendPlan,
    pub template: Vec<u8>,
    pub cancel: Cancel,
    /// --trace: times each send call.
    pub timer: Timer,
    pub keys: Option<SessionKeys>,
    /// Messages the kernel accepted so far (the progress display).
    pub sent: Arc<AtomicU64>,
    /// Sequence numbers handed out so far, published before they are sent: an echo reply above them cannot be
    /// a reply, which bounds what a forged one can make the echo reader hold.
    pub issued: Arc<AtomicU64>,
    /// How the loop waits for send times (the waiter is made on the sending thread: its timer slack is).
    pub wait: TimerMode,
    /// UDP: send equal-size messages through GSO where the kernel has it.
    pub gso: bool,
    /// Every message is the template's size (no --size-mix): buffers can hold stamped copies of it in place.
    pub fixed_size: bool,
    /// TCP --write-per-message: one write call per message, as iperf -l and sockperf do.
    pub write_per_message: bool,
}

impl SendJob {
    /// Finish a stamped message: its MAC, when the session is authenticated.
    #[inline]
    pub fn seal(&self, msg: &mut [u8]) {
        if let Some(k) = &self.keys {
            k.seal_message(Dir::SenderToReceiver, msg);
        }
    }

    /// Sequence numbers below `n` are about to leave.
    #[inline]
    pub fn issue(&self, n: u64) {
        self.issued.fetch_max(n, Ordering::Relaxed);
    }

    /// The next step of a windowed echo loop: a message when the window has room and one is due, else how long
    /// to read replies.
    pub fn echo_step(&mut self, window: &mut EchoWindow) -> EchoStep {
        let now = clock::now();
        if !window.has_room(now.mono) {
            return EchoStep::WaitUntil(window.deadline().unwrap_or(now.mono));
        }
        match self.plan.next(now) {
            Due::Now { seq, sched_ns } => EchoStep::Send { seq, sched_ns },
            // Wait for a reply, but leave on time: the schedule still holds.
            Due::At(t) => EchoStep::WaitUntil(window.deadline().map_or(t, |d| d.min(t))),
            Due::Over => window
                .deadline()
                .map_or(EchoStep::Over, EchoStep::WaitUntil),
        }
    }

    /// The messages of the next send call: up to `cap` that are due now, each stamped (its send time read just
    /// before) and sealed in its slot. With nothing due it waits for the next send time. None: the plan is
    /// over or the job cancelled; otherwise how many messages are in the slots, at least one.
    pub fn next_batch(
        &mut self,
        slots: &mut impl Slots,
        cap: usize,
        stamper: &Stamper,
        waiter: &mut Waiter,
        st: &mut SendStats,
    ) -> Option<usize> {
        let (mut k, mut next_seq) = (0, 0);
        while k < cap {
            match self.plan.next(clock::now()) {
                Due::Now { seq, sched_ns } => {
                    let msg = slots.slot(k, self.plan.size_of(seq), &self.template);
                    let send_ns = clock::now_ns();
                    stamper.stamp(msg, seq, sched_ns, send_ns);
                    if let Some(keys) = &self.keys {
                        keys.seal_message(Dir::SenderToReceiver, msg);
                    }
                    st.stamp(send_ns, sched_ns);
                    next_seq = seq + 1;
                    k += 1;
                }
                Due::At(t) if k == 0 => {
                    let cancel = &self.cancel;
                    waiter.wait_until(t, &|| cancel.is_cancelled());
                    if self.cancel.is_cancelled() {
                        return None;
                    }
                }
                Due::Over if k == 0 => return None,
                Due::At(_) | Due::Over => break,
            }
        }
        self.issue(next_seq);
        Some(k)
    }
}

/// Wait until a reply is readable (true) or `until` (false). Far waits block in the receive call itself (the
/// socket's 50 ms timeout bounds them, for the stop flag): one system call per reply, as ping-pong needs.
pub fn wait_replies(
    sock: impl std::os::fd::AsFd,
    until: Instant,
    waiter: &mut Waiter,
    cancel: &Cancel,
) -> bool {
    let left = until.saturating_duration_since(clock::mono());
    if left >= std::time::Duration::from_millis(50) {
        return true;
    }
    if left.is_zero() {
        return false;
    }
    // Wake a little early for the reply, then finish on the send timer, so a paced message leaves on time.
    let early = left.saturating_sub(waiter.margin());
    if !early.is_zero() && crate::sys::poll::wait_readable(&sock, early) {
        return true;
    }
    waiter.wait_until(until, &|| cancel.is_cancelled());
    false
}
