//! The embedded store's sweeper physically deletes expired records and nothing else.

use aula_domain::ids::IdGenerator;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::retention::{self, HISTORY};
use aula_domain::*;
use aula_store::{RandomIds, SqliteStore};

const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

fn message(room: RoomId, at: Timestamp) -> ChatMessage {
    ChatMessage {
        id: RandomIds.message_id(at),
        room_id: room,
        conversation: Conversation::Room,
        author: Participant::Guest(RandomIds.guest_id()),
        body: ChatBody::parse("Hausaufgaben bis Montag").expect("body"),
        idempotency_key: IdempotencyKey::parse(&RandomIds.uuid().to_string()).expect("key"),
        expires_at: retention::history_expiry(at),
    }
}

#[tokio::test]
async fn the_sweeper_deletes_what_has_expired_and_keeps_the_rest() {
    let store = SqliteStore::open_in_memory().expect("store");
    let room = RandomIds.room_id();
    let old = message(room, T0);
    let young = message(room, T0.plus(Span::days(10)));
    store.post_message(&old).await.expect("old");
    store.post_message(&young).await.expect("young");

    let now = T0.plus(HISTORY).plus(Span::seconds(1));
    let report = store.sweep(now).await.expect("sweep");
    assert_eq!(report.deleted, vec![(RecordKind::ChatMessage, 1)]);

    // Read "as of" the posting time: only a physically present row could come back.
    let old_back = store
        .message(room, &Conversation::Room, old.id, T0)
        .await
        .expect("read");
    assert_eq!(old_back, None, "the expired message is physically gone");
    let young_back = store
        .message(room, &Conversation::Room, young.id, now)
        .await
        .expect("read");
    assert_eq!(young_back, Some(young));

    assert_eq!(
        store.sweep(now).await.expect("sweep").total(),
        0,
        "a second sweep finds nothing"
    );
}

#[tokio::test]
async fn the_embedded_store_keeps_its_records_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("aula.sqlite3");
    let room = RandomIds.room_id();
    let m = message(room, T0);
    {
        let store = SqliteStore::open(&path).expect("store");
        store.post_message(&m).await.expect("posted");
    }
    let store = SqliteStore::open(&path).expect("reopened");
    let page = store
        .history(room, &Conversation::Room, None, 10, T0)
        .await
        .expect("history");
    assert_eq!(page.messages, vec![m], "yesterday's chat is still there");
}
