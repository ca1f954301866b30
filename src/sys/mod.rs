//! Every foreign (system) call of the crate, behind safe functions. This module imports nothing from the rest
//! of the crate, so anything may use it.

pub mod port_holder;
