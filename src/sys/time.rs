//! The calling thread's view of time: the CLOCK_REALTIME reading and the timer slack of its sleeps.

use nix::time::{clock_gettime, ClockId};

/// CLOCK_REALTIME in ns since the Unix epoch (negative before it). The same clock as SO_TIMESTAMPNS.
#[inline]
pub fn realtime_ns() -> i64 {
    // CLOCK_REALTIME always exists on Linux and the vDSO reads it without failing; 0 only on an impossible error.
    clock_gettime(ClockId::CLOCK_REALTIME).map_or(0, |ts| {
        // time_t and c_long are 32-bit on some targets, hence the casts.
        #[allow(clippy::unnecessary_cast)]
        let ns = ts.tv_sec() as i64 * 1_000_000_000 + ts.tv_nsec() as i64;
        ns
    })
}

/// CPU time this thread has used, ns (CLOCK_THREAD_CPUTIME_ID); None where the clock is missing.
pub fn thread_cpu_ns() -> Option<u64> {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .ok()
        .map(|ts| {
            #[allow(clippy::unnecessary_cast)]
            let ns = ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64;
            ns
        })
}

/// Make this thread's sleeps wake within ~1 µs of the deadline instead of the default 50 µs slack.
/// Best effort: a kernel that refuses leaves the default, which only makes pacing coarser.
pub fn tight_timer_slack() {
    let _ = nix::sys::prctl::set_timerslack(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_agrees_with_system_time() {
        let std_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let ours = realtime_ns();
        // Both read CLOCK_REALTIME; a second covers a slow, loaded test machine.
        assert!((ours - std_ns).abs() < 1_000_000_000, "{ours} vs {std_ns}");
    }

    #[test]
    fn timer_slack_is_set_for_this_thread() {
        std::thread::spawn(|| {
            tight_timer_slack();
            assert_eq!(nix::sys::prctl::get_timerslack().unwrap(), 1);
        })
        .join()
        .unwrap();
    }
}
