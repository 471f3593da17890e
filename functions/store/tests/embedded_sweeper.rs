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

/// Every marker found in the raw bytes of the store's files (database and write-ahead log).
fn markers_on_disk(dir: &std::path::Path, markers: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the data directory") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("readable store file");
        for m in markers {
            if bytes.windows(m.len()).any(|w| w == m.as_bytes()) {
                found.push(format!("{m} in {}", path.display()));
            }
        }
    }
    found
}

#[tokio::test]
async fn expired_rooms_nicknames_and_chat_cannot_be_read_from_the_files_after_a_sweep() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("aula.sqlite3")).expect("store");
    let markers = ["Qzraum Physik 9c", "Qzgastname", "Qz Treffpunkt am Bahnhof"];
    let room = Room {
        id: RandomIds.room_id(),
        owner: RandomIds.moderator_id(),
        name: RoomName::parse(markers[0]).expect("room name"),
        settings: RoomSettings::default(),
        invite_token: RandomIds.invite_token(),
        created_at: T0,
        last_used_at: T0,
        expires_at: retention::history_expiry(T0),
    };
    store.create_room(&room).await.expect("room");
    let guest = Guest {
        id: RandomIds.guest_id(),
        room_id: room.id,
        nickname: Nickname::parse(markers[1]).expect("nickname"),
        admission: Admission::Admitted,
        created_at: T0,
        last_used_at: T0,
        expires_at: retention::history_expiry(T0),
    };
    store.put_guest(&guest).await.expect("guest");
    let mut chat = message(room.id, T0);
    chat.body = ChatBody::parse(markers[2]).expect("body");
    store.post_message(&chat).await.expect("message");
    // A record that has not expired keeps the store's files in use.
    store
        .post_message(&message(room.id, T0.plus(HISTORY)))
        .await
        .expect("young message");
    assert_eq!(
        markers_on_disk(dir.path(), &markers).len(),
        markers.len(),
        "every marker was written (else this test proves nothing)"
    );

    let report = store
        .sweep(T0.plus(HISTORY).plus(Span::seconds(1)))
        .await
        .expect("sweep");
    assert!(
        report.total() >= 3,
        "the expired records were swept: {report:?}"
    );
    assert_eq!(
        markers_on_disk(dir.path(), &markers),
        Vec::<String>::new(),
        "nothing expired can be read from the database file or its log"
    );
}
