use aula_domain::ids::IdGenerator;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::retention::{self, HISTORY};
use aula_domain::*;
use aula_store::{Introspect, RandomIds};
use std::collections::BTreeSet;

/// What a case needs of a store.
pub trait TestStore: Store + Introspect + Clone + Send + Sync + 'static {}
impl<T: Store + Introspect + Clone + Send + Sync + 'static> TestStore for T {}

/// A fixed "now" for the cases (2027-01-15T08:00:00Z); expiry is measured from it.
pub const T0: Timestamp = Timestamp::from_secs(1_800_000_000);
pub const SECOND: Span = Span::seconds(1);
pub const IDS: RandomIds = RandomIds;

pub fn unique_email() -> Email {
    Email::parse(&format!(
        "lehrkraft-{}@schule.example.de",
        IDS.uuid().simple()
    ))
    .expect("valid email")
}

pub fn moderator_with(email: Email) -> Moderator {
    Moderator {
        id: IDS.moderator_id(),
        last_name: PersonName::parse("Schmidt").expect("name"),
        first_name: PersonName::parse("Anna").expect("name"),
        email,
        federal_state: FederalState::Bayern,
        organisation: Organisation::parse("Gymnasium am Rosenberg").expect("organisation"),
        role: Role::Moderator,
        status: AccountStatus::Active,
        password_hash: PasswordHash::parse(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        )
        .expect("phc"),
        // true, so that a store dropping the flag fails the round trip.
        must_change_password: true,
        created_at: T0,
    }
}

pub fn room_of(owner: ModeratorId, at: Timestamp) -> Room {
    Room {
        id: IDS.room_id(),
        owner,
        name: RoomName::parse("Klasse 7b Mathe").expect("room name"),
        settings: RoomSettings {
            lobby: true,
            ..RoomSettings::default()
        },
        invite_token: IDS.invite_token(),
        created_at: at,
        last_used_at: at,
        expires_at: retention::history_expiry(at),
    }
}

pub fn guest_of(room: RoomId, nickname: &str, at: Timestamp) -> Guest {
    Guest {
        id: IDS.guest_id(),
        room_id: room,
        nickname: Nickname::parse(nickname).expect("nickname"),
        admission: Admission::Waiting,
        created_at: at,
        last_used_at: at,
        expires_at: retention::history_expiry(at),
    }
}

pub fn message(
    room: RoomId,
    conversation: Conversation,
    author: Participant,
    body: &str,
    at: Timestamp,
) -> ChatMessage {
    ChatMessage {
        id: IDS.message_id(at),
        room_id: room,
        conversation,
        author,
        body: ChatBody::parse(body).expect("body"),
        idempotency_key: IdempotencyKey::parse(&IDS.uuid().to_string()).expect("key"),
        expires_at: retention::history_expiry(at),
    }
}

pub fn meeting_of(room: RoomId, started: Timestamp, ended: Option<Timestamp>) -> Meeting {
    Meeting {
        id: IDS.meeting_id(),
        room_id: room,
        started_at: started,
        ended_at: ended,
        peak_participants: 27,
        expires_at: retention::history_expiry(ended.unwrap_or(started)),
    }
}

fn access_entry(at: Timestamp) -> AccessLogEntry {
    AccessLogEntry {
        id: IDS.access_log_id(),
        time: at,
        method: "GET".into(),
        url: "/api/rooms?x=1".into(),
        status: 200,
        bytes_sent: 1234,
        referrer: Some("https://aula.example/".into()),
        user_agent: Some("Mozilla/5.0".into()),
        host_id: "portal-1".into(),
        forwarded_for: Some("203.0.113.7".into()),
        cookies: vec![LoggedCookie {
            name: "aula_session".into(),
            keyed_hash: Some("5f1c".into()),
        }],
        expires_at: retention::access_log_expiry(at),
    }
}

pub fn node(at: Timestamp) -> MediaNode {
    MediaNode {
        id: IDS.node_id(),
        address: "wss://127.0.0.1:7443".into(),
        capacity: 500,
        load: 12,
        reserved: 0,
        last_heartbeat: at,
        expires_at: retention::heartbeat_expiry(at),
    }
}

fn object(class: ObjectClass, key: &str, at: Timestamp) -> StoredObject {
    StoredObject {
        class,
        key: ObjectKey::parse(key).expect("key"),
        content_type: "application/json".into(),
        body: br#"{"export":true}"#.to_vec(),
        created_at: at,
        expires_at: class.expiry(at),
    }
}

/// Only the records a case wrote itself: a shared store (DynamoDB) holds other runs' too.
pub fn ours<T: Clone, K: PartialEq>(listed: Vec<T>, mine: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    listed
        .into_iter()
        .filter(|x| mine.iter().any(|m| key(m) == key(x)))
        .collect()
}

pub fn guest_participant() -> Participant {
    Participant::Guest(IDS.guest_id())
}

// ---- rooms -----------------------------------------------------------------------

pub async fn a_room_is_there_six_months_minus_a_second_after_last_use_and_gone_a_second_after<
    S: TestStore,
>(
    s: &S,
) {
    let owner = IDS.moderator_id();
    let room = room_of(owner, T0);
    s.create_room(&room).await.expect("created");

    let almost = T0.plus(HISTORY).minus(SECOND);
    assert_eq!(
        s.room(room.id, almost).await.expect("read"),
        Some(room.clone())
    );
    assert_eq!(
        s.room_by_invite(&room.invite_token, almost)
            .await
            .expect("read"),
        Some(room.clone())
    );
    assert_eq!(
        s.rooms_of(owner, almost).await.expect("list"),
        vec![room.clone()]
    );

    let past = T0.plus(HISTORY).plus(SECOND);
    assert_eq!(s.room(room.id, past).await.expect("read"), None);
    assert_eq!(
        s.room_by_invite(&room.invite_token, past)
            .await
            .expect("read"),
        None
    );
    assert_eq!(s.rooms_of(owner, past).await.expect("list"), vec![]);
}

pub async fn using_a_room_keeps_it_alive<S: TestStore>(s: &S) {
    let mut room = room_of(IDS.moderator_id(), T0);
    s.create_room(&room).await.expect("created");
    let later = T0.plus(Span::days(100));
    room.touch(later);
    s.update_room(&room, later).await.expect("touched");
    let after_first_expiry = T0.plus(HISTORY).plus(SECOND);
    assert_eq!(
        s.room(room.id, after_first_expiry).await.expect("read"),
        Some(room.clone())
    );
    assert_eq!(
        s.room(room.id, later.plus(HISTORY).plus(SECOND))
            .await
            .expect("read"),
        None
    );
}

pub async fn a_rooms_expected_participants_are_kept_changed_and_cleared<S: TestStore>(s: &S) {
    let mut room = room_of(IDS.moderator_id(), T0);
    assert_eq!(room.settings.expected_participants, None);
    s.create_room(&room).await.expect("created");
    assert_eq!(s.room(room.id, T0).await.expect("read"), Some(room.clone()));
    room.settings.expected_participants = Some(30);
    s.update_room(&room, T0).await.expect("set");
    let read = s.room(room.id, T0).await.expect("read").expect("live");
    assert_eq!(read.settings.expected_participants, Some(30));
    assert_eq!(
        s.room_by_invite(&room.invite_token, T0)
            .await
            .expect("read")
            .map(|r| r.settings.expected_participants),
        Some(Some(30))
    );
    room.settings.expected_participants = None;
    s.update_room(&room, T0).await.expect("cleared");
    assert_eq!(s.room(room.id, T0).await.expect("read"), Some(room));
}

pub async fn a_rotated_invite_link_no_longer_finds_the_room<S: TestStore>(s: &S) {
    let mut room = room_of(IDS.moderator_id(), T0);
    s.create_room(&room).await.expect("created");
    let old = room.invite_token.clone();
    room.invite_token = IDS.invite_token();
    s.update_room(&room, T0).await.expect("rotated");
    assert_eq!(s.room_by_invite(&old, T0).await.expect("read"), None);
    assert_eq!(
        s.room_by_invite(&room.invite_token, T0)
            .await
            .expect("read"),
        Some(room)
    );
}

pub async fn rooms_are_listed_per_owner_oldest_first_without_expired_ones<S: TestStore>(s: &S) {
    let owner = IDS.moderator_id();
    let expired = room_of(owner, T0.minus(HISTORY).minus(SECOND));
    let older = room_of(owner, T0.minus(Span::days(2)));
    let newer = room_of(owner, T0.minus(Span::days(1)));
    let someone_elses = room_of(IDS.moderator_id(), T0);
    for r in [&newer, &expired, &someone_elses, &older] {
        s.create_room(r).await.expect("created");
    }
    assert_eq!(
        s.rooms_of(owner, T0).await.expect("list"),
        vec![older, newer]
    );
}

pub async fn updating_an_expired_room_is_refused<S: TestStore>(s: &S) {
    let mut room = room_of(IDS.moderator_id(), T0);
    s.create_room(&room).await.expect("created");
    let past = T0.plus(HISTORY).plus(SECOND);
    room.touch(past);
    assert!(matches!(
        s.update_room(&room, past).await,
        Err(StoreError::NotFound { .. })
    ));
    let never_created = room_of(IDS.moderator_id(), T0);
    assert!(matches!(
        s.update_room(&never_created, T0).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn deleting_a_room_deletes_its_guests_meetings_and_chats<S: TestStore>(s: &S) {
    let room = room_of(IDS.moderator_id(), T0);
    let other = room_of(IDS.moderator_id(), T0);
    s.create_room(&room).await.expect("room");
    s.create_room(&other).await.expect("other room");
    let guest = guest_of(room.id, "Lena", T0);
    s.put_guest(&guest).await.expect("guest");
    s.put_meeting(&meeting_of(room.id, T0, Some(T0.plus(Span::seconds(3600)))))
        .await
        .expect("meeting");
    let author = Participant::Guest(guest.id);
    let private = Conversation::private(author, guest_participant()).expect("two parties");
    for (conv, body) in [(Conversation::Room, "Hallo"), (private, "psst")] {
        s.post_message(&message(room.id, conv, author, body, T0))
            .await
            .expect("posted");
    }
    let kept = message(other.id, Conversation::Room, author, "anderer Raum", T0);
    s.post_message(&kept).await.expect("posted elsewhere");

    s.delete_room(room.id).await.expect("deleted");

    assert_eq!(s.room(room.id, T0).await.expect("read"), None);
    assert_eq!(s.guests_of(room.id, T0).await.expect("list"), vec![]);
    assert_eq!(s.meetings_of(room.id, T0).await.expect("list"), vec![]);
    for conv in [Conversation::Room, private] {
        let page = s
            .history(room.id, &conv, None, 10, T0)
            .await
            .expect("history");
        assert!(
            page.messages.is_empty(),
            "no message of a deleted room remains"
        );
    }
    let elsewhere = s
        .history(other.id, &Conversation::Room, None, 10, T0)
        .await
        .expect("history");
    assert_eq!(
        elsewhere.messages,
        vec![kept],
        "other rooms keep their chat"
    );
}

// ---- guests and meetings ---------------------------------------------------------

pub async fn guests_are_kept_by_nickname_and_expire_after_six_months<S: TestStore>(s: &S) {
    let room = IDS.room_id();
    let lena = guest_of(room, "<b>Lena</b>", T0);
    let mut max = guest_of(room, "Max", T0.plus(SECOND));
    s.put_guest(&lena).await.expect("lena");
    s.put_guest(&max).await.expect("max");
    assert_eq!(
        s.guest(room, lena.id, T0).await.expect("read"),
        Some(lena.clone())
    );
    assert_eq!(
        s.guest(IDS.room_id(), lena.id, T0).await.expect("read"),
        None,
        "a guest belongs to one room"
    );

    // Max comes back later, which keeps him; Lena does not.
    let later = T0.plus(Span::days(30));
    max.last_used_at = later;
    max.expires_at = retention::history_expiry(later);
    s.put_guest(&max).await.expect("max returns");
    let after = T0.plus(HISTORY).plus(Span::seconds(5));
    assert_eq!(
        s.guests_of(room, after).await.expect("list"),
        vec![max.clone()]
    );
    assert_eq!(s.guest(room, lena.id, after).await.expect("read"), None);

    s.delete_guest(room, max.id).await.expect("deleted");
    assert_eq!(s.guests_of(room, T0).await.expect("list"), vec![lena]);
}

pub async fn meetings_are_listed_newest_first_and_expire<S: TestStore>(s: &S) {
    let room = IDS.room_id();
    let first = meeting_of(room, T0, Some(T0.plus(Span::seconds(2700))));
    let mut second = meeting_of(room, T0.plus(Span::days(1)), None);
    s.put_meeting(&first).await.expect("first");
    s.put_meeting(&second).await.expect("second starts");
    second.ended_at = Some(T0.plus(Span::days(1)).plus(Span::seconds(900)));
    second.peak_participants = 31;
    s.put_meeting(&second).await.expect("second ends");
    assert_eq!(
        s.meetings_of(room, T0.plus(Span::days(2)))
            .await
            .expect("list"),
        vec![second.clone(), first.clone()]
    );
    let after_first = first.expires_at.instant().plus(SECOND);
    assert_eq!(
        s.meetings_of(room, after_first).await.expect("list"),
        vec![second]
    );
}

// ---- access log, nodes, objects --------------------------------------------------

pub async fn access_log_entries_list_by_time_and_expire_after_30_days<S: TestStore>(s: &S) {
    // A window of its own (a random day in 2027); on a shared store only our entries count.
    let base = T0.plus(Span::days(i64::from(IDS.random_16()[0]) + 1));
    let entries: Vec<_> = [0, 3600, 86_399, 86_400 + 5]
        .into_iter()
        .map(|secs| access_entry(base.plus(Span::seconds(secs))))
        .collect();
    for e in entries.iter().rev() {
        s.append_access_log(e).await.expect("written");
    }
    let now = base.plus(Span::days(2));
    let id = |e: &AccessLogEntry| e.id;
    let listed = s
        .access_log_between(base, base.plus(Span::days(2)), now)
        .await
        .expect("list");
    assert_eq!(
        ours(listed, &entries, id),
        entries,
        "oldest first, across days, every field intact"
    );
    let first_day = s
        .access_log_between(base, base.plus(Span::days(1)), now)
        .await
        .expect("list");
    assert_eq!(ours(first_day, &entries, id), entries[..3]);

    let last = entries[3].time;
    let just_before = last.plus(retention::ACCESS_LOG).minus(SECOND);
    let listed = s
        .access_log_between(base, base.plus(Span::days(2)), just_before)
        .await
        .expect("list");
    assert_eq!(
        ours(listed, &entries, id),
        entries[3..],
        "30 days minus a second: only the newest is left"
    );
    let after = last.plus(retention::ACCESS_LOG).plus(SECOND);
    assert!(
        s.access_log_between(base, base.plus(Span::days(2)), after)
            .await
            .expect("list")
            .is_empty()
    );
}

pub async fn objects_read_back_and_are_never_served_after_expiry<S: TestStore>(s: &S) {
    let dir = format!("exports/{}", IDS.uuid());
    let export = object(ObjectClass::Export, &format!("{dir}/a.json"), T0);
    let later = object(
        ObjectClass::Export,
        &format!("{dir}/b.json"),
        T0.plus(Span::seconds(3600)),
    );
    s.put_object(&export).await.expect("stored");
    s.put_object(&later).await.expect("stored");
    assert_eq!(
        s.get_object(ObjectClass::Export, &export.key, T0)
            .await
            .expect("read"),
        Some(export.clone())
    );
    assert_eq!(
        s.get_object(ObjectClass::LogArchive, &export.key, T0)
            .await
            .expect("read"),
        None,
        "classes are separate buckets"
    );
    assert_eq!(
        s.list_objects(ObjectClass::Export, &dir, T0.plus(Span::seconds(3600)))
            .await
            .expect("list"),
        vec![export.key.clone(), later.key.clone()]
    );
    let after = export.expires_at.instant().plus(SECOND);
    assert_eq!(
        s.get_object(ObjectClass::Export, &export.key, after)
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        s.list_objects(ObjectClass::Export, &dir, after)
            .await
            .expect("list"),
        vec![later.key.clone()]
    );
    s.delete_object(ObjectClass::Export, &later.key)
        .await
        .expect("deleted");
    assert_eq!(
        s.get_object(ObjectClass::Export, &later.key, T0)
            .await
            .expect("read"),
        None
    );
}

// ---- the data inventory ----------------------------------------------------------

pub async fn the_store_holds_no_field_the_inventory_does_not_declare<S: TestStore>(s: &S) {
    // One record of every kind, with every optional field filled.
    let m = moderator_with(unique_email());
    s.create_moderator(&m).await.expect("moderator");
    let mut room = room_of(m.id, T0);
    room.settings.expected_participants = Some(24);
    s.create_room(&room).await.expect("room");
    let guest = guest_of(room.id, "Lena", T0);
    s.put_guest(&guest).await.expect("guest");
    s.put_meeting(&meeting_of(room.id, T0, Some(T0.plus(SECOND))))
        .await
        .expect("meeting");
    s.put_scheduled(&scheduled_in(&room, T0.plus(Span::days(1)), 24))
        .await
        .expect("scheduled meeting");
    s.post_message(&message(
        room.id,
        Conversation::Room,
        Participant::Guest(guest.id),
        "Hallo",
        T0,
    ))
    .await
    .expect("message");
    s.append_access_log(&access_entry(T0))
        .await
        .expect("access log");
    s.put_node(&node(T0)).await.expect("node");
    s.put_object(&object(
        ObjectClass::LogArchive,
        &format!("access/{}.jsonl", IDS.uuid()),
        T0,
    ))
    .await
    .expect("object");

    let stored = s.stored_fields().await.expect("introspection");
    for kind in [
        RecordKind::Moderator,
        RecordKind::Room,
        RecordKind::Guest,
        RecordKind::Meeting,
        RecordKind::ScheduledMeeting,
        RecordKind::ChatMessage,
        RecordKind::AccessLog,
        RecordKind::MediaNode,
        RecordKind::Object,
    ] {
        assert!(
            stored.contains_key(kind.name()),
            "{} is stored under its kind's name",
            kind.name()
        );
    }
    for (kind_name, fields) in &stored {
        let kind = RecordKind::from_name(kind_name).unwrap_or_else(|| {
            panic!("the store holds {kind_name:?}, a kind the inventory does not declare")
        });
        let declared: BTreeSet<String> = kind
            .spec()
            .fields
            .iter()
            .map(|f| f.name.to_owned())
            .collect();
        let undeclared: Vec<_> = fields.difference(&declared).collect();
        assert!(
            undeclared.is_empty(),
            "{kind_name} stores undeclared fields {undeclared:?}"
        );
        let missing: Vec<_> = declared.difference(fields).collect();
        assert!(
            missing.is_empty(),
            "{kind_name} declares fields it never stores: {missing:?}"
        );
    }
}

pub fn scheduled_in(room: &Room, starts_at: Timestamp, expected: u32) -> ScheduledMeeting {
    let minutes = 45;
    ScheduledMeeting {
        id: IDS.schedule_id(),
        room_id: room.id,
        owner: room.owner,
        starts_at,
        minutes,
        expected_participants: expected,
        created_at: T0,
        expires_at: retention::schedule_expiry(starts_at.plus(Span::seconds(minutes as i64 * 60))),
    }
}

pub async fn scheduled_meetings_list_by_room_owner_and_start_and_are_gone_the_day_after_they_end<
    S: TestStore,
>(
    s: &S,
) {
    let owner = IDS.moderator_id();
    let maths = room_of(owner, T0);
    let german = room_of(owner, T0);
    let elsewhere = room_of(IDS.moderator_id(), T0);
    for r in [&maths, &german, &elsewhere] {
        s.create_room(r).await.expect("room");
    }
    let hour = Span::seconds(3600);
    // Tomorrow 8:00 and 9:00 in maths, 8:00 the day after in German, 8:00 tomorrow elsewhere.
    let tomorrow = T0.plus(Span::days(1));
    let first = scheduled_in(&maths, tomorrow, 30);
    let second = scheduled_in(&maths, tomorrow.plus(hour), 28);
    let later = scheduled_in(&german, tomorrow.plus(Span::days(1)), 12);
    let other = scheduled_in(&elsewhere, tomorrow, 25);
    // Stored out of order: every list comes back earliest first.
    for p in [&later, &second, &other, &first] {
        s.put_scheduled(p).await.expect("scheduled");
    }

    assert_eq!(
        s.scheduled_of_room(maths.id, T0).await.expect("list"),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(
        s.scheduled_of(owner, T0).await.expect("list"),
        vec![first.clone(), second.clone(), later.clone()]
    );
    // Tomorrow's morning (the table may hold other tests' plans: only ours are compared).
    let mine = [first.clone(), second.clone(), later.clone(), other.clone()];
    let morning = s
        .scheduled_between(tomorrow.minus(hour), tomorrow.plus(hour), T0)
        .await
        .expect("between");
    let morning = ours(morning, &mine, |p| p.id);
    assert_eq!(morning.len(), 2, "the end of the span is excluded");
    assert!(morning.contains(&first) && morning.contains(&other));
    assert!(morning[0].starts_at <= morning[1].starts_at);
    // A span over midnight finds both days' plans.
    let both = s
        .scheduled_between(tomorrow, tomorrow.plus(Span::days(1)).plus(hour), T0)
        .await
        .expect("between");
    assert_eq!(ours(both, &mine, |p| p.id).len(), 4);

    // Changed (the same id): replaced, not doubled.
    let bigger = ScheduledMeeting {
        expected_participants: 32,
        ..first.clone()
    };
    s.put_scheduled(&bigger).await.expect("replaced");
    assert_eq!(
        s.scheduled_of_room(maths.id, T0).await.expect("list"),
        vec![bigger.clone(), second.clone()]
    );

    // A plan lives until a day after it was to end, and not a second longer.
    let ends = first.starts_at.plus(Span::seconds(45 * 60));
    let last_second = ends.plus(Span::days(1)).minus(SECOND);
    assert_eq!(
        s.scheduled_of_room(maths.id, last_second)
            .await
            .expect("list"),
        vec![bigger.clone(), second.clone()]
    );
    let after = ends.plus(Span::days(1)).plus(SECOND);
    assert_eq!(
        s.scheduled_of_room(maths.id, after).await.expect("list"),
        vec![second.clone()]
    );
    assert!(
        !s.scheduled_of(owner, after.plus(hour))
            .await
            .expect("list")
            .iter()
            .any(|p| p.room_id == maths.id)
    );

    s.delete_scheduled(&second).await.expect("deleted");
    s.delete_scheduled(&second)
        .await
        .expect("deleting twice is fine");
    assert_eq!(
        s.scheduled_of_room(maths.id, T0).await.expect("list"),
        vec![bigger]
    );
}

pub async fn deleting_a_room_deletes_its_scheduled_meetings<S: TestStore>(s: &S) {
    let owner = IDS.moderator_id();
    let room = room_of(owner, T0);
    let kept_room = room_of(owner, T0);
    s.create_room(&room).await.expect("room");
    s.create_room(&kept_room).await.expect("room");
    let tomorrow = T0.plus(Span::days(1));
    s.put_scheduled(&scheduled_in(&room, tomorrow, 30))
        .await
        .expect("scheduled");
    let kept = scheduled_in(&kept_room, tomorrow, 20);
    s.put_scheduled(&kept).await.expect("scheduled");

    s.delete_room(room.id).await.expect("deleted");

    assert_eq!(
        s.scheduled_of_room(room.id, T0).await.expect("list"),
        vec![]
    );
    assert_eq!(s.scheduled_of(owner, T0).await.expect("list"), vec![kept]);
}
