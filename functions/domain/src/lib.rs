//! Aula's domain: what the portal knows about moderators, guests, rooms, meetings, chats,
//! access-log entries and media nodes, and the promises it keeps about them.
//!
//! This crate does no IO: it never reads the clock, never makes random ids and never
//! talks to a store. Time, ids and storage come in through the traits in [`ports`].
//! Everything that arrives from outside is parsed into the newtypes of [`text`] and
//! [`ids`] at the edge, so the rest of the code never sees a raw string.

pub mod ids;
pub mod inventory;
pub mod model;
pub mod ports;
pub mod retention;
pub mod services;
pub mod text;
pub mod time;

pub use ids::*;
pub use model::*;
pub use text::*;
pub use time::*;

/// Why a piece of input was refused. The message is meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is too long: at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} is too short: at least {min} characters")]
    TooShort { field: &'static str, min: usize },
    #[error("{field} must not contain control characters")]
    ControlCharacter { field: &'static str },
    #[error("{field} is not valid: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}
