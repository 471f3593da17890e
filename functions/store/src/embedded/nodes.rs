//! The media node registry and which room is placed on which node.

use super::SqliteStore;
use super::codec::{col, db, expiry, read_err, ts};
use async_trait::async_trait;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{OptionalExtension, Row, params};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS media_node (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    load INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS placement (
    room_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    placed_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS placement_by_node ON placement (node_id, placed_at);
"#;

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<MediaNode> {
    Ok(MediaNode {
        id: col(row, "id", |s: String| NodeId::parse(&s))?,
        address: row.get("address")?,
        capacity: row.get("capacity")?,
        load: row.get("load")?,
        last_heartbeat: ts(row, "last_heartbeat")?,
        expires_at: expiry(row)?,
    })
}

fn placement_from_row(row: &Row<'_>) -> rusqlite::Result<Placement> {
    Ok(Placement {
        room_id: col(row, "room_id", |s: String| RoomId::parse(&s))?,
        node_id: col(row, "node_id", |s: String| NodeId::parse(&s))?,
        placed_at: ts(row, "placed_at")?,
        expires_at: expiry(row)?,
    })
}

#[async_trait]
impl NodeRegistryStore for SqliteStore {
    async fn put_node(&self, n: &MediaNode) -> StoreResult<()> {
        let n = n.clone();
        self.run("registering a media node", move |c| {
            c.execute(
                "INSERT INTO media_node (id, address, capacity, load, last_heartbeat, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET address = excluded.address, capacity = excluded.capacity,
                   load = excluded.load, last_heartbeat = excluded.last_heartbeat, expires_at = excluded.expires_at",
                params![
                    n.id.to_string(),
                    n.address,
                    n.capacity,
                    n.load,
                    n.last_heartbeat.millis(),
                    n.expires_at.epoch_secs(),
                ],
            )
            .map(|_| ())
            .map_err(db("registering a media node"))
        })
        .await
    }

    async fn live_nodes(&self, now: Timestamp) -> StoreResult<Vec<MediaNode>> {
        self.run("listing media nodes", move |c| {
            let mut st = c
                .prepare("SELECT * FROM media_node WHERE expires_at * 1000 > ?1 ORDER BY id")
                .map_err(db("listing media nodes"))?;
            st.query_map(params![now.millis()], node_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("media node", "listing media nodes"))
        })
        .await
    }

    async fn remove_node(&self, id: NodeId) -> StoreResult<()> {
        self.run("removing a media node", move |c| {
            c.execute(
                "DELETE FROM media_node WHERE id = ?1",
                params![id.to_string()],
            )
            .map(|_| ())
            .map_err(db("removing a media node"))
        })
        .await
    }
}

#[async_trait]
impl PlacementStore for SqliteStore {
    async fn placement(&self, room: RoomId, now: Timestamp) -> StoreResult<Option<Placement>> {
        self.run("reading a placement", move |c| {
            c.query_row(
                "SELECT * FROM placement WHERE room_id = ?1 AND expires_at * 1000 > ?2",
                params![room.to_string(), now.millis()],
                placement_from_row,
            )
            .optional()
            .map_err(read_err("placement", "reading a placement"))
        })
        .await
    }

    async fn put_placement(
        &self,
        p: &Placement,
        replacing: Option<NodeId>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let p = p.clone();
        self.run("placing a room", move |c| {
            // One statement, so the check and the write cannot interleave with another.
            let n = c
                .execute(
                    "INSERT INTO placement (room_id, node_id, placed_at, expires_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (room_id) DO UPDATE SET node_id = excluded.node_id,
                       placed_at = excluded.placed_at, expires_at = excluded.expires_at
                     WHERE placement.expires_at * 1000 <= ?5 OR placement.node_id = ?6",
                    params![
                        p.room_id.to_string(),
                        p.node_id.to_string(),
                        p.placed_at.millis(),
                        p.expires_at.epoch_secs(),
                        now.millis(),
                        replacing.map(|n| n.to_string()).unwrap_or_default(),
                    ],
                )
                .map_err(db("placing a room"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn placed_on_since(
        &self,
        node: NodeId,
        since: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        self.run("counting placements", move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM placement WHERE node_id = ?1 AND placed_at >= ?2 AND expires_at * 1000 > ?3",
                params![node.to_string(), since.millis(), now.millis()],
                |r| r.get(0),
            )
            .map_err(db("counting placements"))
        })
        .await
    }
}
