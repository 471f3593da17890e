//! The media node registry (`NODE#<id>`, listed on gsi1 `NODES`) and which room is placed
//! on which node (`PLACEMENT` in the room's partition, listed per node on gsi1).
//!
//! Seats: the node item's `reserved` counts the seats reserved for its rooms; the
//! heartbeat never writes it. Reserving and growing write the placement and add to
//! `reserved` in one transaction whose condition keeps `reserved` within the capacity
//! (condition expressions have no arithmetic: the caller's limit is `capacity - seats`).

use super::AwsStore;
use super::codec::{Fields, Item, is_live, item, live, n, padded, s};
use super::rooms::room_pk;
use super::table::{Transacted, condition_failed};
use crate::backend;
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

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
        reserved: f.opt_num("reserved")?.unwrap_or(0),
        last_heartbeat: f.ts("last_heartbeat")?,
        expires_at: f.expiry()?,
    })
}

fn placement_item(p: &Placement) -> Item {
    let mut i = item(
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
            ("seats", n(p.seats)),
            ("reserved_at", n(p.reserved_at.millis())),
            ("expires_at", n(p.expires_at.epoch_secs())),
        ],
    );
    // A string set cannot be empty: no holders, no attribute.
    if !p.holders.is_empty() {
        i.insert("holders".into(), AttributeValue::Ss(p.holders.clone()));
    }
    i
}

fn placement_from(i: &Item) -> StoreResult<Placement> {
    let f = Fields::of(i, RecordKind::Placement);
    Ok(Placement {
        room_id: f.parse("room_id", RoomId::parse)?,
        node_id: f.parse("node_id", NodeId::parse)?,
        placed_at: f.ts("placed_at")?,
        seats: f.num("seats")?,
        holders: match i.get("holders") {
            None => Vec::new(),
            Some(AttributeValue::Ss(v)) => v.clone(),
            Some(_) => return Err(f.corrupt("holders is not a string set".into())),
        },
        reserved_at: f.ts("reserved_at")?,
        expires_at: f.expiry()?,
    })
}

#[async_trait]
impl NodeRegistryStore for AwsStore {
    async fn put_node(&self, nd: &MediaNode) -> StoreResult<()> {
        // Every attribute but `reserved`, which belongs to placement.
        let mut names = std::collections::HashMap::new();
        let mut values = std::collections::HashMap::new();
        let mut sets = Vec::new();
        for (i, (k, v)) in node_item(nd)
            .into_iter()
            .filter(|(k, _)| k != "pk" && k != "sk")
            .enumerate()
        {
            names.insert(format!("#a{i}"), k);
            values.insert(format!(":v{i}"), v);
            sets.push(format!("#a{i} = :v{i}"));
        }
        values.insert(":zero".into(), n(0));
        self.ddb
            .update_item()
            .table_name(&self.cfg.table)
            .key("pk", s(format!("NODE#{}", nd.id)))
            .key("sk", s("NODE"))
            .update_expression(format!(
                "SET {}, reserved = if_not_exists(reserved, :zero)",
                sets.join(", ")
            ))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(backend("registering a media node"))?;
        Ok(())
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

/// How often a seat operation re-reads and tries again when a concurrent one changed the
/// same reservation between its read and its write.
const SEAT_ATTEMPTS: usize = 8;

impl AwsStore {
    /// Adds `seats` (negative: frees them) to the node's reserved seats; when `limit` is
    /// given, only if the node is alive at `now` and holds at most `limit` before.
    fn add_reserved(
        &self,
        node: NodeId,
        seats: i64,
        limit: Option<(u32, Timestamp)>,
    ) -> StoreResult<TransactWriteItem> {
        let mut u = Update::builder()
            .table_name(&self.cfg.table)
            .key("pk", s(format!("NODE#{node}")))
            .key("sk", s("NODE"))
            .update_expression("ADD reserved :seats")
            .expression_attribute_values(":seats", n(seats));
        u = match limit {
            Some((limit, now)) => u
                .condition_expression(
                    "attribute_exists(pk) AND reserved <= :limit AND expires_at > :now",
                )
                .expression_attribute_values(":limit", n(limit))
                .expression_attribute_values(":now", n(now.epoch_secs())),
            None => u.condition_expression("attribute_exists(pk)"),
        };
        let u = u.build().map_err(backend("building a transaction"))?;
        Ok(TransactWriteItem::builder().update(u).build())
    }

    async fn placement_any(
        &self,
        room: RoomId,
        doing: &'static str,
    ) -> StoreResult<Option<Placement>> {
        match self.get(room_pk(room), "PLACEMENT", doing).await? {
            Some(i) => placement_from(&i).map(Some),
            None => Ok(None),
        }
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

    async fn reserve(
        &self,
        p: &Placement,
        capacity: u32,
        replacing: Option<NodeId>,
        now: Timestamp,
    ) -> StoreResult<Reserved> {
        let doing = "placing a room";
        let Some(limit) = capacity.checked_sub(p.seats) else {
            return Ok(Reserved::NodeFull);
        };
        let current = self.placement_any(p.room_id, doing).await?;
        if let Some(cur) = &current
            && cur.expires_at.is_live_at(now)
            && Some(cur.node_id) != replacing
        {
            return Ok(Reserved::Taken(cur.clone()));
        }
        let mut writes = vec![
            self.put_item_if(
                placement_item(p),
                "attribute_not_exists(pk) OR expires_at <= :now OR node_id = :replacing",
                [
                    (":now", n(now.epoch_secs())),
                    (
                        ":replacing",
                        s(replacing.map(|r| r.to_string()).unwrap_or_default()),
                    ),
                ],
            )?,
            self.add_reserved(p.node_id, i64::from(p.seats), Some((limit, now)))?,
        ];
        // Seats a replaced (dead) node still counted for the room go back; a node whose
        // record is gone is left alone.
        let give_back = current
            .filter(|c| c.seats > 0 && c.node_id != p.node_id)
            .map(|c| (c.node_id, c.seats));
        if let Some((old, seats)) = give_back {
            writes.push(self.add_reserved(old, -i64::from(seats), None)?);
        }
        // The transaction's items: 0 the placement, 1 the node's seats, 2 the old node's.
        loop {
            let reasons = match self.transact_why(writes.clone(), doing).await? {
                Transacted::Committed => return Ok(Reserved::Placed),
                Transacted::Cancelled(reasons) => reasons,
            };
            if condition_failed(&reasons, 0) {
                // A concurrent request placed the room first: its placement came back with
                // the refusal (read it only if it did not).
                let found = match reasons[0].item() {
                    Some(i) => Some(placement_from(i)?),
                    None => self.placement_any(p.room_id, doing).await?,
                };
                if let Some(winner) =
                    found.filter(|w| w.expires_at.is_live_at(now) && Some(w.node_id) != replacing)
                {
                    return Ok(Reserved::Taken(winner));
                }
                break;
            }
            if condition_failed(&reasons, 1) {
                return Ok(Reserved::NodeFull);
            }
            if condition_failed(&reasons, 2) {
                // The old node's record is gone (it died): nothing to give back there.
                writes.pop();
                continue;
            }
            // Cancelled for another reason (a concurrent transaction on the same items).
            break;
        }
        match self.placement(p.room_id, now).await? {
            Some(cur) if Some(cur.node_id) != replacing => Ok(Reserved::Taken(cur)),
            _ => Ok(Reserved::NodeFull),
        }
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
        let doing = "taking a seat";
        // The reservation as a refused write last found it (read again when none came back).
        let mut found: Option<Placement> = None;
        for _ in 0..SEAT_ATTEMPTS {
            let current = match found.take() {
                Some(p) => Some(p),
                None => self.placement_any(room, doing).await?,
            };
            let Some(mut p) = current.filter(|p| p.node_id == node && p.expires_at.is_live_at(now))
            else {
                return Ok(false);
            };
            let seen = p.seats;
            let held = p.holders.len();
            let mut writes = Vec::new();
            if !p.holders.iter().any(|h| h == holder) {
                if held >= p.seats as usize {
                    let Some(limit) = capacity.checked_sub(grow).filter(|_| grow > 0) else {
                        return Ok(false);
                    };
                    writes.push(self.add_reserved(node, i64::from(grow), Some((limit, now)))?);
                    p.seats += grow;
                }
                p.holders.push(holder.to_owned());
            }
            p.reserved_at = now;
            p.expires_at = retention::placement_expiry(now);
            // Written only if nobody took a seat or grew the room since the read.
            let unchanged = if held == 0 {
                "node_id = :node AND seats = :seen AND attribute_not_exists(holders)"
            } else {
                "node_id = :node AND seats = :seen AND size(holders) = :held"
            };
            writes.push(self.put_item_if(
                placement_item(&p),
                unchanged,
                [
                    (":node", s(node.to_string())),
                    (":seen", n(seen)),
                    (":held", n(held)),
                ],
            )?);
            let (grows, put) = (writes.len() == 2, writes.len() - 1);
            let reasons = match self.transact_why(writes, doing).await? {
                Transacted::Committed => return Ok(true),
                Transacted::Cancelled(reasons) => reasons,
            };
            if condition_failed(&reasons, put) {
                // The reservation changed under us: try again on what the write found.
                found = reasons[put].item().map(placement_from).transpose()?;
            } else if grows && condition_failed(&reasons, 0) {
                // The node has no seats left to grow by.
                return Ok(false);
            }
        }
        Ok(false)
    }

    async fn release(&self, room: RoomId, node: NodeId) -> StoreResult<()> {
        // The node calls this: it reads and writes only the placement's node and seats (its
        // IAM role allows no other attribute of a room's items; see infra/media-nodes.yaml).
        let doing = "releasing seats";
        for _ in 0..SEAT_ATTEMPTS {
            let out = self
                .ddb
                .get_item()
                .table_name(&self.cfg.table)
                .key("pk", s(room_pk(room)))
                .key("sk", s("PLACEMENT"))
                .projection_expression("node_id, seats")
                .consistent_read(true)
                .send()
                .await
                .map_err(backend(doing))?;
            let Some(i) = out.item else { return Ok(()) };
            let f = Fields::of(&i, RecordKind::Placement);
            let seen: u32 = f.num("seats")?;
            if f.str("node_id")? != node.to_string() || seen == 0 {
                return Ok(());
            }
            let clear = Update::builder()
                .table_name(&self.cfg.table)
                .key("pk", s(room_pk(room)))
                .key("sk", s("PLACEMENT"))
                .update_expression("SET seats = :zero REMOVE holders")
                .condition_expression("node_id = :node AND seats = :seen")
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":node", s(node.to_string()))
                .expression_attribute_values(":seen", n(seen))
                .build()
                .map_err(backend("building a transaction"))?;
            let clear = TransactWriteItem::builder().update(clear).build();
            if self
                .transact(
                    vec![
                        clear.clone(),
                        self.add_reserved(node, -i64::from(seen), None)?,
                    ],
                    doing,
                )
                .await?
            {
                return Ok(());
            }
            // The node's record may be gone (it died): then only the placement changes.
            if self.transact(vec![clear], doing).await? {
                return Ok(());
            }
        }
        Err(StoreError::Backend {
            doing,
            source: "the reservation kept changing while it was released".into(),
        })
    }

    async fn reservations_on(&self, node: NodeId, now: Timestamp) -> StoreResult<Vec<Placement>> {
        // Without the holders: the node that lists its reservations needs no participant ids.
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.cfg.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :pk")
                .expression_attribute_values(":pk", s(format!("PLACED#{node}")))
                .projection_expression(
                    "kind, room_id, node_id, placed_at, seats, reserved_at, expires_at",
                )
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend("listing reservations"))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(live(items, now, placement_from)?
            .into_iter()
            .filter(|p| p.seats > 0)
            .collect())
    }
}
