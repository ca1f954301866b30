//! Session drivers: the sockets, threads and clock reads around the sans-IO sessions of `session/`. A driver
//! moves bytes between a socket and a session, carries out the session's actions, and feeds it `now`; it
//! decides nothing the session could decide.

pub mod ctl;
pub mod receiver;
pub mod sender;
pub mod tcp;
pub mod udp;
