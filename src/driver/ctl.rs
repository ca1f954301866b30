//! The control connection's socket: reads that wait at most a given time (so a driver can check its session's
//! deadlines and cancellation between them) and writes that cannot block for ever.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long one write on the control connection may block: a peer that stops reading is given up on.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct CtlStream {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// What a read brought.
pub enum Got {
    Bytes(usize),
    /// Nothing within the time given.
    Idle,
    /// The peer closed the connection, or it failed: why.
    Closed(String),
}

impl CtlStream {
    pub fn new(stream: TcpStream) -> io::Result<CtlStream> {
        stream.set_nodelay(true)?;
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(CtlStream {
            stream,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Wait up to `timeout` (at least 1 ms) for bytes; they are in `bytes()` until the next read.
    pub fn read(&mut self, timeout: Duration) -> Got {
        if let Err(e) = self
            .stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        {
            return Got::Closed(e.to_string());
        }
        match self.stream.read(&mut self.buf) {
            Ok(0) => Got::Closed("closed by the peer".into()),
            Ok(n) => Got::Bytes(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Got::Idle
            }
            Err(e) => Got::Closed(e.to_string()),
        }
    }

    /// The bytes of the last `Got::Bytes(n)`.
    pub fn bytes(&self, n: usize) -> &[u8] {
        &self.buf[..n]
    }

    /// Write everything, or say why not (the peer stopped reading for `WRITE_TIMEOUT`, or is gone).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
                "the peer stopped reading the control connection for {}",
                humantime::format_duration(WRITE_TIMEOUT)
            ),
            _ => e.to_string(),
        })
    }

    /// Close without a reset: say we are done, then read (and drop) what the peer still sends, until it
    /// closes too or `limit` passes. Closing with unread bytes would send a reset, and a reset can destroy
    /// data of ours the peer has not read yet (the results).
    pub fn close_gently(mut self, limit: Duration) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let end = crate::clock::mono() + limit;
        while crate::clock::mono() < end {
            match self.read(Duration::from_millis(50)) {
                Got::Closed(_) => return,
                Got::Bytes(_) | Got::Idle => {}
            }
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}
