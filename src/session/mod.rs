//! Sessions as state machines without I/O, in the manner of quinn-proto: each takes `now` with every input,
//! returns what to do as actions, and says when it next needs the time (`next_deadline`). The drivers own the
//! sockets, threads and clocks; everything a session decides (handshake, deadlines, linger, what the results
//! say) is here and is tested on a virtual clock.

pub mod receiver;
pub mod sender;
pub mod stream;
pub mod translate;
pub mod udp_demux;

#[cfg(test)]
mod pair_tests;
