//! The storage ports: one narrow trait per aggregate. Reads take `now` explicitly: a store
//! never returns a record whose expiry is at or before `now`, whether or not it has
//! physically deleted it yet (DynamoDB's TTL deletes lazily, typically within two days).

use crate::{
    AccessLogEntry, AdmissionQueue, AuditEntry, ChatMessage, Conversation, Email, Guest, GuestId,
    InviteToken, MediaNode, Meeting, MessageId, Moderator, ModeratorId, NodeId, ObjectClass,
    ObjectKey, Placement, RateKey, Room, RoomId, RoomTicket, ScheduledMeeting, Session, SessionId,
    StoredObject, Timestamp,
};
use async_trait::async_trait;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (e.g. one account per email).
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    /// The record to change does not exist (or has expired).
    #[error("{what} was not found")]
    NotFound { what: &'static str },
    /// The store holds something this version cannot read.
    #[error("a stored {kind} could not be read: {reason}")]
    Corrupt { kind: &'static str, reason: String },
    /// The backing service failed; retrying may help.
    #[error("the store failed while {doing}")]
    Backend {
        doing: &'static str,
        #[source]
        source: BoxError,
    },
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait ModeratorStore: Send + Sync {
    /// Fails with `Conflict` when the email (or id) is taken.
    async fn create_moderator(&self, m: &Moderator) -> StoreResult<()>;
    async fn moderator(&self, id: ModeratorId) -> StoreResult<Option<Moderator>>;
    async fn moderator_by_email(&self, email: &Email) -> StoreResult<Option<Moderator>>;
    /// Replaces the account; a changed email must still be unique (`Conflict`).
    async fn update_moderator(&self, m: &Moderator) -> StoreResult<()>;
    /// Removes the account, its email claim and its sessions. Removing a missing account is
    /// not an error.
    async fn delete_moderator(&self, id: ModeratorId) -> StoreResult<()>;
    /// All accounts, ordered by email (for admins).
    async fn list_moderators(&self) -> StoreResult<Vec<Moderator>>;
    /// Restricts the account `id` only while `keeper`, another account, is an active admin:
    /// the check and the write are one atomic step, so of two admins restricting each other
    /// at the same instant (each naming the other as keeper) at most one succeeds, and an
    /// active admin always remains. `false`: `keeper` is not an active admin (or is `id`
    /// itself), and nothing was written; `NotFound` when `id` does not exist.
    async fn restrict_keeping_admin(
        &self,
        id: ModeratorId,
        keeper: ModeratorId,
    ) -> StoreResult<bool>;
}

#[async_trait]
pub trait RoomStore: Send + Sync {
    async fn create_room(&self, r: &Room) -> StoreResult<()>;
    async fn room(&self, id: RoomId, now: Timestamp) -> StoreResult<Option<Room>>;
    /// The room whose *current* invite token this is; a rotated-away token finds nothing.
    async fn room_by_invite(
        &self,
        token: &InviteToken,
        now: Timestamp,
    ) -> StoreResult<Option<Room>>;
    /// The owner's live rooms, oldest first.
    async fn rooms_of(&self, owner: ModeratorId, now: Timestamp) -> StoreResult<Vec<Room>>;
    /// Replaces a live room (`NotFound` otherwise).
    async fn update_room(&self, r: &Room, now: Timestamp) -> StoreResult<()>;
    /// Removes the room with everything in it: guests, meetings and chats.
    async fn delete_room(&self, id: RoomId) -> StoreResult<()>;
}

#[async_trait]
pub trait GuestStore: Send + Sync {
    /// Creates or replaces the guest (a returning guest's `last_used_at` moves on).
    async fn put_guest(&self, g: &Guest) -> StoreResult<()>;
    async fn guest(&self, room: RoomId, id: GuestId, now: Timestamp) -> StoreResult<Option<Guest>>;
    async fn guests_of(&self, room: RoomId, now: Timestamp) -> StoreResult<Vec<Guest>>;
    async fn delete_guest(&self, room: RoomId, id: GuestId) -> StoreResult<()>;
}

#[async_trait]
pub trait MeetingStore: Send + Sync {
    /// Creates or replaces the meeting record (start, then end and peak).
    async fn put_meeting(&self, m: &Meeting) -> StoreResult<()>;
    /// The room's meetings, newest first.
    async fn meetings_of(&self, room: RoomId, now: Timestamp) -> StoreResult<Vec<Meeting>>;
}

/// Meetings teachers have scheduled. Each lives in its room (deleting the room deletes its
/// schedule) and expires the day after it was to end.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Creates or replaces a scheduled meeting.
    async fn put_scheduled(&self, s: &ScheduledMeeting) -> StoreResult<()>;
    /// The room's scheduled meetings, earliest first.
    async fn scheduled_of_room(
        &self,
        room: RoomId,
        now: Timestamp,
    ) -> StoreResult<Vec<ScheduledMeeting>>;
    /// The owner's scheduled meetings in all their rooms, earliest first.
    async fn scheduled_of(
        &self,
        owner: ModeratorId,
        now: Timestamp,
    ) -> StoreResult<Vec<ScheduledMeeting>>;
    /// Every scheduled meeting beginning in `[from, until)`, earliest first (for the
    /// forecast). A span longer than [`MAX_SCHEDULE_SPAN`] is cut to it.
    async fn scheduled_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<ScheduledMeeting>>;
    /// Removes it; removing a missing one is not an error.
    async fn delete_scheduled(&self, s: &ScheduledMeeting) -> StoreResult<()>;
}

/// The longest span `scheduled_between` answers for.
pub const MAX_SCHEDULE_SPAN: crate::Span = crate::Span::days(2);

/// What happened to a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// Stored now.
    New(ChatMessage),
    /// The same author already posted with this idempotency key in this room: this is the
    /// message that post produced, and nothing new was stored.
    Duplicate(ChatMessage),
}

impl Posted {
    pub fn message(&self) -> &ChatMessage {
        match self {
            Posted::New(m) | Posted::Duplicate(m) => m,
        }
    }
}

/// One page of chat history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPage {
    pub messages: Vec<ChatMessage>,
    /// Pass as `before` to get the next (older) page; `None` when there is none.
    pub older: Option<MessageId>,
}

#[async_trait]
pub trait ChatStore: Send + Sync {
    async fn post_message(&self, m: &ChatMessage) -> StoreResult<Posted>;
    async fn message(
        &self,
        room: RoomId,
        conversation: &Conversation,
        id: MessageId,
        now: Timestamp,
    ) -> StoreResult<Option<ChatMessage>>;
    /// Up to `limit` messages posted before `before` (or the newest), newest first.
    async fn history(
        &self,
        room: RoomId,
        conversation: &Conversation,
        before: Option<MessageId>,
        limit: usize,
        now: Timestamp,
    ) -> StoreResult<ChatPage>;
    async fn delete_message(
        &self,
        room: RoomId,
        conversation: &Conversation,
        id: MessageId,
    ) -> StoreResult<()>;
    /// Every live message of the room, in every conversation, oldest first (for exports).
    async fn messages_of_room(&self, room: RoomId, now: Timestamp)
    -> StoreResult<Vec<ChatMessage>>;
}

#[async_trait]
pub trait AccessLogStore: Send + Sync {
    async fn append_access_log(&self, e: &AccessLogEntry) -> StoreResult<()>;
    /// Entries with `from <= time < until`, oldest first. The span may be at most 31 days.
    async fn access_log_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AccessLogEntry>>;
}

#[async_trait]
pub trait NodeRegistryStore: Send + Sync {
    /// Registers the node or renews its heartbeat.
    async fn put_node(&self, n: &MediaNode) -> StoreResult<()>;
    async fn live_nodes(&self, now: Timestamp) -> StoreResult<Vec<MediaNode>>;
    async fn remove_node(&self, id: NodeId) -> StoreResult<()>;
}

/// Asks a media node whether it answers its health check. Placement asks only about a node
/// a client reports it lost while the node's heartbeat is still fresh: a killed or hung node
/// is found out at once, and a node that answers stays in service whatever one client says.
#[async_trait]
pub trait NodeProbe: Send + Sync {
    /// Whether the node answered its health check in time (`false` also when its address
    /// names no health check).
    async fn answers(&self, node: &MediaNode) -> bool;
}

/// Scheduled changes to the media fleet's floor (an Auto Scaling group's one-time
/// scheduled actions in production). The fleet planner is its only user.
#[async_trait]
pub trait FleetScaler: Send + Sync {
    /// Puts the named action that sets the group's minimum to `min_nodes` at `at`,
    /// replacing an action of that name.
    async fn put_floor(
        &self,
        action: &str,
        at: Timestamp,
        min_nodes: u32,
    ) -> Result<(), FleetError>;
    /// Removes the named action; removing one that is not there is not an error.
    async fn remove(&self, action: &str) -> Result<(), FleetError>;
}

/// Why the fleet could not be changed.
#[derive(Debug, thiserror::Error)]
#[error("the fleet's scaling failed while {doing}")]
pub struct FleetError {
    pub doing: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn put_object(&self, o: &StoredObject) -> StoreResult<()>;
    async fn get_object(
        &self,
        class: ObjectClass,
        key: &ObjectKey,
        now: Timestamp,
    ) -> StoreResult<Option<StoredObject>>;
    /// Keys under `prefix`, in key order.
    async fn list_objects(
        &self,
        class: ObjectClass,
        prefix: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<ObjectKey>>;
    async fn delete_object(&self, class: ObjectClass, key: &ObjectKey) -> StoreResult<()>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates or renews a session.
    async fn put_session(&self, s: &Session) -> StoreResult<()>;
    async fn session(
        &self,
        moderator: ModeratorId,
        id: SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, moderator: ModeratorId, id: SessionId) -> StoreResult<()>;
    /// Logs the moderator out everywhere.
    async fn delete_sessions_of(&self, moderator: ModeratorId) -> StoreResult<()>;
    /// Logs the moderator out everywhere but in the session `keep`, which is never missing
    /// meanwhile (a request of that browser arriving at the same moment still gets in).
    async fn delete_sessions_except(
        &self,
        moderator: ModeratorId,
        keep: SessionId,
    ) -> StoreResult<()>;
}

#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts one attempt in the window that starts at `window_start` (the counter dies at
    /// `expires_at`) and returns the count including this one. Atomic under concurrency.
    async fn hit(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        expires_at: crate::Expiry,
    ) -> StoreResult<u32>;
    /// The attempts counted so far in the window (0 once it has expired).
    async fn attempts(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32>;
    /// Forgets the window's attempts (after a successful login).
    async fn clear(&self, key: &RateKey, window_start: Timestamp) -> StoreResult<()>;
    /// Counts one attempt only while fewer than `limit` are counted in the window, in one
    /// atomic conditional write, so parallel callers never take the count past `limit`.
    /// `None` (nothing counted) at the limit, otherwise the count including this one.
    async fn hit_below(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        limit: u32,
        expires_at: crate::Expiry,
    ) -> StoreResult<Option<u32>>;
    /// Takes back one attempt counted in the window (it turned out not to count, e.g. the
    /// password was right). Never goes below zero; a missing counter stays missing.
    async fn unhit(&self, key: &RateKey, window_start: Timestamp) -> StoreResult<()>;
}

/// The audit log can be appended to and read; there is deliberately no way to delete from
/// it (entries expire on their own).
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()>;
    /// Entries with `from <= time < until`, oldest first.
    async fn audit_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEntry>>;
}

/// What reserving a room's seats on a node came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// The room is placed on the node with its seats reserved there.
    Placed,
    /// The node's reserved seats would have gone over its capacity: nothing was written.
    NodeFull,
    /// Another live placement of the room exists (a concurrent request placed it): the
    /// one the failed write found, so the caller takes a seat there without reading again.
    Taken(Placement),
}

#[async_trait]
pub trait PlacementStore: Send + Sync {
    /// The room's live placement.
    async fn placement(&self, room: RoomId, now: Timestamp) -> StoreResult<Option<Placement>>;
    /// Places the room on `p.node_id` and reserves `p.seats` there, in one atomic write:
    /// only if the node is registered and its reserved seats stay within `capacity`, and
    /// only if no other live placement of the room exists that is not on `replacing`
    /// (then `Taken` with that placement).
    async fn reserve(
        &self,
        p: &Placement,
        capacity: u32,
        replacing: Option<NodeId>,
        now: Timestamp,
    ) -> StoreResult<Reserved>;
    /// Gives `holder` a seat in the room's reservation on `node` and renews the placement
    /// (a holder who has one keeps it: retries and reconnects take no second seat). When
    /// every reserved seat is held, the reservation grows by `grow` seats if the node's
    /// reserved seats stay within `capacity`. `false`: no seat (the node is full, or the
    /// room is no longer placed on `node`).
    async fn take_seat(
        &self,
        room: RoomId,
        node: NodeId,
        holder: &str,
        grow: u32,
        capacity: u32,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Gives the room's seats back to its node (the meeting ended or the reservation
    /// lapsed); the room stays placed there. Releasing twice frees the seats once.
    async fn release(&self, room: RoomId, node: NodeId) -> StoreResult<()>;
    /// The live placements on `node` that hold seats, listed without their holders.
    async fn reservations_on(&self, node: NodeId, now: Timestamp) -> StoreResult<Vec<Placement>>;
}

/// The admission queue (see [`AdmissionQueue`] and [`RoomTicket`]). Each write is atomic
/// against concurrent callers; none ever moves a counter down.
#[async_trait]
pub trait AdmissionQueueStore: Send + Sync {
    /// The counters; [`AdmissionQueue::empty`] when there are none (or they expired).
    async fn admission_queue(&self, now: Timestamp) -> StoreResult<AdmissionQueue>;
    /// The room's live place in the queue, its lifetime renewed; `None` if it has none.
    async fn room_ticket(&self, room: RoomId, now: Timestamp) -> StoreResult<Option<RoomTicket>>;
    /// The room's place: its live one, or a new one numbered after every place handed out
    /// before (`let_in`: [`AdmissionQueue::let_in_count`] as the caller read it, for
    /// `first_ahead`). Concurrent callers for one room get the same place.
    async fn take_room_ticket(
        &self,
        room: RoomId,
        let_in: u64,
        now: Timestamp,
    ) -> StoreResult<RoomTicket>;
    /// The room got its seats: its place is given up and the queue's mark and early places
    /// become what [`AdmissionQueue::letting_in`] says (`passing`: see there), atomically
    /// with respect to concurrent callers; `moved_at` becomes `now` if anything changed.
    async fn room_admitted(
        &self,
        ticket: &RoomTicket,
        passing: bool,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// A waiting pupil saw free seats: `capacity_seen_at` is set to `now` unless it is
    /// already set after the mark last moved.
    async fn capacity_seen(&self, now: Timestamp) -> StoreResult<()>;
}

/// Everything the functions need from storage.
pub trait Store:
    PlacementStore
    + AdmissionQueueStore
    + SessionStore
    + RateLimitStore
    + AuditStore
    + ModeratorStore
    + RoomStore
    + GuestStore
    + MeetingStore
    + ScheduleStore
    + ChatStore
    + AccessLogStore
    + NodeRegistryStore
    + ObjectStore
{
}

impl<T> Store for T where
    T: PlacementStore
        + AdmissionQueueStore
        + SessionStore
        + RateLimitStore
        + AuditStore
        + ModeratorStore
        + RoomStore
        + GuestStore
        + MeetingStore
        + ScheduleStore
        + ChatStore
        + AccessLogStore
        + NodeRegistryStore
        + ObjectStore
{
}

/// The longest span `access_log_between` answers for.
pub const MAX_ACCESS_LOG_SPAN: crate::Span = crate::Span::days(31);
