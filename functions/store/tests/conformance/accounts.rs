//! Conformance cases for accounts and their administration: moderators and their
//! email addresses, sessions, counted login attempts, admins restricting each other
//! and the audit log.

use crate::cases::*;
use aula_domain::ids::IdGenerator;
use aula_domain::ports::*;
use aula_domain::retention;
use aula_domain::*;
use std::collections::BTreeSet;

fn session_of(moderator: ModeratorId, at: Timestamp) -> Session {
    Session {
        id: IDS.session_id(),
        moderator_id: moderator,
        role: Role::Moderator,
        // true, so that a store dropping the flag fails the round trip.
        must_change_password: true,
        created_at: at,
        expires_at: retention::session_expiry(at),
    }
}

fn audit_entry(at: Timestamp) -> AuditEntry {
    AuditEntry {
        id: IDS.audit_id(),
        time: at,
        actor: IDS.moderator_id(),
        action: AuditAction::AuthorityDisclosure,
        target: format!("moderator:{}", IDS.moderator_id()),
        reason: AuditReason::parse("Az. 12 Js 345/26, Auskunftsersuchen StA").expect("reason"),
        expires_at: retention::audit_expiry(at),
    }
}

fn rate_key() -> RateKey {
    RateKey::parse(&format!("login-email:{}", IDS.uuid().simple())).expect("key")
}

// ---- moderators ------------------------------------------------------------------

pub async fn a_moderator_reads_back_by_id_and_by_email<S: TestStore>(s: &S) {
    let m = moderator_with(unique_email());
    s.create_moderator(&m).await.expect("created");
    assert_eq!(s.moderator(m.id).await.expect("read"), Some(m.clone()));
    assert_eq!(
        s.moderator_by_email(&m.email).await.expect("read"),
        Some(m.clone())
    );
    assert_eq!(
        s.moderator_by_email(&unique_email()).await.expect("read"),
        None
    );
    assert!(s.list_moderators().await.expect("list").contains(&m));
}

pub async fn one_email_holds_one_account_even_under_concurrent_writers<S: TestStore>(s: &S) {
    let email = unique_email();
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = s.clone();
        let m = moderator_with(email.clone());
        writers.spawn(async move { (m.id, s.create_moderator(&m).await) });
    }
    let mut winners = Vec::new();
    while let Some(done) = writers.join_next().await {
        let (id, result) = done.expect("writer ran");
        match result {
            Ok(()) => winners.push(id),
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("a losing writer must see a conflict, got {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer gets the email");
    let holder = s
        .moderator_by_email(&email)
        .await
        .expect("read")
        .expect("the account exists");
    assert_eq!(holder.id, winners[0]);
}

pub async fn changing_an_email_frees_the_old_one_and_refuses_a_taken_one<S: TestStore>(s: &S) {
    let mut a = moderator_with(unique_email());
    let b = moderator_with(unique_email());
    s.create_moderator(&a).await.expect("a");
    s.create_moderator(&b).await.expect("b");

    let old = a.email.clone();
    a.email = unique_email();
    a.organisation = Organisation::parse("Realschule Nord").expect("organisation");
    s.update_moderator(&a).await.expect("changed");
    assert_eq!(
        s.moderator_by_email(&a.email).await.expect("read"),
        Some(a.clone())
    );
    assert_eq!(s.moderator_by_email(&old).await.expect("read"), None);
    s.create_moderator(&moderator_with(old))
        .await
        .expect("the old address is free");

    let mut taken = a.clone();
    taken.email = b.email.clone();
    assert!(matches!(
        s.update_moderator(&taken).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        s.moderator(a.id).await.expect("read"),
        Some(a),
        "a refused change leaves the account as it was"
    );

    let ghost = moderator_with(unique_email());
    assert!(matches!(
        s.update_moderator(&ghost).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn an_erased_moderator_is_gone_and_the_email_is_free_again<S: TestStore>(s: &S) {
    let m = moderator_with(unique_email());
    s.create_moderator(&m).await.expect("created");
    s.delete_moderator(m.id).await.expect("deleted");
    assert_eq!(s.moderator(m.id).await.expect("read"), None);
    assert_eq!(s.moderator_by_email(&m.email).await.expect("read"), None);
    assert!(
        !s.list_moderators()
            .await
            .expect("list")
            .iter()
            .any(|x| x.id == m.id)
    );
    s.delete_moderator(m.id)
        .await
        .expect("erasing twice is fine");
    s.create_moderator(&moderator_with(m.email))
        .await
        .expect("the address is free");
}

// ---- sessions, rate limits, audit ---------------------------------------------

pub async fn admins_restricting_each_other_at_the_same_instant_always_leave_one_active<
    S: TestStore,
>(
    s: &S,
) {
    // Each round: three admins, and every one restricts every other at once, naming itself
    // as the admin who stays (what the portal does when an admin restricts or erases
    // another). However the writes interleave, at least one admin stays active, and an
    // account is restricted exactly when its restriction reported success.
    for round in 0..12 {
        let admins: Vec<Moderator> = (0..3)
            .map(|_| Moderator {
                role: Role::Admin,
                status: AccountStatus::Active,
                ..moderator_with(unique_email())
            })
            .collect();
        for a in &admins {
            s.create_moderator(a).await.expect("admin");
        }
        let mut tries = tokio::task::JoinSet::new();
        for target in &admins {
            for keeper in admins.iter().filter(|k| k.id != target.id) {
                let (s, target, keeper) = (s.clone(), target.id, keeper.id);
                tries.spawn(async move {
                    let done = s.restrict_keeping_admin(target, keeper).await;
                    (target, done.expect("the store answers"))
                });
            }
        }
        let mut restricted = BTreeSet::new();
        while let Some(done) = tries.join_next().await {
            let (target, ok) = done.expect("ran");
            if ok {
                restricted.insert(target.to_string());
            }
        }
        let mut active = 0;
        for a in &admins {
            let now = s.moderator(a.id).await.expect("read").expect("still there");
            assert_eq!(
                now.status == AccountStatus::Restricted,
                restricted.contains(&a.id.to_string()),
                "round {round}: a restriction reported as done is the one stored"
            );
            if now.status == AccountStatus::Active {
                active += 1;
            }
        }
        assert!(active >= 1, "round {round}: no active admin left");
    }

    // The admin to keep must be another active admin.
    let a = Moderator {
        role: Role::Admin,
        ..moderator_with(unique_email())
    };
    let teacher = moderator_with(unique_email());
    s.create_moderator(&a).await.expect("admin");
    s.create_moderator(&teacher).await.expect("teacher");
    assert!(!s.restrict_keeping_admin(a.id, a.id).await.expect("answer"));
    assert!(
        !s.restrict_keeping_admin(a.id, teacher.id)
            .await
            .expect("answer"),
        "a teacher does not keep the portal administered"
    );
    assert_eq!(
        s.moderator(a.id)
            .await
            .expect("read")
            .expect("there")
            .status,
        AccountStatus::Active
    );
    assert!(matches!(
        s.restrict_keeping_admin(IDS.moderator_id(), a.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn a_session_lives_until_it_expires_or_is_deleted<S: TestStore>(s: &S) {
    let m = moderator_with(unique_email());
    s.create_moderator(&m).await.expect("moderator");
    let mut a = session_of(m.id, T0);
    let b = session_of(m.id, T0);
    s.put_session(&a).await.expect("a");
    s.put_session(&b).await.expect("b");
    assert_eq!(
        s.session(m.id, a.id, T0).await.expect("read"),
        Some(a.clone())
    );
    assert_eq!(
        s.session(IDS.moderator_id(), a.id, T0).await.expect("read"),
        None,
        "a session belongs to its account"
    );

    let end = a.expires_at.instant();
    assert_eq!(
        s.session(m.id, a.id, end.minus(SECOND))
            .await
            .expect("read"),
        Some(a.clone())
    );
    assert_eq!(s.session(m.id, a.id, end).await.expect("read"), None);

    // Renewing moves the expiry.
    a.expires_at = retention::session_expiry(end.minus(SECOND));
    s.put_session(&a).await.expect("renewed");
    assert_eq!(
        s.session(m.id, a.id, end.plus(SECOND)).await.expect("read"),
        Some(a.clone())
    );
    // Writing it again also clears the handed-over password's flag (the password changed).
    a.must_change_password = false;
    s.put_session(&a).await.expect("password changed");
    assert_eq!(
        s.session(m.id, a.id, end.plus(SECOND)).await.expect("read"),
        Some(a.clone())
    );

    s.delete_session(m.id, a.id).await.expect("logged out");
    assert_eq!(s.session(m.id, a.id, T0).await.expect("read"), None);
    assert_eq!(
        s.session(m.id, b.id, T0).await.expect("read"),
        Some(b.clone()),
        "other sessions stay"
    );
    s.delete_sessions_of(m.id)
        .await
        .expect("logged out everywhere");
    assert_eq!(s.session(m.id, b.id, T0).await.expect("read"), None);
}

pub async fn a_password_change_ends_the_other_sessions_and_keeps_the_one_in_use<S: TestStore>(
    s: &S,
) {
    let m = moderator_with(unique_email());
    s.create_moderator(&m).await.expect("moderator");
    let other = session_of(m.id, T0);
    let someone_elses = session_of(IDS.moderator_id(), T0);
    let mut current = session_of(m.id, T0);
    current.must_change_password = true;
    for x in [&other, &someone_elses, &current] {
        s.put_session(x).await.expect("session");
    }
    current.must_change_password = false;
    s.put_session(&current)
        .await
        .expect("current session rewritten");
    s.delete_sessions_except(m.id, current.id)
        .await
        .expect("the other sessions ended");
    assert_eq!(
        s.session(m.id, current.id, T0).await.expect("read"),
        Some(current.clone()),
        "the browser that changed the password stays logged in"
    );
    assert_eq!(
        s.session(m.id, other.id, T0).await.expect("read"),
        None,
        "another browser with the old password is logged out"
    );
    assert_eq!(
        s.session(someone_elses.moderator_id, someone_elses.id, T0)
            .await
            .expect("read"),
        Some(someone_elses),
        "another account's session stays"
    );
}

pub async fn erasing_a_moderator_ends_their_sessions<S: TestStore>(s: &S) {
    let m = moderator_with(unique_email());
    s.create_moderator(&m).await.expect("moderator");
    let session = session_of(m.id, T0);
    s.put_session(&session).await.expect("session");
    s.delete_moderator(m.id).await.expect("erased");
    assert_eq!(s.session(m.id, session.id, T0).await.expect("read"), None);
}

pub async fn concurrent_attempts_are_all_counted_and_the_count_ends_with_its_window<
    S: TestStore,
>(
    s: &S,
) {
    let key = rate_key();
    let expiry = retention::rate_expiry(T0);
    let mut hits = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let s = s.clone();
        let key = key.clone();
        hits.spawn(async move { s.hit(&key, T0, expiry).await });
    }
    let mut counts = BTreeSet::new();
    while let Some(done) = hits.join_next().await {
        counts.insert(done.expect("ran").expect("counted"));
    }
    assert_eq!(
        counts,
        (1..=10).collect(),
        "every attempt saw its own count"
    );
    assert_eq!(s.attempts(&key, T0, T0).await.expect("read"), 10);
    assert_eq!(
        s.attempts(&key, T0.plus(retention::RATE_WINDOW), T0)
            .await
            .expect("read"),
        0,
        "the next window starts at 0"
    );
    assert_eq!(
        s.attempts(&key, T0, expiry.instant()).await.expect("read"),
        0,
        "an expired window counts nothing"
    );
    s.clear(&key, T0).await.expect("cleared");
    assert_eq!(s.attempts(&key, T0, T0).await.expect("read"), 0);
}

pub async fn parallel_attempts_counted_up_to_a_limit_stop_exactly_there_and_can_be_taken_back<
    S: TestStore,
>(
    s: &S,
) {
    let key = rate_key();
    let expiry = retention::rate_expiry(T0);
    s.hit(&key, T0, expiry).await.expect("counted");
    let mut hits = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let s = s.clone();
        let key = key.clone();
        hits.spawn(async move { s.hit_below(&key, T0, 8, expiry).await });
    }
    let mut counts = BTreeSet::new();
    let mut refused = 0;
    while let Some(done) = hits.join_next().await {
        match done.expect("ran").expect("answered") {
            Some(n) => {
                counts.insert(n);
            }
            None => refused += 1,
        }
    }
    assert_eq!(
        counts,
        (2..=8).collect(),
        "each admitted attempt its own count"
    );
    assert_eq!(refused, 13, "the rest are refused at the limit");
    assert_eq!(s.attempts(&key, T0, T0).await.expect("read"), 8);

    s.unhit(&key, T0).await.expect("taken back");
    assert_eq!(s.attempts(&key, T0, T0).await.expect("read"), 7);
    assert_eq!(
        s.hit_below(&key, T0, 8, expiry).await.expect("counted"),
        Some(8)
    );

    // Taking back never goes below zero, nor makes a counter where there was none.
    let other = rate_key();
    s.unhit(&other, T0).await.expect("nothing to take back");
    assert_eq!(s.attempts(&other, T0, T0).await.expect("read"), 0);
    assert_eq!(
        s.hit_below(&other, T0, 1, expiry).await.expect("counted"),
        Some(1)
    );
    s.unhit(&other, T0).await.expect("taken back");
    s.unhit(&other, T0).await.expect("still zero");
    assert_eq!(s.attempts(&other, T0, T0).await.expect("read"), 0);
    assert_eq!(
        s.hit_below(&other, T0, 0, expiry).await.expect("answered"),
        None
    );
}

pub async fn the_audit_log_lists_by_time_and_expires_after_a_year<S: TestStore>(s: &S) {
    let base = T0.plus(Span::days(i64::from(IDS.random_16()[0]) + 1));
    let entries: Vec<_> = [0, 20 * 86_400, 45 * 86_400]
        .into_iter()
        .map(|secs| audit_entry(base.plus(Span::seconds(secs))))
        .collect();
    for e in entries.iter().rev() {
        s.append_audit(e).await.expect("written");
    }
    let until = base.plus(Span::days(46));
    let id = |e: &AuditEntry| e.id;
    let listed = s.audit_between(base, until, until).await.expect("list");
    assert_eq!(
        ours(listed, &entries, id),
        entries,
        "across months, oldest first"
    );
    let after_first = entries[0].expires_at.instant().plus(SECOND);
    let listed = s
        .audit_between(base, until, after_first)
        .await
        .expect("list");
    assert_eq!(ours(listed, &entries, id), entries[1..]);
}
