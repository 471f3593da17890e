//! The `aula` binary's library: configuration and the portal that runs every function in
//! one process. Integration tests start the same portal on a loopback port.

pub mod config;
pub mod portal;
pub mod web;
