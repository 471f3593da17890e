//! The admission queue at 8:00: a burst of pupils over three small nodes, with concurrent
//! grant requests; whoever gets a seat has one the node will honour, the rest wait with a
//! numbered place and enter in that order as meetings end.

mod common;

use aula_domain::ids::IdGenerator;
use aula_domain::services::{Aula, Entry, LoginPolicy, PlacementPolicy};
use aula_domain::{Clock, MediaNode, RoomId, Timestamp, retention};
use aula_store::RandomIds;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_secs(1_800_000_000)
    }
}

/// Rooms of two (a small exam: examiner's room reserved for two at first) that grow one
/// seat at a time.
const POLICY: PlacementPolicy = PlacementPolicy {
    default_seats: 2,
    grow_seats: 1,
    retry_after_secs: 2,
};

async fn aula_with_nodes(nodes: &[MediaNode]) -> Aula {
    let aula = common::embedded_aula(Arc::new(FixedClock), LoginPolicy::default());
    for n in nodes {
        aula.store.put_node(n).await.expect("registered");
    }
    aula
}

fn node(capacity: u32) -> MediaNode {
    let at = FixedClock.now();
    MediaNode {
        id: RandomIds.node_id(),
        address: format!("wss://node-{}.aula.example", RandomIds.uuid().simple()),
        capacity,
        load: 0,
        reserved: 0,
        last_heartbeat: at,
        expires_at: retention::heartbeat_expiry(at),
    }
}

/// Every node's reserved seats, checked against its capacity.
async fn assert_within_capacity(aula: &Aula) {
    for n in aula
        .store
        .live_nodes(FixedClock.now())
        .await
        .expect("nodes")
    {
        assert!(
            n.reserved <= n.capacity,
            "node {} holds {} seats of {}",
            n.id,
            n.reserved,
            n.capacity
        );
    }
}

/// How many holders each placed room has on its node.
async fn seated(aula: &Aula, rooms: &[RoomId]) -> usize {
    let mut total = 0;
    for r in rooms {
        if let Some(p) = aula
            .store
            .placement(*r, FixedClock.now())
            .await
            .expect("read")
        {
            assert!(
                p.holders.len() as u32 <= p.seats,
                "a room holds more than its seats"
            );
            total += p.holders.len();
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_three_small_nodes_never_overfills_one_and_waiting_classes_enter_in_order_as_meetings_end()
 {
    // Three nodes of four seats; twelve classes of two pupils arrive at once.
    let nodes = [node(4), node(4), node(4)];
    let aula = aula_with_nodes(&nodes).await;
    let rooms: Vec<RoomId> = (0..12).map(|_| RandomIds.room_id()).collect();
    let pupils: Vec<(RoomId, String)> = rooms
        .iter()
        .flat_map(|r| (0..2).map(move |i| (*r, format!("guest:{r}-{i}"))))
        .collect();

    let mut handles = Vec::new();
    for (room, holder) in pupils.clone() {
        let aula = aula.clone();
        handles.push(tokio::spawn(async move {
            let entry = aula
                .admit(room, &holder, false, None, POLICY, None)
                .await
                .expect("a seat or a place");
            (room, holder, entry)
        }));
    }
    let mut placed: Vec<(RoomId, String)> = Vec::new();
    // Waiting pupils by their room's place.
    let mut waiting: BTreeMap<u64, Vec<(RoomId, String)>> = BTreeMap::new();
    for h in handles {
        match h.await.expect("joined") {
            (room, holder, Entry::Placed(_)) => placed.push((room, holder)),
            (room, holder, Entry::Queued(q)) => {
                let place = q.ticket.expect("a pupil's room gets a place");
                assert!(q.position >= 1);
                waiting.entry(place).or_default().push((room, holder));
            }
        }
    }
    assert_within_capacity(&aula).await;
    assert_eq!(placed.len(), 12, "twelve seats, twelve pupils seated");
    assert_eq!(
        seated(&aula, &rooms).await,
        placed.len(),
        "every pupil who got a seat holds it on the node"
    );
    assert_eq!(
        waiting.len(),
        6,
        "the other six classes wait, one place each"
    );
    for (place, class) in &waiting {
        let room = class[0].0;
        assert!(
            class.iter().all(|(r, _)| *r == room),
            "place {place} belongs to one room"
        );
    }

    // Meetings end one after the other, each freeing one class's seats. The waiting pupils
    // ask again in the worst order (the last queued first): the front class enters, whole.
    let mut ended: Vec<RoomId> = Vec::new();
    let mut expected_order: Vec<u64> = waiting.keys().copied().collect();
    expected_order.reverse();
    while let Some(front) = expected_order.pop() {
        let done = placed
            .iter()
            .map(|(r, _)| *r)
            .find(|r| !ended.contains(r))
            .expect("a meeting to end");
        ended.push(done);
        let p = aula
            .store
            .placement(done, FixedClock.now())
            .await
            .expect("read")
            .expect("placed");
        aula.store.release(done, p.node_id).await.expect("released");

        let mut entered = Vec::new();
        let everyone: Vec<(u64, RoomId, String)> = waiting
            .iter()
            .rev()
            .flat_map(|(place, class)| class.iter().map(|(r, h)| (*place, *r, h.clone())))
            .collect();
        for (place, room, holder) in everyone {
            match aula
                .admit(room, &holder, false, None, POLICY, None)
                .await
                .expect("a seat or a place")
            {
                Entry::Placed(_) => {
                    entered.push(place);
                    placed.push((room, holder));
                }
                Entry::Queued(q) => {
                    assert_eq!(q.ticket, Some(place), "a room keeps its place");
                }
            }
        }
        assert_within_capacity(&aula).await;
        assert_eq!(
            entered,
            vec![front, front],
            "the class at the front entered, both pupils, and nobody else"
        );
        waiting.remove(&front);
    }
    let per_room: HashMap<RoomId, usize> = placed.iter().fold(HashMap::new(), |mut m, (r, _)| {
        *m.entry(*r).or_default() += 1;
        m
    });
    assert_eq!(per_room.len(), 12);
    assert!(
        per_room.values().all(|n| *n == 2),
        "every pupil got in: {per_room:?}"
    );
}
