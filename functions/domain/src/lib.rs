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

#[cfg(test)]
mod testing;

pub use ids::*;
pub use model::*;
pub use text::*;
pub use time::*;

/// Types that travel as strings in JSON (ids with structure, enums spelled as codes):
/// their OpenAPI schema is a string with a description.
#[cfg(feature = "openapi")]
macro_rules! string_schema {
    ($($ty:ty => $description:literal),* $(,)?) => {
        $(
            impl utoipa::PartialSchema for $ty {
                fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String)
                        .description(Some($description))
                        .into()
                }
            }
            impl utoipa::ToSchema for $ty {}
        )*
    };
}

#[cfg(feature = "openapi")]
string_schema!(
    MessageId => "a message id: 15-digit posting time in milliseconds, '-', 32 hex digits",
    Participant => "`m:<moderator id>` or `g:<guest id>`",
    Conversation => "`room`, or `p/<participant>/<participant>` for a private conversation",
    FederalState => "ISO 3166-2 code of a German federal state, e.g. `DE-BY`",
);

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
    #[error("{field} contains characters that are invisible or change the text's direction")]
    Invisible { field: &'static str },
    #[error("{field} is not valid: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

/// Shows an error with every cause below it ("the store failed while reading a room:
/// dispatch failure: connection refused"), for logs: the outer message alone hides the
/// root cause an operator needs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod error_chain_tests {
    use super::*;
    use crate::ports::StoreError;

    #[test]
    fn a_store_failure_shows_its_root_cause() {
        let root = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = StoreError::Backend {
            doing: "reading a room",
            source: Box::new(root),
        };
        assert_eq!(
            ErrorChain(&e).to_string(),
            "the store failed while reading a room: connection refused"
        );
    }
}
