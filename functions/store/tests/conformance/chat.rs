//! Conformance cases for the chat: retried posts stored once, history pages, private
//! conversations, and messages that expire or are deleted.

use crate::cases::*;
use aula_domain::ids::IdGenerator;
use aula_domain::ports::*;
use aula_domain::retention::HISTORY;
use aula_domain::*;
use std::collections::BTreeSet;

pub async fn a_retried_post_is_stored_once<S: TestStore>(s: &S) {
    let room = IDS.room_id();
    let author = guest_participant();
    let first = message(room, Conversation::Room, author, "Guten Morgen", T0);
    assert_eq!(
        s.post_message(&first).await.expect("posted"),
        Posted::New(first.clone())
    );

    // The retry arrives a little later: a new id and time, the same key.
    let mut retry = message(
        room,
        Conversation::Room,
        author,
        "Guten Morgen",
        T0.plus(SECOND),
    );
    retry.idempotency_key = first.idempotency_key.clone();
    assert_eq!(
        s.post_message(&retry).await.expect("retried"),
        Posted::Duplicate(first.clone())
    );

    // The same key from someone else is a different post.
    let mut other = message(
        room,
        Conversation::Room,
        guest_participant(),
        "Morgen!",
        T0.plus(SECOND),
    );
    other.idempotency_key = first.idempotency_key.clone();
    assert_eq!(
        s.post_message(&other).await.expect("posted"),
        Posted::New(other.clone())
    );

    let page = s
        .history(room, &Conversation::Room, None, 10, T0.plus(SECOND))
        .await
        .expect("history");
    assert_eq!(page.messages, vec![other, first]);
}

pub async fn concurrent_retries_of_one_post_store_one_message<S: TestStore>(s: &S) {
    let room = IDS.room_id();
    let author = guest_participant();
    let key = IdempotencyKey::parse("retry-storm-0001").expect("key");
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..6 {
        let s = s.clone();
        let mut m = message(
            room,
            Conversation::Room,
            author,
            "einmal",
            T0.plus(Span::seconds(i)),
        );
        m.idempotency_key = key.clone();
        posts.spawn(async move { s.post_message(&m).await });
    }
    let mut stored = Vec::new();
    let mut answered = BTreeSet::new();
    while let Some(done) = posts.join_next().await {
        let posted = done.expect("post ran").expect("post answered");
        answered.insert(posted.message().id);
        if let Posted::New(m) = posted {
            stored.push(m);
        }
    }
    assert_eq!(stored.len(), 1, "one post is stored");
    assert_eq!(
        answered.len(),
        1,
        "every retry is answered with the stored message"
    );
    let page = s
        .history(
            room,
            &Conversation::Room,
            None,
            10,
            T0.plus(Span::seconds(10)),
        )
        .await
        .expect("history");
    assert_eq!(page.messages, stored);
}

pub async fn history_pages_go_newest_to_oldest_without_gaps_or_repeats<S: TestStore>(s: &S) {
    let room = IDS.room_id();
    let author = guest_participant();
    let mut posted = Vec::new();
    for i in 0..25 {
        let m = message(
            room,
            Conversation::Room,
            author,
            &format!("Nachricht {i}"),
            T0.plus(Span::seconds(i)),
        );
        s.post_message(&m).await.expect("posted");
        posted.push(m);
    }
    let now = T0.plus(Span::seconds(60));
    let mut seen = Vec::new();
    let mut before = None;
    let mut pages = Vec::new();
    loop {
        let page = s
            .history(room, &Conversation::Room, before, 10, now)
            .await
            .expect("page");
        pages.push(page.messages.len());
        seen.extend(page.messages);
        match page.older {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    assert_eq!(pages, vec![10, 10, 5]);
    posted.reverse();
    assert_eq!(seen, posted, "newest first, every message exactly once");
}

pub async fn private_conversations_are_apart_from_the_room_chat<S: TestStore>(s: &S) {
    let room = IDS.room_id();
    let (a, b, c) = (
        guest_participant(),
        guest_participant(),
        guest_participant(),
    );
    let ab = Conversation::private(a, b).expect("a and b");
    let ac = Conversation::private(c, a).expect("a and c");
    let public = message(room, Conversation::Room, a, "an alle", T0);
    let to_b = message(room, ab, a, "nur für b", T0.plus(SECOND));
    let to_c = message(room, ac, c, "nur für a", T0.plus(SECOND));
    for m in [&public, &to_b, &to_c] {
        s.post_message(m).await.expect("posted");
    }
    let now = T0.plus(Span::seconds(5));
    let history = |conv: Conversation| async move {
        s.history(room, &conv, None, 10, now)
            .await
            .expect("history")
            .messages
    };
    assert_eq!(history(Conversation::Room).await, vec![public]);
    assert_eq!(
        history(Conversation::private(b, a).expect("b and a")).await,
        vec![to_b.clone()]
    );
    assert_eq!(history(ac).await, vec![to_c]);
    assert_eq!(
        s.message(room, &ab, to_b.id, now).await.expect("read"),
        Some(to_b.clone())
    );
    assert_eq!(
        s.message(room, &Conversation::Room, to_b.id, now)
            .await
            .expect("read"),
        None
    );
}

pub async fn an_expired_message_is_never_served_and_its_key_may_be_used_again<S: TestStore>(s: &S) {
    let room = IDS.room_id();
    let author = guest_participant();
    let old = message(
        room,
        Conversation::Room,
        author,
        "vor einem halben Jahr",
        T0,
    );
    s.post_message(&old).await.expect("posted");

    let almost = T0.plus(HISTORY).minus(SECOND);
    assert_eq!(
        s.message(room, &Conversation::Room, old.id, almost)
            .await
            .expect("read"),
        Some(old.clone())
    );
    let page = s
        .history(room, &Conversation::Room, None, 10, almost)
        .await
        .expect("history");
    assert_eq!(page.messages, vec![old.clone()]);

    let past = T0.plus(HISTORY).plus(SECOND);
    assert_eq!(
        s.message(room, &Conversation::Room, old.id, past)
            .await
            .expect("read"),
        None
    );
    let page = s
        .history(room, &Conversation::Room, None, 10, past)
        .await
        .expect("history");
    assert!(page.messages.is_empty() && page.older.is_none());

    let mut again = message(room, Conversation::Room, author, "neu", past);
    again.idempotency_key = old.idempotency_key.clone();
    assert_eq!(
        s.post_message(&again).await.expect("posted"),
        Posted::New(again.clone())
    );
    let page = s
        .history(room, &Conversation::Room, None, 10, past)
        .await
        .expect("history");
    assert_eq!(page.messages, vec![again]);
}

pub async fn a_deleted_message_is_gone_and_its_key_may_be_used_again<S: TestStore>(s: &S) {
    let room = IDS.room_id();
    let author = guest_participant();
    let m = message(room, Conversation::Room, author, "Tippfehler", T0);
    s.post_message(&m).await.expect("posted");
    s.delete_message(room, &Conversation::Room, m.id)
        .await
        .expect("deleted");
    assert_eq!(
        s.message(room, &Conversation::Room, m.id, T0)
            .await
            .expect("read"),
        None
    );
    let mut again = message(
        room,
        Conversation::Room,
        author,
        "korrigiert",
        T0.plus(SECOND),
    );
    again.idempotency_key = m.idempotency_key.clone();
    assert_eq!(
        s.post_message(&again).await.expect("posted"),
        Posted::New(again)
    );
    s.delete_message(room, &Conversation::Room, m.id)
        .await
        .expect("deleting twice is fine");
}
