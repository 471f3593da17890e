//! Room placement over registered media nodes, as the rooms function does it when it issues
//! a join grant: spread by "power of two random choices", sticky while a node lives, and a
//! clear refusal when every node is full.

mod common;

use async_trait::async_trait;
use aula_domain::ids::IdGenerator;
use aula_domain::ports::NodeProbe;
use aula_domain::retention;
use aula_domain::services::{Aula, LoginPolicy, PlacementPolicy, ServiceError};
use aula_domain::{Clock, MediaNode, Span, Timestamp};
use aula_store::RandomIds;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

struct TestClock(AtomicI64);
impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

const T0: i64 = 1_800_000_000_000;

/// Health checks as the test says: every node answers but the ones named down.
#[derive(Default)]
struct Probe {
    down: Mutex<HashSet<String>>,
    asked: Mutex<Vec<String>>,
}

impl Probe {
    fn fail(&self, node: &MediaNode) {
        self.down.lock().expect("lock").insert(node.address.clone());
    }
}

#[async_trait]
impl NodeProbe for Probe {
    async fn answers(&self, node: &MediaNode) -> bool {
        self.asked.lock().expect("lock").push(node.address.clone());
        !self.down.lock().expect("lock").contains(&node.address)
    }
}

fn aula() -> (Aula, Arc<TestClock>) {
    let (aula, clock, _) = aula_probed();
    (aula, clock)
}

fn aula_probed() -> (Aula, Arc<TestClock>, Arc<Probe>) {
    let clock = Arc::new(TestClock(AtomicI64::new(T0)));
    let probe = Arc::new(Probe::default());
    let mut aula = common::embedded_aula(clock.clone(), LoginPolicy::default());
    aula.probe = probe.clone();
    (aula, clock, probe)
}

fn node(load: u32, capacity: u32, at: Timestamp) -> MediaNode {
    MediaNode {
        id: RandomIds.node_id(),
        address: format!("wss://node-{}.aula.example", RandomIds.uuid().simple()),
        capacity,
        load,
        reserved: 0,
        last_heartbeat: at,
        expires_at: retention::heartbeat_expiry(at),
    }
}

#[tokio::test]
async fn a_thousand_rooms_spread_over_five_nodes_within_ten_percent_of_even() {
    let (aula, clock) = aula();
    let nodes: Vec<_> = (0..5).map(|_| node(0, 100_000, clock.now())).collect();
    for n in &nodes {
        aula.store.put_node(n).await.expect("registered");
    }
    let mut per_node: HashMap<String, u32> = HashMap::new();
    for _ in 0..1000 {
        let placed = aula
            .place(
                RandomIds.room_id(),
                "guest:test",
                PlacementPolicy::default(),
                None,
            )
            .await
            .expect("placed");
        *per_node.entry(placed.address).or_default() += 1;
    }
    assert_eq!(per_node.len(), 5, "every node got rooms");
    for (address, rooms) in &per_node {
        assert!(
            (180..=220).contains(rooms),
            "{address} got {rooms} of 1000 rooms"
        );
    }
}

#[tokio::test]
async fn a_room_stays_on_its_node_and_moves_when_the_node_stops_heartbeating() {
    let (aula, clock) = aula();
    let a = node(0, 100, clock.now());
    let b = node(0, 100, clock.now());
    aula.store.put_node(&a).await.expect("a");
    aula.store.put_node(&b).await.expect("b");
    let room = RandomIds.room_id();
    let first = aula
        .place(room, "guest:test", PlacementPolicy::default(), None)
        .await
        .expect("placed");
    for _ in 0..5 {
        let again = aula
            .place(room, "guest:test", PlacementPolicy::default(), None)
            .await
            .expect("placed");
        assert_eq!(
            again.id, first.id,
            "a room stays on its node while it lives"
        );
    }
    // Only the other node keeps sending heartbeats; the first one's record dies.
    let survivor = if first.id == a.id { b } else { a };
    clock
        .0
        .fetch_add(Span::seconds(20).millis(), Ordering::SeqCst);
    let renewed = MediaNode {
        last_heartbeat: clock.now(),
        expires_at: retention::heartbeat_expiry(clock.now()),
        ..survivor.clone()
    };
    aula.store.put_node(&renewed).await.expect("heartbeat");
    let moved = aula
        .place(room, "guest:test", PlacementPolicy::default(), None)
        .await
        .expect("placed");
    assert_eq!(moved.id, survivor.id, "the room moved to the live node");
}

#[tokio::test]
async fn a_room_moves_at_once_when_a_client_reports_its_node_unreachable_and_the_node_has_gone_quiet_but_not_on_a_client_word_alone()
 {
    let (aula, clock) = aula();
    let a = node(0, 100, clock.now());
    let b = node(0, 100, clock.now());
    aula.store.put_node(&a).await.expect("a");
    aula.store.put_node(&b).await.expect("b");
    let room = RandomIds.room_id();
    let first = aula
        .place(room, "guest:test", PlacementPolicy::default(), None)
        .await
        .expect("placed");
    let (dead, survivor) = if first.id == a.id { (a, b) } else { (b, a) };

    // A client says it cannot reach the node, whose heartbeat is fresh: one client's network
    // (or a malicious guest) does not take a healthy node out of service.
    let kept = aula
        .place(
            room,
            "guest:test",
            PlacementPolicy::default(),
            Some(&dead.address),
        )
        .await
        .expect("placed");
    assert_eq!(
        kept.id, dead.id,
        "a node with a fresh heartbeat keeps its rooms"
    );

    // The node dies; 4 s later (its registry entry lives 15 s) the survivor has renewed its
    // heartbeat and the dead node has not.
    clock
        .0
        .fetch_add(Span::seconds(4).millis(), Ordering::SeqCst);
    let renewed = MediaNode {
        last_heartbeat: clock.now(),
        expires_at: retention::heartbeat_expiry(clock.now()),
        ..survivor.clone()
    };
    aula.store.put_node(&renewed).await.expect("heartbeat");
    let unreported = aula
        .place(room, "guest:test", PlacementPolicy::default(), None)
        .await
        .expect("placed");
    assert_eq!(
        unreported.id, dead.id,
        "without a report the registry entry still counts"
    );
    let moved = aula
        .place(
            room,
            "guest:test",
            PlacementPolicy::default(),
            Some(&dead.address),
        )
        .await
        .expect("placed");
    assert_eq!(
        moved.id, survivor.id,
        "reported and quiet: the room moves now"
    );
    let stays = aula
        .place(room, "guest:test", PlacementPolicy::default(), None)
        .await
        .expect("placed");
    assert_eq!(stays.id, survivor.id, "and stays on its new node");
}

#[tokio::test]
async fn a_room_moves_at_once_when_its_reported_node_does_not_answer_its_health_check_though_its_heartbeat_is_fresh()
 {
    let (aula, clock, probe) = aula_probed();
    let a = node(0, 100, clock.now());
    let b = node(0, 100, clock.now());
    aula.store.put_node(&a).await.expect("a");
    aula.store.put_node(&b).await.expect("b");
    let room = RandomIds.room_id();
    let first = aula
        .place(room, "guest:teacher", PlacementPolicy::default(), None)
        .await
        .expect("placed");
    let (dead, survivor) = if first.id == a.id { (a, b) } else { (b, a) };
    assert!(
        probe.asked.lock().expect("lock").is_empty(),
        "nobody reported a node: none was asked"
    );

    // Killed a moment ago: its last heartbeat is fresh, its health check is refused.
    probe.fail(&dead);
    let moved = aula
        .place(
            room,
            "guest:anna",
            PlacementPolicy::default(),
            Some(&dead.address),
        )
        .await
        .expect("placed");
    assert_eq!(
        moved.id, survivor.id,
        "the room moved with the first report"
    );
    assert_eq!(
        *probe.asked.lock().expect("lock"),
        vec![dead.address.clone()],
        "only the reported node was asked"
    );
    for who in ["guest:teacher", "guest:ben"] {
        let next = aula
            .place(room, who, PlacementPolicy::default(), None)
            .await
            .expect("placed");
        assert_eq!(
            next.id, survivor.id,
            "{who} follows the room to its new node"
        );
    }

    // One client reports the new node too, which answers: the room stays.
    let kept = aula
        .place(
            room,
            "guest:ben",
            PlacementPolicy::default(),
            Some(&survivor.address),
        )
        .await
        .expect("placed");
    assert_eq!(kept.id, survivor.id, "a node that answers keeps its room");
}

#[tokio::test]
async fn rooms_placed_but_not_yet_joined_count_against_a_node() {
    let (aula, clock) = aula();
    let small = PlacementPolicy {
        default_seats: 5,
        grow_seats: 1,
        retry_after_secs: 30,
    };
    for _ in 0..2 {
        aula.store
            .put_node(&node(0, 10, clock.now()))
            .await
            .expect("node");
    }
    // Two nodes of 10 participants, rooms expected to bring 5: four rooms fit, the fifth
    // does not, although no heartbeat has reported a single participant yet.
    let mut per_node: HashMap<String, u32> = HashMap::new();
    for _ in 0..4 {
        let n = aula
            .place(RandomIds.room_id(), "guest:test", small, None)
            .await
            .expect("placed");
        *per_node.entry(n.address).or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![2, 2]);
    let full = aula
        .place(RandomIds.room_id(), "guest:test", small, None)
        .await;
    assert!(
        matches!(
            full,
            Err(ServiceError::NoCapacity {
                retry_after_secs: 30
            })
        ),
        "{full:?}"
    );
}

#[tokio::test]
async fn a_full_cluster_or_no_node_at_all_refuses_with_retry_after() {
    let (aula, clock) = aula();
    let nothing = aula
        .place(
            RandomIds.room_id(),
            "guest:test",
            PlacementPolicy::default(),
            None,
        )
        .await;
    assert!(matches!(nothing, Err(ServiceError::NoCapacity { .. })));
    for _ in 0..3 {
        aula.store
            .put_node(&node(500, 500, clock.now()))
            .await
            .expect("full node");
    }
    let full = aula
        .place(
            RandomIds.room_id(),
            "guest:test",
            PlacementPolicy::default(),
            None,
        )
        .await;
    assert!(matches!(
        full,
        Err(ServiceError::NoCapacity {
            retry_after_secs: 15
        })
    ));
}

#[tokio::test]
async fn a_node_without_seats_never_gets_a_room_not_even_when_the_rooms_node_is_lost() {
    let (aula, clock, probe) = aula_probed();
    // `aula serve --media-capacity 0`: the portal's in-process node is registered, takes no
    // rooms; the rooms go to the two separately run nodes.
    let portal = node(0, 0, clock.now());
    let a = node(0, 1000, clock.now());
    let b = node(0, 1000, clock.now());
    for n in [&portal, &a, &b] {
        aula.store.put_node(n).await.expect("registered");
    }
    for _ in 0..50 {
        let placed = aula
            .place(
                RandomIds.room_id(),
                "guest:test",
                PlacementPolicy::default(),
                None,
            )
            .await
            .expect("placed");
        assert_ne!(
            placed.id, portal.id,
            "a new room never goes to a node without seats"
        );
    }

    // A room's node is killed: its class follows the room to the other node, every time.
    for _ in 0..10 {
        let room = RandomIds.room_id();
        let first = aula
            .place(room, "guest:teacher", PlacementPolicy::default(), None)
            .await
            .expect("placed");
        let (lost, other) = if first.id == a.id { (&a, &b) } else { (&b, &a) };
        probe.fail(lost);
        for who in ["guest:teacher", "guest:anna", "guest:ben"] {
            let moved = aula
                .place(room, who, PlacementPolicy::default(), Some(&lost.address))
                .await
                .expect("a seat on the other node");
            assert_eq!(
                moved.id, other.id,
                "{who} is placed on the other node with seats"
            );
        }
        probe.down.lock().expect("lock").clear();
    }
}
