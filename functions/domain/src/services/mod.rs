//! The application services: what moderators, guests and admins can do, with every rule
//! and every permission check in one place. They use only the ports (storage, clock, ids,
//! password hashing, keyed hashing), so the Lambda functions and the local portal run the
//! same code, and tests can drive it without HTTP.

mod auth;
mod chat;
pub mod fleet;
mod placement;
mod privacy;
mod queue;
mod rooms;
mod schedule;
pub mod throttle;

pub use auth::{
    ClientAddress, DeviceToken, LoggedIn, LoginPolicy, NewModerator, Password, Provisioned,
};
pub use chat::{ChatView, MAX_PAGE, NewPost};
pub use placement::PlacementPolicy;
pub use privacy::{
    AccountView, Disclosure, DisclosureRequest, ModeratorExport, ProfileChanges, RoomExport,
};
pub use queue::{Entry, Queued};
pub use rooms::{GrantRole, JoinGrant, ParticipantView, Participants, RoomChanges, RoomView};
pub use schedule::{
    ForecastPolicy, ForecastSlot, MAX_FORECAST, NewSchedule, SCHEDULE_AHEAD, forecast,
    stored_forecast,
};

use crate::ids::IdGenerator;
use crate::ports::{Store, StoreError};
use crate::{Clock, GuestId, ModeratorId, ParseError, PasswordHash, Role, RoomId, SessionId};
use std::sync::Arc;

/// Hashes and checks passwords (Argon2id in production).
pub trait PasswordHasher: Send + Sync {
    fn hash(&self, password: &Password) -> Result<PasswordHash, ServiceError>;
    fn verify(&self, password: &Password, hash: &PasswordHash) -> bool;
}

/// A keyed hash (HMAC) with a deployment secret: lets the portal count or correlate a value
/// (an email for lockout, a cookie in the access log) without storing it.
pub trait KeyedHasher: Send + Sync {
    fn keyed_hash(&self, purpose: &str, value: &[u8]) -> String;
}

/// Who is asking. Built by the HTTP edge from a verified session cookie or guest grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Moderator {
        id: ModeratorId,
        role: Role,
        session: SessionId,
    },
    Guest {
        id: GuestId,
        room: RoomId,
    },
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Caller::Moderator {
                role: Role::Admin,
                ..
            }
        )
    }
}

/// Why a request was refused. The HTTP edge maps each to one status and a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("please log in")]
    Unauthenticated,
    #[error("the email or password is wrong")]
    BadCredentials,
    #[error("this account is blocked")]
    AccountRestricted,
    #[error("you may not do this")]
    Forbidden,
    #[error("{0} was not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The request contradicts a rule of the current state (e.g. removing the last admin).
    #[error("{0}")]
    Refused(&'static str),
    #[error("too many attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("self-registration is not enabled")]
    RegistrationClosed,
    #[error("waiting for a moderator to let you in")]
    InLobby,
    #[error("a moderator did not let you in")]
    Denied,
    #[error("no media node can take this meeting now; try again in {retry_after_secs} s")]
    NoCapacity { retry_after_secs: u64 },
    #[error("the store failed")]
    Store(#[source] StoreError),
    #[error("{0}")]
    Internal(&'static str),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => ServiceError::NotFound(what),
            StoreError::Conflict { what } => ServiceError::Conflict(what),
            other => ServiceError::Store(other),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Everything the services need, built once at start and shared.
#[derive(Clone)]
pub struct Aula {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    pub passwords: Arc<dyn PasswordHasher>,
    pub hasher: Arc<dyn KeyedHasher>,
    pub policy: LoginPolicy,
    /// Health checks of media nodes a client reports unreachable (placement).
    pub probe: Arc<dyn crate::ports::NodeProbe>,
}

impl Aula {
    fn now(&self) -> crate::Timestamp {
        self.clock.now()
    }

    /// The calling moderator, or `Unauthenticated`.
    fn moderator_id(caller: &Caller) -> ServiceResult<ModeratorId> {
        match caller {
            Caller::Moderator { id, .. } => Ok(*id),
            _ => Err(ServiceError::Unauthenticated),
        }
    }

    /// The calling admin, `Forbidden` for others, `Unauthenticated` for nobody.
    fn admin_id(caller: &Caller) -> ServiceResult<ModeratorId> {
        match caller {
            Caller::Moderator {
                id,
                role: Role::Admin,
                ..
            } => Ok(*id),
            Caller::Anonymous => Err(ServiceError::Unauthenticated),
            _ => Err(ServiceError::Forbidden),
        }
    }
}
