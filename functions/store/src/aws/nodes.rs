//! The media node registry (`NODE#<id>`, listed on gsi1 `NODES`) and which room is placed
//! on which node (`PLACEMENT` in the room's partition, counted per node on gsi1).

use super::AwsStore;
use super::codec::{Fields, Item, is_live, item, live, n, padded, s};
use super::rooms::room_pk;
use crate::backend;
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;

fn node_item(nd: &MediaNode) -> Item {
    item(
        RecordKind::MediaNode,
        [
            ("pk", s(format!("NODE#{}", nd.id))),
            ("sk", s("NODE")),
            ("gsi1pk", s("NODES")),
            ("gsi1sk", s(nd.id.to_string())),
            ("id", s(nd.id.to_string())),
            ("address", s(nd.address.as_str())),
            ("capacity", n(nd.capacity)),
            ("load", n(nd.load)),
            ("last_heartbeat", n(nd.last_heartbeat.millis())),
            ("expires_at", n(nd.expires_at.epoch_secs())),
        ],
    )
}

fn node_from(i: &Item) -> StoreResult<MediaNode> {
    let f = Fields::of(i, RecordKind::MediaNode);
    Ok(MediaNode {
        id: f.parse("id", NodeId::parse)?,
        address: f.str("address")?.to_owned(),
        capacity: f.num("capacity")?,
        load: f.num("load")?,
        last_heartbeat: f.ts("last_heartbeat")?,
        expires_at: f.expiry()?,
    })
}

fn placement_item(p: &Placement) -> Item {
    item(
        RecordKind::Placement,
        [
            ("pk", s(room_pk(p.room_id))),
            ("sk", s("PLACEMENT")),
            ("gsi1pk", s(format!("PLACED#{}", p.node_id))),
            (
                "gsi1sk",
                s(format!("{}#{}", padded(p.placed_at), p.room_id)),
            ),
            ("room_id", s(p.room_id.to_string())),
            ("node_id", s(p.node_id.to_string())),
            ("placed_at", n(p.placed_at.millis())),
            ("expires_at", n(p.expires_at.epoch_secs())),
        ],
    )
}

fn placement_from(i: &Item) -> StoreResult<Placement> {
    let f = Fields::of(i, RecordKind::Placement);
    Ok(Placement {
        room_id: f.parse("room_id", RoomId::parse)?,
        node_id: f.parse("node_id", NodeId::parse)?,
        placed_at: f.ts("placed_at")?,
        expires_at: f.expiry()?,
    })
}

#[async_trait]
impl NodeRegistryStore for AwsStore {
    async fn put_node(&self, nd: &MediaNode) -> StoreResult<()> {
        self.put(node_item(nd), "registering a media node").await
    }

    async fn live_nodes(&self, now: Timestamp) -> StoreResult<Vec<MediaNode>> {
        let items = self
            .query_index("gsi1", "NODES".into(), "listing media nodes")
            .await?;
        live(items, now, node_from)
    }

    async fn remove_node(&self, id: NodeId) -> StoreResult<()> {
        self.delete(format!("NODE#{id}"), "NODE", "removing a media node")
            .await
    }
}

#[async_trait]
impl PlacementStore for AwsStore {
    async fn placement(&self, room: RoomId, now: Timestamp) -> StoreResult<Option<Placement>> {
        match self
            .get(room_pk(room), "PLACEMENT", "reading a placement")
            .await?
        {
            Some(i) if is_live(&i, now) => placement_from(&i).map(Some),
            _ => Ok(None),
        }
    }

    async fn put_placement(
        &self,
        p: &Placement,
        replacing: Option<NodeId>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let result = self
            .ddb
            .put_item()
            .table_name(&self.cfg.table)
            .set_item(Some(placement_item(p)))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now OR node_id = :replacing",
            )
            .expression_attribute_values(":now", n(now.epoch_secs()))
            .expression_attribute_values(
                ":replacing",
                s(replacing.map(|r| r.to_string()).unwrap_or_default()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend("placing a room")(e)),
        }
    }

    async fn placed_on_since(
        &self,
        node: NodeId,
        since: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        let mut count = 0u32;
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.cfg.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :pk AND gsi1sk >= :since")
                .expression_attribute_values(":pk", s(format!("PLACED#{node}")))
                .expression_attribute_values(":since", s(padded(since)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend("counting placements"))?;
            let live = out
                .items
                .unwrap_or_default()
                .iter()
                .filter(|i| is_live(i, now))
                .count();
            count = count.saturating_add(u32::try_from(live).unwrap_or(u32::MAX));
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(count);
            }
        }
    }
}
