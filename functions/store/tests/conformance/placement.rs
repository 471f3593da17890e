//! Conformance cases for the media-node registry and placement by reservation: the
//! parts of the store that decide which node a room's meeting runs on and how many
//! seats it holds there.

use crate::cases::*;
use aula_domain::ids::IdGenerator;
use aula_domain::ports::*;
use aula_domain::retention;
use aula_domain::*;

fn placement_of(room: RoomId, node: NodeId, at: Timestamp) -> Placement {
    Placement {
        room_id: room,
        node_id: node,
        placed_at: at,
        seats: 3,
        holders: vec![format!("guest:{}", IDS.uuid())],
        reserved_at: at,
        expires_at: retention::placement_expiry(at),
    }
}

/// A live node of `capacity` seats, registered at `at`.
async fn registered_node<S: TestStore>(s: &S, capacity: u32, at: Timestamp) -> NodeId {
    let n = MediaNode {
        capacity,
        load: 0,
        ..node(at)
    };
    s.put_node(&n).await.expect("registered");
    n.id
}

async fn reserved_on<S: TestStore>(s: &S, node: NodeId, at: Timestamp) -> u32 {
    s.live_nodes(at)
        .await
        .expect("list")
        .into_iter()
        .find(|n| n.id == node)
        .map(|n| n.reserved)
        .expect("the node is registered")
}

// ---- the registry ----------------------------------------------------------------

pub async fn a_dead_media_node_leaves_the_registry_when_its_heartbeat_expires<S: TestStore>(s: &S) {
    let mut alive = node(T0);
    let dead = node(T0);
    s.put_node(&alive).await.expect("registered");
    s.put_node(&dead).await.expect("registered");
    let ours = |nodes: Vec<MediaNode>| -> Vec<NodeId> {
        let mut ids: Vec<_> = nodes
            .into_iter()
            .map(|n| n.id)
            .filter(|id| *id == alive.id || *id == dead.id)
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![alive.id, dead.id];
    both.sort();
    assert_eq!(ours(s.live_nodes(T0).await.expect("list")), both);

    let later = T0.plus(Span::seconds(10));
    alive.load = 40;
    alive.last_heartbeat = later;
    alive.expires_at = retention::heartbeat_expiry(later);
    s.put_node(&alive).await.expect("heartbeat");
    let after = T0.plus(retention::NODE_HEARTBEAT).plus(SECOND);
    let live = s.live_nodes(after).await.expect("list");
    assert_eq!(ours(live.clone()), vec![alive.id]);
    assert!(
        live.contains(&alive),
        "the heartbeat's load is what placement sees"
    );

    s.remove_node(alive.id).await.expect("removed");
    assert_eq!(
        ours(s.live_nodes(after).await.expect("list")),
        Vec::<NodeId>::new()
    );
}

// ---- placement -------------------------------------------------------------------

pub async fn a_room_keeps_its_placement_and_of_two_concurrent_placements_one_wins<S: TestStore>(
    s: &S,
) {
    let room = IDS.room_id();
    let a = registered_node(s, 100, T0).await;
    let b = registered_node(s, 100, T0).await;
    let mut racers = tokio::task::JoinSet::new();
    for node in [a, b, a, b] {
        let s = s.clone();
        racers.spawn(async move {
            let p = placement_of(room, node, T0);
            (node, s.reserve(&p, 100, None, T0).await)
        });
    }
    let mut winners = Vec::new();
    let mut told = Vec::new();
    while let Some(done) = racers.join_next().await {
        let (node, outcome) = done.expect("ran");
        match outcome.expect("answered") {
            Reserved::Placed => winners.push(node),
            Reserved::Taken(winner) => told.push(winner.node_id),
            Reserved::NodeFull => panic!("a node with room for the seats refused them"),
        }
    }
    let placed = s.placement(room, T0).await.expect("read").expect("placed");
    assert_eq!(winners, vec![placed.node_id], "exactly one placement won");
    assert_eq!(
        told,
        vec![placed.node_id; 3],
        "every loser is told where the room went"
    );
    let other = if placed.node_id == a { b } else { a };
    assert_eq!(
        reserved_on(s, placed.node_id, T0).await,
        3,
        "only the winner's seats are reserved"
    );
    assert_eq!(reserved_on(s, other, T0).await, 0);

    // Another node can take the room only by naming the one it replaces (a dead node),
    // and the seats move with the room.
    let later = T0.plus(SECOND);
    let moved = placement_of(room, other, later);
    assert_eq!(
        s.reserve(&moved, 100, None, later).await.expect("answered"),
        Reserved::Taken(placed.clone())
    );
    assert_eq!(
        s.reserve(&moved, 100, Some(placed.node_id), later)
            .await
            .expect("answered"),
        Reserved::Placed
    );
    assert_eq!(
        s.placement(room, later)
            .await
            .expect("read")
            .map(|p| p.node_id),
        Some(other)
    );
    assert_eq!(reserved_on(s, other, later).await, 3);
    assert_eq!(reserved_on(s, placed.node_id, later).await, 0);

    // An expired placement is gone.
    let expired = retention::placement_expiry(later).instant();
    assert_eq!(s.placement(room, expired).await.expect("read"), None);
}

pub async fn concurrent_reservations_never_take_a_node_over_its_capacity<S: TestStore>(s: &S) {
    let node = registered_node(s, 10, T0).await;
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let s = s.clone();
        racers.spawn(async move {
            let p = placement_of(IDS.room_id(), node, T0);
            s.reserve(&p, 10, None, T0).await
        });
    }
    let mut placed = 0;
    while let Some(done) = racers.join_next().await {
        match done.expect("ran").expect("answered") {
            Reserved::Placed => placed += 1,
            Reserved::NodeFull => {}
            Reserved::Taken(_) => panic!("every racer placed a different room"),
        }
    }
    assert_eq!(placed, 3, "three rooms of 3 seats fit in 10");
    assert_eq!(reserved_on(s, node, T0).await, 9);
    let listed = s.reservations_on(node, T0).await.expect("list");
    assert_eq!(listed.len(), 3);
    assert!(
        listed.iter().all(|p| p.seats == 3 && p.holders.is_empty()),
        "three rooms of 3 seats, listed without who holds them"
    );

    // A node that is not registered takes nothing.
    let p = placement_of(IDS.room_id(), IDS.node_id(), T0);
    assert_eq!(
        s.reserve(&p, 10, None, T0).await.expect("answered"),
        Reserved::NodeFull
    );
}

pub async fn when_a_rooms_node_dies_many_concurrent_moves_end_on_one_node_and_every_loser_learns_it_from_its_own_write<
    S: TestStore,
>(
    s: &S,
) {
    let room = IDS.room_id();
    let dead = registered_node(s, 100, T0).await;
    let first = placement_of(room, dead, T0);
    assert_eq!(
        s.reserve(&first, 100, None, T0).await.expect("answered"),
        Reserved::Placed
    );
    let nodes = [
        registered_node(s, 100, T0).await,
        registered_node(s, 100, T0).await,
        registered_node(s, 100, T0).await,
    ];
    // Twelve grants at once, each placing the room on a node of its own choice in place of
    // the dead one.
    let later = T0.plus(SECOND);
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..12 {
        let s = s.clone();
        let node = nodes[i % nodes.len()];
        racers.spawn(async move {
            let p = placement_of(room, node, later);
            s.reserve(&p, 100, Some(dead), later).await
        });
    }
    let (mut placed, mut told) = (0, Vec::new());
    while let Some(done) = racers.join_next().await {
        match done.expect("ran").expect("answered") {
            Reserved::Placed => placed += 1,
            Reserved::Taken(winner) => told.push(winner),
            Reserved::NodeFull => panic!("a node with room for the seats refused them"),
        }
    }
    let now = s
        .placement(room, later)
        .await
        .expect("read")
        .expect("placed");
    assert_eq!(placed, 1, "one grant moved the room");
    assert_ne!(now.node_id, dead);
    assert_eq!(told.len(), 11);
    assert!(
        told.iter().all(|w| *w == now),
        "every loser got the winner's placement as it is stored"
    );
    for node in nodes {
        let seats = if node == now.node_id { 3 } else { 0 };
        assert_eq!(
            reserved_on(s, node, later).await,
            seats,
            "only the room's node holds its seats"
        );
    }
    assert_eq!(
        reserved_on(s, dead, later).await,
        0,
        "the dead node's seats went back"
    );
}

pub async fn seats_go_to_distinct_holders_grow_within_capacity_and_come_back_on_release<
    S: TestStore,
>(
    s: &S,
) {
    let node = registered_node(s, 8, T0).await;
    let room = IDS.room_id();
    let first = placement_of(room, node, T0);
    assert_eq!(
        s.reserve(&first, 8, None, T0).await.expect("answered"),
        Reserved::Placed
    );
    // The first holder asking again keeps their seat; nobody takes a second one.
    for _ in 0..3 {
        assert!(
            s.take_seat(room, node, &first.holders[0], 1, 8, T0)
                .await
                .expect("answered")
        );
    }
    // Ten pupils at once for the 2 free seats and 5 more the node can grow by.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..10 {
        let s = s.clone();
        racers.spawn(async move {
            let holder = format!("guest:pupil-{i}-{}", IDS.uuid().simple());
            s.take_seat(room, node, &holder, 1, 8, T0).await
        });
    }
    let mut seated = 0;
    while let Some(done) = racers.join_next().await {
        if done.expect("ran").expect("answered") {
            seated += 1;
        }
    }
    assert_eq!(seated, 7, "2 reserved seats and 5 grown ones, no more");
    assert_eq!(reserved_on(s, node, T0).await, 8);
    let p = s.placement(room, T0).await.expect("read").expect("placed");
    assert_eq!((p.seats, p.holders.len()), (8, 8));
    assert!(
        !s.take_seat(room, node, "guest:late", 1, 8, T0)
            .await
            .expect("answered"),
        "a full node gives no seat"
    );
    assert!(
        !s.take_seat(room, IDS.node_id(), "guest:late", 1, 100, T0)
            .await
            .expect("answered"),
        "a seat is only taken on the room's node"
    );

    // The meeting ends: its seats go back, once, and the room stays placed.
    s.release(room, node).await.expect("released");
    s.release(room, node).await.expect("released again");
    assert_eq!(reserved_on(s, node, T0).await, 0);
    let p = s.placement(room, T0).await.expect("read").expect("placed");
    assert_eq!((p.seats, p.holders.len()), (0, 0));
    assert!(s.reservations_on(node, T0).await.expect("list").is_empty());
    // The next grant reserves again, by growing from nothing.
    assert!(
        s.take_seat(room, node, "guest:next-day", 4, 8, T0)
            .await
            .expect("answered")
    );
    assert_eq!(reserved_on(s, node, T0).await, 4);
}

// ---- the admission queue -----------------------------------------------------------

pub async fn a_room_keeps_one_place_in_the_queue_places_are_numbered_once_and_the_mark_only_rises<
    S: TestStore,
>(
    s: &S,
) {
    let before = s.admission_queue(T0).await.expect("read");
    // Twenty rooms queue at once, each asked for by three pupils at once.
    let rooms: Vec<RoomId> = (0..20).map(|_| IDS.room_id()).collect();
    let mut handles = Vec::new();
    for room in &rooms {
        for _ in 0..3 {
            let (s, room) = (s.clone(), *room);
            handles.push(tokio::spawn(async move {
                s.take_room_ticket(room, before.admitted_through, T0).await
            }));
        }
    }
    let mut per_room: std::collections::HashMap<RoomId, Vec<u64>> = Default::default();
    for h in handles {
        let t = h.await.expect("joined").expect("queued");
        per_room.entry(t.room_id).or_default().push(t.number);
    }
    let mut numbers = Vec::new();
    for (room, got) in &per_room {
        assert!(
            got.iter().all(|n| *n == got[0]),
            "the pupils of one room wait on one place: {got:?}"
        );
        let held = s
            .room_ticket(*room, T0)
            .await
            .expect("read")
            .expect("queued");
        assert_eq!(held.number, got[0]);
        numbers.push(got[0]);
    }
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 20, "twenty rooms, twenty places");
    let q = s.admission_queue(T0).await.expect("read");
    assert!(
        numbers.iter().all(|n| *n > before.issued && *n <= q.issued),
        "places are numbered after every earlier one"
    );

    // The room with the highest place goes in first (several fit at once): it is noted
    // above the mark, which stays below the rooms still waiting before it.
    let later = T0.plus(SECOND);
    let mut by_number: Vec<_> = per_room.iter().map(|(r, n)| (n[0], *r)).collect();
    by_number.sort_unstable();
    let ticket = |i: usize, at: Timestamp| {
        let (s, room) = (s.clone(), by_number[i].1);
        async move {
            s.room_ticket(room, at)
                .await
                .expect("read")
                .expect("queued")
        }
    };
    let (high, high_room) = by_number[by_number.len() - 1];
    let (low, _) = by_number[0];
    let (quiet, quiet_room) = by_number[1];
    // Each change is what the domain says letting that place in does to the queue as read
    // just before (the store applies it atomically).
    let let_in = |i: usize, passing: bool, at: Timestamp| {
        let s = s.clone();
        let ticket = ticket(i, at);
        async move {
            let before = s.admission_queue(at).await.expect("read");
            let t = ticket.await;
            s.room_admitted(&t, passing, at).await.expect("admitted");
            let after = s.admission_queue(at).await.expect("read");
            let expected = before
                .letting_in(t.number, passing)
                .unwrap_or((before.admitted_through, before.entered.clone()));
            assert_eq!(
                (after.admitted_through, after.entered.clone()),
                expected,
                "place {} let in (passing: {passing})",
                t.number
            );
            after
        }
    };
    let q = let_in(by_number.len() - 1, false, later).await;
    assert!(
        q.admitted_through < low && q.entered.contains(&high),
        "a room let in early is noted above the mark"
    );
    assert_eq!(q.moved_at, later, "the queue moved when it went in");
    assert_eq!(
        s.room_ticket(high_room, later).await.expect("read"),
        None,
        "a room let in has no place any more"
    );
    // The front goes in (past whatever earlier runs left): the mark moves to it.
    let q = let_in(0, true, later.plus(SECOND)).await;
    assert!(q.admitted_through >= low && q.admitted_through < quiet);
    let moved_at = q.moved_at;

    // The first free seat seen after the mark moved is remembered, later ones are not.
    s.capacity_seen(later.plus(SECOND)).await.expect("seen");
    s.capacity_seen(later.plus(Span::seconds(5)))
        .await
        .expect("seen");
    let q = s
        .admission_queue(later.plus(Span::seconds(5)))
        .await
        .expect("read");
    assert_eq!(q.capacity_seen_at, Some(later.plus(SECOND)));
    assert_eq!(q.moved_at, moved_at);

    // All but one of the rest go in at once, in any order: the one left is the only place
    // a new room has ahead of it, and nothing is ahead of it.
    let mut handles = Vec::new();
    for i in 2..by_number.len() - 1 {
        let t = ticket(i, later).await;
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.room_admitted(&t, false, later.plus(Span::seconds(6)))
                .await
        }));
    }
    for h in handles {
        h.await.expect("joined").expect("admitted");
    }
    let q = s
        .admission_queue(later.plus(Span::seconds(6)))
        .await
        .expect("read");
    assert_eq!(q.ahead_of(quiet), 0, "nothing waits before the last room");
    assert_eq!(
        q.ahead_of(q.issued + 1),
        1,
        "a new place has only the last room ahead: {q:?}"
    );

    // A room whose pupils stopped asking loses its place after a minute.
    let gone = later.plus(retention::ROOM_TICKET).plus(SECOND);
    assert_eq!(s.room_ticket(quiet_room, gone).await.expect("read"), None);

    // A queue nobody used for a day reads as empty and starts again from 1.
    let next_day = later
        .plus(Span::seconds(6))
        .plus(retention::ADMISSION_QUEUE)
        .plus(SECOND);
    let q = s.admission_queue(next_day).await.expect("read");
    assert_eq!((q.issued, q.admitted_through), (0, 0));
    let fresh = s
        .take_room_ticket(IDS.room_id(), 0, next_day)
        .await
        .expect("queued");
    assert_eq!(fresh.number, 1);
}
