//! The media node registry and which room is placed on which node.

use super::codec::{col, db, expiry, read_err, ts};
use super::{Cached, SqliteStore};
use async_trait::async_trait;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS media_node (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    load INTEGER NOT NULL,
    reserved INTEGER NOT NULL DEFAULT 0,
    last_heartbeat INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS placement (
    room_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    placed_at INTEGER NOT NULL,
    seats INTEGER NOT NULL,
    holders TEXT NOT NULL,
    reserved_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS placement_by_node ON placement (node_id, placed_at);
"#;

/// Databases made before seats were reserved: the registry and the placements live
/// seconds and hours, so they are dropped rather than converted (nodes re-register at
/// their next heartbeat, rooms are placed again at their next join).
pub(super) fn migrate(c: &Connection) -> rusqlite::Result<()> {
    let has = |table: &str, column: &str| -> rusqlite::Result<bool> {
        let n: i64 = c.query_row(
            &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
            params![column],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    };
    let exists = |table: &str| -> rusqlite::Result<bool> {
        let n: i64 = c.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            params![table],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    };
    if exists("media_node")? && !has("media_node", "reserved")? {
        c.execute_batch("DROP TABLE media_node")?;
    }
    if exists("placement")? && !has("placement", "seats")? {
        c.execute_batch("DROP INDEX IF EXISTS placement_by_node; DROP TABLE placement")?;
    }
    Ok(())
}

/// Holders are participant ids (no spaces), kept space-separated in one column.
fn holders_to_column(holders: &[String]) -> String {
    holders.join(" ")
}

fn holders_from_column(column: &str) -> Vec<String> {
    column.split_whitespace().map(str::to_owned).collect()
}

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<MediaNode> {
    Ok(MediaNode {
        id: col(row, "id", |s: String| NodeId::parse(&s))?,
        address: row.get("address")?,
        capacity: row.get("capacity")?,
        load: row.get("load")?,
        reserved: row.get("reserved")?,
        last_heartbeat: ts(row, "last_heartbeat")?,
        expires_at: expiry(row)?,
    })
}

fn placement_from_row(row: &Row<'_>) -> rusqlite::Result<Placement> {
    Ok(Placement {
        room_id: col(row, "room_id", |s: String| RoomId::parse(&s))?,
        node_id: col(row, "node_id", |s: String| NodeId::parse(&s))?,
        placed_at: ts(row, "placed_at")?,
        seats: row.get("seats")?,
        holders: holders_from_column(&row.get::<_, String>("holders")?),
        reserved_at: ts(row, "reserved_at")?,
        expires_at: expiry(row)?,
    })
}

#[async_trait]
impl NodeRegistryStore for SqliteStore {
    async fn put_node(&self, n: &MediaNode) -> StoreResult<()> {
        let n = n.clone();
        self.run("registering a media node", move |c| {
            c.cached_exec(
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
        self.read_point("listing media nodes", move |c| {
            let mut st = c
                .prepare_cached("SELECT * FROM media_node WHERE expires_at * 1000 > ?1 ORDER BY id")
                .map_err(db("listing media nodes"))?;
            st.query_map(params![now.millis()], node_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("media node", "listing media nodes"))
        })
        .await
    }

    async fn remove_node(&self, id: NodeId) -> StoreResult<()> {
        self.run("removing a media node", move |c| {
            c.cached_exec(
                "DELETE FROM media_node WHERE id = ?1",
                params![id.to_string()],
            )
            .map(|_| ())
            .map_err(db("removing a media node"))
        })
        .await
    }
}

/// The node's reserved seats if it is registered and alive.
fn node_reserved(
    tx: &Transaction<'_>,
    node: NodeId,
    now: Timestamp,
) -> rusqlite::Result<Option<u32>> {
    tx.cached_row(
        "SELECT reserved FROM media_node WHERE id = ?1 AND expires_at * 1000 > ?2",
        params![node.to_string(), now.millis()],
        |r| r.get(0),
    )
    .optional()
}

fn add_reserved(tx: &Transaction<'_>, node: NodeId, seats: i64) -> rusqlite::Result<()> {
    tx.cached_exec(
        "UPDATE media_node SET reserved = MAX(0, reserved + ?2) WHERE id = ?1",
        params![node.to_string(), seats],
    )
    .map(|_| ())
}

fn write_placement(tx: &Transaction<'_>, p: &Placement) -> rusqlite::Result<()> {
    tx.cached_exec(
        "INSERT INTO placement (room_id, node_id, placed_at, seats, holders, reserved_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (room_id) DO UPDATE SET node_id = excluded.node_id,
           placed_at = excluded.placed_at, seats = excluded.seats, holders = excluded.holders,
           reserved_at = excluded.reserved_at, expires_at = excluded.expires_at",
        params![
            p.room_id.to_string(),
            p.node_id.to_string(),
            p.placed_at.millis(),
            p.seats,
            holders_to_column(&p.holders),
            p.reserved_at.millis(),
            p.expires_at.epoch_secs(),
        ],
    )
    .map(|_| ())
}

fn read_placement(tx: &Transaction<'_>, room: RoomId) -> rusqlite::Result<Option<Placement>> {
    tx.cached_row(
        "SELECT * FROM placement WHERE room_id = ?1",
        params![room.to_string()],
        placement_from_row,
    )
    .optional()
}

// Each operation runs in one transaction on the store's one connection, so the check of
// the node's reserved seats and the writes cannot interleave with another request's.
#[async_trait]
impl PlacementStore for SqliteStore {
    async fn placement(&self, room: RoomId, now: Timestamp) -> StoreResult<Option<Placement>> {
        self.read_point("reading a placement", move |c| {
            c.cached_row(
                "SELECT * FROM placement WHERE room_id = ?1 AND expires_at * 1000 > ?2",
                params![room.to_string(), now.millis()],
                placement_from_row,
            )
            .optional()
            .map_err(read_err("placement", "reading a placement"))
        })
        .await
    }

    async fn reserve(
        &self,
        p: &Placement,
        capacity: u32,
        replacing: Option<NodeId>,
        now: Timestamp,
    ) -> StoreResult<Reserved> {
        let p = p.clone();
        self.run("placing a room", move |c| {
            let doing = "placing a room";
            let tx = c.transaction().map_err(db(doing))?;
            let current = read_placement(&tx, p.room_id).map_err(read_err("placement", doing))?;
            if let Some(cur) = &current
                && cur.expires_at.is_live_at(now)
                && Some(cur.node_id) != replacing
            {
                return Ok(Reserved::Taken(cur.clone()));
            }
            let Some(reserved) = node_reserved(&tx, p.node_id, now).map_err(db(doing))? else {
                return Ok(Reserved::NodeFull);
            };
            if u64::from(reserved) + u64::from(p.seats) > u64::from(capacity) {
                return Ok(Reserved::NodeFull);
            }
            if let Some(cur) = current.filter(|c| c.seats > 0) {
                add_reserved(&tx, cur.node_id, -i64::from(cur.seats)).map_err(db(doing))?;
            }
            add_reserved(&tx, p.node_id, i64::from(p.seats)).map_err(db(doing))?;
            write_placement(&tx, &p).map_err(db(doing))?;
            tx.commit().map_err(db(doing))?;
            Ok(Reserved::Placed)
        })
        .await
    }

    async fn take_seat(
        &self,
        room: RoomId,
        node: NodeId,
        holder: &str,
        grow: u32,
        capacity: u32,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let holder = holder.to_owned();
        self.run("taking a seat", move |c| {
            let doing = "taking a seat";
            let tx = c.transaction().map_err(db(doing))?;
            let Some(mut p) = read_placement(&tx, room)
                .map_err(read_err("placement", doing))?
                .filter(|p| p.node_id == node && p.expires_at.is_live_at(now))
            else {
                return Ok(false);
            };
            if !p.holders.contains(&holder) {
                if p.holders.len() >= p.seats as usize {
                    let Some(reserved) = node_reserved(&tx, node, now).map_err(db(doing))? else {
                        return Ok(false);
                    };
                    if grow == 0 || u64::from(reserved) + u64::from(grow) > u64::from(capacity) {
                        return Ok(false);
                    }
                    add_reserved(&tx, node, i64::from(grow)).map_err(db(doing))?;
                    p.seats += grow;
                }
                p.holders.push(holder);
            }
            p.reserved_at = now;
            p.expires_at = retention::placement_expiry(now);
            write_placement(&tx, &p).map_err(db(doing))?;
            tx.commit().map_err(db(doing))?;
            Ok(true)
        })
        .await
    }

    async fn release(&self, room: RoomId, node: NodeId) -> StoreResult<()> {
        self.run("releasing seats", move |c| {
            let doing = "releasing seats";
            let tx = c.transaction().map_err(db(doing))?;
            let Some(mut p) = read_placement(&tx, room)
                .map_err(read_err("placement", doing))?
                .filter(|p| p.node_id == node && p.seats > 0)
            else {
                return Ok(());
            };
            add_reserved(&tx, node, -i64::from(p.seats)).map_err(db(doing))?;
            p.seats = 0;
            p.holders.clear();
            write_placement(&tx, &p).map_err(db(doing))?;
            tx.commit().map_err(db(doing))
        })
        .await
    }

    async fn reservations_on(&self, node: NodeId, now: Timestamp) -> StoreResult<Vec<Placement>> {
        self.read("listing reservations", move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT * FROM placement WHERE node_id = ?1 AND seats > 0 AND expires_at * 1000 > ?2",
                )
                .map_err(db("listing reservations"))?;
            st.query_map(params![node.to_string(), now.millis()], |row| {
                placement_from_row(row).map(|p| Placement {
                    holders: Vec::new(),
                    ..p
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(read_err("placement", "listing reservations"))
        })
        .await
    }
}
