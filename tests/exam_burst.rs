//! Exam morning in miniature: rooms placed during a burst of concurrent join grants over
//! three real media nodes of small capacity, each pupil who gets a grant joining the node
//! over its WebSocket. Placement reserves each room's seats on a node in one conditional
//! write with the node's count, so the grants never add up to more than a node carries and
//! no node turns away a pupil the API sent to it; whoever gets no seat is told to wait.

mod common;

use aula::portal;
use aula_domain::ids::IdGenerator;
use aula_domain::services::{GrantRole, JoinGrant, PlacementPolicy, ServiceError};
use aula_domain::{Participant, RoomSettings};
use aula_loadgen::LightClient;
use aula_media_node::http::{self, HttpLimits};
use aula_media_node::{MediaNode, NodeConfig, NodeDeps};
use aula_store::{RandomIds, SqliteStore, SystemClock};
use aula_tokens::JoinVerifier;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const NODES: usize = 3;
const CAPACITY: u32 = 6;
const ROOMS: usize = 8;
const PUPILS_PER_ROOM: usize = 3;

/// Starts a media node on the shared store, serving its signalling on 127.0.0.1.
async fn start_node(store: Arc<SqliteStore>, verifier: JoinVerifier) -> MediaNode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let url = format!("ws://{}/media", listener.local_addr().expect("address"));
    let mut config = NodeConfig::local(RandomIds.node_id(), url);
    config.capacity = CAPACITY;
    config.heartbeat_every = Duration::from_millis(200);
    let node = MediaNode::start(
        config,
        NodeDeps {
            store,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            verifier,
        },
    )
    .await
    .expect("node");
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(5),
        max_connections: 256,
        ..HttpLimits::default()
    };
    tokio::spawn(http::serve(
        listener,
        node.router(),
        limits,
        std::future::pending(),
    ));
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_burst_over_three_small_nodes_every_granted_pupil_is_admitted_and_the_rest_wait() {
    let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let parts = common::parts(store.clone(), "embedded", Arc::new(SystemClock));
    let state = Arc::new(portal::state(&parts).expect("state"));
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        let verifier =
            JoinVerifier::from_public_key(state.tokens.public_key()).expect("public key");
        nodes.push(start_node(store.clone(), verifier).await);
    }
    // Wait for the three heartbeats.
    let mut registered = 0;
    for _ in 0..100 {
        registered = state
            .aula
            .store
            .live_nodes(state.aula.clock.now())
            .await
            .expect("registry")
            .len();
        if registered == NODES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(registered, NODES, "the nodes registered");

    // Classes of 3: each room reserves 3 seats and grows by one.
    let policy = PlacementPolicy {
        default_seats: PUPILS_PER_ROOM as u32,
        grow_seats: 1,
        retry_after_secs: 5,
    };
    let rooms: Vec<_> = (0..ROOMS).map(|_| RandomIds.room_id()).collect();
    let mut pupils = tokio::task::JoinSet::new();
    for (i, room) in rooms
        .iter()
        .flat_map(|r| std::iter::repeat_n(*r, PUPILS_PER_ROOM))
        .enumerate()
    {
        let state = state.clone();
        pupils.spawn(async move {
            let participant = Participant::Guest(RandomIds.guest_id());
            let placed = state
                .aula
                .place(room, &participant.to_string(), policy, None)
                .await;
            let node = match placed {
                Ok(node) => node,
                Err(ServiceError::NoCapacity { .. }) => return Ok(None),
                Err(e) => return Err(format!("placement failed: {e}")),
            };
            let grant = JoinGrant {
                room,
                participant,
                role: GrantRole::Guest,
                display_name: format!("Schüler {i}"),
                settings: RoomSettings::default(),
                lobby: false,
            };
            let (token, _) = state
                .tokens
                .join(&grant, state.aula.clock.now())
                .map_err(|e| e.to_string())?;
            // The node must let in everyone the API sent to it.
            let client = LightClient::join(&node.address, room, &token, i as u32)
                .await
                .map_err(|e| {
                    format!("pupil {i} was granted {} and refused: {e:#}", node.address)
                })?;
            Ok(Some((node.address, client)))
        });
    }
    let mut admitted: HashMap<String, Vec<LightClient>> = HashMap::new();
    let mut waiting = 0;
    while let Some(done) = pupils.join_next().await {
        match done.expect("pupil task") {
            Ok(Some((node, client))) => admitted.entry(node).or_default().push(client),
            Ok(None) => waiting += 1,
            Err(e) => panic!("{e}"),
        }
    }

    let total: usize = admitted.values().map(Vec::len).sum();
    assert_eq!(total + waiting, ROOMS * PUPILS_PER_ROOM);
    for (node, clients) in &admitted {
        assert!(
            clients.len() <= CAPACITY as usize,
            "{node} holds {} participants, more than its {CAPACITY}",
            clients.len()
        );
    }
    // Two classes of 3 fit a node of 6: 18 pupils in, 6 told to wait.
    assert_eq!(total, NODES * CAPACITY as usize, "every seat is used");
    assert_eq!(waiting, ROOMS * PUPILS_PER_ROOM - total);
    for n in state
        .aula
        .store
        .live_nodes(state.aula.clock.now())
        .await
        .expect("registry")
    {
        assert!(
            n.reserved <= n.capacity,
            "{} reserved {}",
            n.address,
            n.reserved
        );
    }
    drop(admitted);
    drop(nodes);
}
