//! `--trace`: the Berkeley socket calls each side made on its data path (socket, setsockopt, bind, listen,
//! accept, connect, send/sendmmsg, recv/recvmmsg, shutdown, close), with the descriptor, addresses, result or
//! errno, and duration. One-off calls are one line each; the per-message calls are aggregated (count, total
//! time, p50/p99), because tracing each of a million sends would change what is measured.
//!
//! The control connection is not traced: it is sockbench's own bookkeeping, not the transport under test.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::clock::now_ns;

/// One traced call, or an aggregate of many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When the call began, ns since the Unix epoch on the sender's clock (receiver events are corrected).
    pub t_ns: i64,
    pub side: String,
    pub call: String,
    /// -1 before a descriptor exists (e.g. a failed socket()).
    pub fd: i32,
    pub detail: String,
    /// The return value in words ("fd 7", "0", "bound 0.0.0.0:41234") or the errno name and text.
    pub result: String,
    pub duration_ns: u64,
    /// Aggregates only: how many calls, their total time and their p50/p99 (0 for one-off calls).
    pub count: u64,
    pub total_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
}

impl Event {
    /// One call (not an aggregate).
    pub fn once(
        side: &str,
        call: &str,
        fd: i32,
        detail: String,
        result: String,
        t_ns: i64,
        duration_ns: u64,
    ) -> Event {
        Event {
            t_ns,
            side: side.into(),
            call: call.into(),
            fd,
            detail,
            result,
            duration_ns,
            count: 0,
            total_ns: 0,
            p50_ns: 0,
            p99_ns: 0,
        }
    }

    pub fn is_aggregate(&self) -> bool {
        self.count > 0
    }
}

/// Records events when on; every method is a no-op when off, so untraced runs pay one branch.
#[derive(Clone, Debug, Default)]
pub struct Tracer {
    inner: Option<Arc<Mutex<Vec<Event>>>>,
    side: &'static str,
}

fn errno_text(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EADDRINUSE) => "EADDRINUSE",
        Some(libc::ECONNREFUSED) => "ECONNREFUSED",
        Some(libc::ETIMEDOUT) => "ETIMEDOUT",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL",
        Some(libc::ENETUNREACH) => "ENETUNREACH",
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH",
        Some(libc::EAGAIN) => "EAGAIN",
        Some(libc::ENOBUFS) => "ENOBUFS",
        Some(libc::EINPROGRESS) => "EINPROGRESS",
        Some(libc::EPERM) => "EPERM",
        _ => "error",
    };
    format!("-1 {name} ({e})")
}

impl Tracer {
    pub fn off() -> Tracer {
        Tracer::default()
    }

    pub fn on(side: &'static str) -> Tracer {
        Tracer {
            inner: Some(Arc::new(Mutex::new(Vec::new()))),
            side,
        }
    }

    /// On or off as asked.
    pub fn new(on: bool, side: &'static str) -> Tracer {
        if on {
            Tracer::on(side)
        } else {
            Tracer::off()
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    fn push(&self, e: Event) {
        if let Some(v) = &self.inner {
            v.lock().expect("trace events").push(e);
        }
    }

    /// Run one socket call, timing it and recording its result (or errno).
    pub fn call<T>(
        &self,
        call: &str,
        fd: i32,
        detail: impl FnOnce() -> String,
        f: impl FnOnce() -> io::Result<T>,
        ok: impl FnOnce(&T) -> String,
    ) -> io::Result<T> {
        if !self.enabled() {
            return f();
        }
        let t_ns = now_ns();
        let t0 = crate::clock::mono();
        let r = f();
        let duration_ns = crate::clock::since(t0).as_nanos() as u64;
        let result = match &r {
            Ok(v) => ok(v),
            Err(e) => errno_text(e),
        };
        self.push(Event::once(
            self.side,
            call,
            fd,
            detail(),
            result,
            t_ns,
            duration_ns,
        ));
        r
    }

    /// Record a call that already happened (its start and duration measured by the caller).
    pub fn record(
        &self,
        call: &str,
        fd: i32,
        detail: String,
        result: String,
        t_ns: i64,
        duration_ns: u64,
    ) {
        self.push(Event::once(
            self.side,
            call,
            fd,
            detail,
            result,
            t_ns,
            duration_ns,
        ));
    }

    /// Record the aggregate of a per-message call.
    pub fn aggregate(&self, call: &str, fd: i32, detail: String, s: &CallStats) {
        if s.count == 0 {
            return;
        }
        self.push(Event {
            t_ns: s.first_ns,
            side: self.side.into(),
            call: call.into(),
            fd,
            detail,
            result: if s.errors > 0 {
                format!("{} errors", s.errors)
            } else {
                "ok".into()
            },
            duration_ns: 0,
            count: s.count,
            total_ns: s.total_ns,
            p50_ns: s.hist.value_at_quantile(0.5),
            p99_ns: s.hist.value_at_quantile(0.99),
        });
    }

    /// Add events recorded elsewhere (e.g. the receiver's, sent back with its results).
    pub fn extend(&self, events: impl IntoIterator<Item = Event>) {
        if let Some(v) = &self.inner {
            v.lock().expect("trace events").extend(events);
        }
    }

    /// The events so far, in time order.
    pub fn events(&self) -> Vec<Event> {
        let mut e = self
            .inner
            .as_ref()
            .map(|v| v.lock().expect("trace events").clone())
            .unwrap_or_default();
        e.sort_by_key(|x| x.t_ns);
        e
    }
}

/// Timing of a per-message call (send, recv, sendmmsg, recvmmsg), kept by the loop that makes it.
#[derive(Debug, Clone)]
pub struct CallStats {
    pub count: u64,
    pub errors: u64,
    pub total_ns: u64,
    first_ns: i64,
    hist: Histogram<u64>,
}

impl Default for CallStats {
    fn default() -> CallStats {
        CallStats {
            count: 0,
            errors: 0,
            total_ns: 0,
            first_ns: 0,
            hist: crate::stats::new_ns_histogram(),
        }
    }
}

impl CallStats {
    pub fn record(&mut self, start: Instant, ok: bool) {
        self.record_duration(crate::clock::since(start).as_nanos() as u64, ok);
    }

    pub fn record_duration(&mut self, d: u64, ok: bool) {
        if self.count == 0 {
            self.first_ns = now_ns() - d as i64;
        }
        self.count += 1;
        self.total_ns += d;
        if !ok {
            self.errors += 1;
        }
        self.hist.saturating_record(d.max(1));
    }
}

/// Times per-message calls only when tracing: the loops call `start` and `done` around each call.
#[derive(Debug, Default)]
pub struct Timer(Option<CallStats>);

impl Timer {
    pub fn new(on: bool) -> Timer {
        Timer(on.then(CallStats::default))
    }
    #[inline]
    pub fn start(&self) -> Option<Instant> {
        self.0.as_ref().map(|_| crate::clock::mono())
    }
    #[inline]
    pub fn done(&mut self, start: Option<Instant>, ok: bool) {
        if let (Some(s), Some(t)) = (&mut self.0, start) {
            s.record(t, ok);
        }
    }
    /// Add a call timed by the caller (one recvmmsg shared by several sessions).
    #[inline]
    pub fn add(&mut self, d: std::time::Duration) {
        if let Some(s) = &mut self.0 {
            s.record_duration(d.as_nanos() as u64, true);
        }
    }
    pub fn stats(&self) -> Option<&CallStats> {
        self.0.as_ref()
    }
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// Print a trace as a timeline: milliseconds since the first call, side, call, fd, result, duration, detail.
pub fn print(out: &mut dyn Write, title: &str, events: &[Event]) -> io::Result<()> {
    let t0 = events.iter().map(|e| e.t_ns).min().unwrap_or(0);
    let rw = events
        .iter()
        .filter(|e| !e.is_aggregate())
        .map(|e| e.result.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    writeln!(
        out,
        "trace {title}: socket calls on the data path (control connection not shown)"
    )?;
    writeln!(
        out,
        "  {:>9}  {:<8} {:<10} {:>3}  {:<rw$}  {:>8}  detail",
        "t ms", "side", "call", "fd", "result", "µs"
    )?;
    for e in events.iter().filter(|e| !e.is_aggregate()) {
        writeln!(
            out,
            "  {:>9.3}  {:<8} {:<10} {:>3}  {:<rw$}  {:>8}  {}",
            (e.t_ns - t0) as f64 / 1e6,
            e.side,
            e.call,
            e.fd,
            e.result,
            us(e.duration_ns),
            e.detail
        )?;
    }
    let aggs: Vec<&Event> = events.iter().filter(|e| e.is_aggregate()).collect();
    if !aggs.is_empty() {
        writeln!(out, "  per-message calls, aggregated:")?;
        for e in aggs {
            writeln!(
                out,
                "  {:>9.3}  {:<8} {:<10} {:>3}  {} calls, {} µs in all, p50 {} µs, p99 {} µs{}: {}",
                (e.t_ns - t0) as f64 / 1e6,
                e.side,
                e.call,
                e.fd,
                e.count,
                us(e.total_ns),
                us(e.p50_ns),
                us(e.p99_ns),
                if e.result == "ok" {
                    String::new()
                } else {
                    format!(", {}", e.result)
                },
                e.detail
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_records_nothing_and_still_runs_the_call() {
        let t = Tracer::off();
        assert_eq!(
            t.call("socket", -1, || "x".into(), || Ok(5), |v| v.to_string())
                .unwrap(),
            5
        );
        assert!(t.events().is_empty());
    }

    #[test]
    fn calls_keep_result_or_errno_and_order() {
        let t = Tracer::on("sender");
        let _ = t.call(
            "bind",
            3,
            || "127.0.0.1:1".into(),
            || Err::<(), _>(io::Error::from_raw_os_error(libc::EADDRINUSE)),
            |_| "0".into(),
        );
        let _ = t.call(
            "listen",
            3,
            || "backlog 128".into(),
            || Ok(()),
            |_| "0".into(),
        );
        let e = t.events();
        assert_eq!(e.len(), 2);
        assert!(e[0].result.starts_with("-1 EADDRINUSE"), "{}", e[0].result);
        assert_eq!(
            (e[1].call.as_str(), e[1].result.as_str(), e[1].fd),
            ("listen", "0", 3)
        );
    }

    #[test]
    fn aggregates_count_and_time() {
        let t = Tracer::on("receiver");
        let mut timer = Timer::new(true);
        for _ in 0..10 {
            let s = timer.start();
            timer.done(s, true);
        }
        t.aggregate("recv", 4, "x".into(), timer.stats().unwrap());
        let e = &t.events()[0];
        assert_eq!((e.count, e.is_aggregate()), (10, true));
        let mut out = vec![];
        print(&mut out, "t", &t.events()).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("10 calls"));
    }
}
