//! Socket-API experiments: what `listen(backlog)` really does, and who holds a port when `bind` fails.

pub mod backlog;
pub mod ports;
pub mod share;
