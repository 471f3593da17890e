//! Room placement over registered media nodes, as the rooms function does it when it issues
//! a join grant: spread by "power of two random choices", sticky while a node lives, and a
//! clear refusal when every node is full.

mod common;

use async_trait::async_trait;
use aula_domain::ids::IdGenerator;
use aula_domain::ports::NodeProbe;
use aula_domain::retention;
use aula_domain::services::{Aula, LoginPolicy, PlacementPolicy, ServiceError};
use aula_domain::{Clock, MediaNode, RoomId, Span, Timestamp};
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

/// A portal with its clock and health probe, and the calls every placement test makes.
struct Cluster {
    aula: Aula,
    clock: Arc<TestClock>,
    probe: Arc<Probe>,
}

impl Cluster {
    fn new() -> Self {
        let clock = Arc::new(TestClock(AtomicI64::new(T0)));
        let probe = Arc::new(Probe::default());
        let mut aula = common::embedded_aula(clock.clone(), LoginPolicy::default());
        aula.probe = probe.clone();
        Cluster { aula, clock, probe }
    }

    async fn register(&self, load: u32, capacity: u32) -> MediaNode {
        let n = node(load, capacity, self.clock.now());
        self.aula.store.put_node(&n).await.expect("registered");
        n
    }

    /// Places `room` for `who` with the default policy, as a join grant does; `lost` is the
    /// node the client reports it cannot reach.
    async fn place(&self, room: RoomId, who: &str, lost: Option<&MediaNode>) -> MediaNode {
        self.aula
            .place(
                room,
                who,
                PlacementPolicy::default(),
                lost.map(|n| n.address.as_str()),
            )
            .await
            .expect("placed")
    }

    /// Time passes; only `alive` renews its heartbeat.
    async fn later_only_heartbeating(&self, seconds: i64, alive: &MediaNode) {
        self.clock
            .0
            .fetch_add(Span::seconds(seconds).millis(), Ordering::SeqCst);
        let renewed = MediaNode {
            last_heartbeat: self.clock.now(),
            expires_at: retention::heartbeat_expiry(self.clock.now()),
            ..alive.clone()
        };
        self.aula.store.put_node(&renewed).await.expect("heartbeat");
    }

    /// Two empty nodes of 100 seats and a room placed on one of them for `who`: the room, its
    /// node, the other node.
    async fn a_room_on_one_of_two_nodes(&self, who: &str) -> (RoomId, MediaNode, MediaNode) {
        let a = self.register(0, 100).await;
        let b = self.register(0, 100).await;
        let room = RandomIds.room_id();
        let first = self.place(room, who, None).await;
        let (on, other) = if first.id == a.id { (a, b) } else { (b, a) };
        (room, on, other)
    }
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
    let cluster = Cluster::new();
    for _ in 0..5 {
        cluster.register(0, 100_000).await;
    }
    let mut per_node: HashMap<String, u32> = HashMap::new();
    for _ in 0..1000 {
        let placed = cluster.place(RandomIds.room_id(), "guest:test", None).await;
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
    let cluster = Cluster::new();
    let (room, first, survivor) = cluster.a_room_on_one_of_two_nodes("guest:test").await;
    for _ in 0..5 {
        let again = cluster.place(room, "guest:test", None).await;
        assert_eq!(
            again.id, first.id,
            "a room stays on its node while it lives"
        );
    }
    // Only the other node keeps sending heartbeats; the first one's record dies.
    cluster.later_only_heartbeating(20, &survivor).await;
    let moved = cluster.place(room, "guest:test", None).await;
    assert_eq!(moved.id, survivor.id, "the room moved to the live node");
}

#[tokio::test]
async fn a_room_moves_at_once_when_a_client_reports_its_node_unreachable_and_the_node_has_gone_quiet_but_not_on_a_client_word_alone()
 {
    let cluster = Cluster::new();
    let (room, dead, survivor) = cluster.a_room_on_one_of_two_nodes("guest:test").await;

    // A client says it cannot reach the node, whose heartbeat is fresh: one client's network
    // (or a malicious guest) does not take a healthy node out of service.
    let kept = cluster.place(room, "guest:test", Some(&dead)).await;
    assert_eq!(
        kept.id, dead.id,
        "a node with a fresh heartbeat keeps its rooms"
    );

    // The node dies; 4 s later (its registry entry lives 15 s) the survivor has renewed its
    // heartbeat and the dead node has not.
    cluster.later_only_heartbeating(4, &survivor).await;
    let unreported = cluster.place(room, "guest:test", None).await;
    assert_eq!(
        unreported.id, dead.id,
        "without a report the registry entry still counts"
    );
    let moved = cluster.place(room, "guest:test", Some(&dead)).await;
    assert_eq!(
        moved.id, survivor.id,
        "reported and quiet: the room moves now"
    );
    let stays = cluster.place(room, "guest:test", None).await;
    assert_eq!(stays.id, survivor.id, "and stays on its new node");
}

#[tokio::test]
async fn a_room_moves_at_once_when_its_reported_node_does_not_answer_its_health_check_though_its_heartbeat_is_fresh()
 {
    let cluster = Cluster::new();
    let (room, dead, survivor) = cluster.a_room_on_one_of_two_nodes("guest:teacher").await;
    assert!(
        cluster.probe.asked.lock().expect("lock").is_empty(),
        "nobody reported a node: none was asked"
    );

    // Killed a moment ago: its last heartbeat is fresh, its health check is refused.
    cluster.probe.fail(&dead);
    let moved = cluster.place(room, "guest:anna", Some(&dead)).await;
    assert_eq!(
        moved.id, survivor.id,
        "the room moved with the first report"
    );
    assert_eq!(
        *cluster.probe.asked.lock().expect("lock"),
        vec![dead.address.clone()],
        "only the reported node was asked"
    );
    for who in ["guest:teacher", "guest:ben"] {
        let next = cluster.place(room, who, None).await;
        assert_eq!(
            next.id, survivor.id,
            "{who} follows the room to its new node"
        );
    }

    // One client reports the new node too, which answers: the room stays.
    let kept = cluster.place(room, "guest:ben", Some(&survivor)).await;
    assert_eq!(kept.id, survivor.id, "a node that answers keeps its room");
}

#[tokio::test]
async fn rooms_placed_but_not_yet_joined_count_against_a_node() {
    let cluster = Cluster::new();
    let small = PlacementPolicy {
        default_seats: 5,
        grow_seats: 1,
        retry_after_secs: 30,
    };
    for _ in 0..2 {
        cluster.register(0, 10).await;
    }
    // Two nodes of 10 participants, rooms expected to bring 5: four rooms fit, the fifth
    // does not, although no heartbeat has reported a single participant yet.
    let mut per_node: HashMap<String, u32> = HashMap::new();
    for _ in 0..4 {
        let n = cluster
            .aula
            .place(RandomIds.room_id(), "guest:test", small, None)
            .await
            .expect("placed");
        *per_node.entry(n.address).or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![2, 2]);
    let full = cluster
        .aula
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
    let cluster = Cluster::new();
    let nothing = cluster
        .aula
        .place(
            RandomIds.room_id(),
            "guest:test",
            PlacementPolicy::default(),
            None,
        )
        .await;
    assert!(matches!(nothing, Err(ServiceError::NoCapacity { .. })));
    for _ in 0..3 {
        cluster.register(500, 500).await;
    }
    let full = cluster
        .aula
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
    let cluster = Cluster::new();
    // `aula serve --media-capacity 0`: the portal's in-process node is registered, takes no
    // rooms; the rooms go to the two separately run nodes.
    let portal = cluster.register(0, 0).await;
    let a = cluster.register(0, 1000).await;
    let b = cluster.register(0, 1000).await;
    for _ in 0..50 {
        let placed = cluster.place(RandomIds.room_id(), "guest:test", None).await;
        assert_ne!(
            placed.id, portal.id,
            "a new room never goes to a node without seats"
        );
    }

    // A room's node is killed: its class follows the room to the other node, every time.
    for _ in 0..10 {
        let room = RandomIds.room_id();
        let first = cluster.place(room, "guest:teacher", None).await;
        let (lost, other) = if first.id == a.id { (&a, &b) } else { (&b, &a) };
        cluster.probe.fail(lost);
        for who in ["guest:teacher", "guest:anna", "guest:ben"] {
            let moved = cluster.place(room, who, Some(lost)).await;
            assert_eq!(
                moved.id, other.id,
                "{who} is placed on the other node with seats"
            );
        }
        cluster.probe.down.lock().expect("lock").clear();
    }
}

#[tokio::test]
async fn when_a_rooms_node_dies_a_class_asking_at_once_all_lands_on_one_node_with_one_seat_each() {
    let cluster = Cluster::new();
    let (room, dead, _) = cluster.a_room_on_one_of_two_nodes("guest:teacher").await;
    for _ in 0..2 {
        cluster.register(0, 100).await;
    }
    // Killed a moment ago: the whole class notices at once and asks for a new grant.
    cluster.probe.fail(&dead);
    let mut class = tokio::task::JoinSet::new();
    for i in 0..12 {
        let aula = cluster.aula.clone();
        let lost = dead.address.clone();
        class.spawn(async move {
            aula.place(
                room,
                &format!("guest:pupil-{i}"),
                PlacementPolicy::default(),
                Some(&lost),
            )
            .await
        });
    }
    let mut landed = HashSet::new();
    while let Some(done) = class.join_next().await {
        landed.insert(done.expect("ran").expect("placed").id);
    }
    assert_eq!(landed.len(), 1, "everyone is on the same node");
    assert!(!landed.contains(&dead.id));

    let now = cluster.clock.now();
    let placement = cluster
        .aula
        .store
        .placement(room, now)
        .await
        .expect("read")
        .expect("placed");
    assert!(landed.contains(&placement.node_id));
    let holders: HashSet<_> = placement.holders.iter().collect();
    assert_eq!(holders.len(), 12, "one seat for each pupil, none twice");
    assert!(placement.holders.len() as u32 <= placement.seats);
    for n in cluster.aula.store.live_nodes(now).await.expect("list") {
        let seats = if n.id == placement.node_id {
            placement.seats
        } else {
            0
        };
        assert_eq!(n.reserved, seats, "only the room's node holds its seats");
    }
}
