//! The admission queue: its counters in one item (`QUEUE#media`), changed only by atomic
//! `ADD` and conditional `SET`, so concurrent portals never hand out a number twice or move
//! the admitted mark down; a waiting room's place in the room's partition (sk `QUEUE`),
//! written when it is taken, renewed at most every 20 s, and deleted when the room gets
//! its seats. A queue nobody used for a day has expired: it reads as empty, and the next
//! place starts it again from 1.

use super::AwsStore;
use super::codec::{Fields, Item, is_live, n, s};
use super::rooms::room_pk;
use crate::backend;
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

const PK: &str = "QUEUE#media";
const SK: &str = "QUEUE";

fn queue_from(i: &Item) -> StoreResult<AdmissionQueue> {
    let f = Fields::of(i, RecordKind::AdmissionQueue);
    Ok(AdmissionQueue {
        issued: f.num("issued")?,
        admitted_through: f.num("admitted_through")?,
        entered: match i.get("entered") {
            None => Vec::new(),
            // Appended in the order places went in: kept ascending here.
            Some(AttributeValue::L(l)) => {
                let mut v = l
                    .iter()
                    .map(|x| {
                        x.as_n()
                            .ok()
                            .and_then(|x| x.parse().ok())
                            .ok_or_else(|| f.corrupt(format!("entered holds {x:?}")))
                    })
                    .collect::<StoreResult<Vec<u64>>>()?;
                v.sort_unstable();
                v.dedup();
                v
            }
            Some(_) => return Err(f.corrupt("entered is not a list".into())),
        },
        moved_at: f.ts("moved_at")?,
        capacity_seen_at: f.opt_num("capacity_seen_at")?.map(Timestamp::from_millis),
        expires_at: f.expiry()?,
    })
}

/// The early places as stored: a list of numbers (a list may be empty, so the attribute is
/// always there).
fn early_places(entered: &[u64]) -> AttributeValue {
    AttributeValue::L(entered.iter().map(n).collect())
}

fn ticket_from(i: &Item) -> StoreResult<RoomTicket> {
    let f = Fields::of(i, RecordKind::RoomTicket);
    Ok(RoomTicket {
        room_id: f.parse("room_id", RoomId::parse)?,
        number: f.num("number")?,
        first_ahead: f.num("first_ahead")?,
        issued_at: f.ts("issued_at")?,
        expires_at: f.expiry()?,
    })
}

/// A place is renewed when less than this is left of its lifetime: one write per room per
/// 20 s however many of its pupils ask.
const RENEW_WHEN_LEFT: Span = Span::seconds(40);

fn failed_condition<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

#[async_trait]
impl AdmissionQueueStore for AwsStore {
    async fn admission_queue(&self, now: Timestamp) -> StoreResult<AdmissionQueue> {
        match self
            .get(PK.to_owned(), SK, "reading the admission queue")
            .await?
        {
            Some(i) if is_live(&i, now) => queue_from(&i),
            _ => Ok(AdmissionQueue::empty(now)),
        }
    }

    async fn room_ticket(&self, room: RoomId, now: Timestamp) -> StoreResult<Option<RoomTicket>> {
        let Some(i) = self
            .get(room_pk(room), SK, "reading a room's place in the queue")
            .await?
            .filter(|i| is_live(i, now))
        else {
            return Ok(None);
        };
        let mut t = ticket_from(&i)?;
        if !t.expires_at.is_live_at(now.plus(RENEW_WHEN_LEFT)) {
            t.expires_at = retention::room_ticket_expiry(now);
            let renewed = self
                .ddb
                .update_item()
                .table_name(&self.cfg.table)
                .key("pk", s(room_pk(room)))
                .key("sk", s(SK))
                .update_expression("SET expires_at = :exp")
                .condition_expression("#number = :n")
                .expression_attribute_names("#number", "number")
                .expression_attribute_values(":n", n(t.number))
                .expression_attribute_values(":exp", n(t.expires_at.epoch_secs()))
                .send()
                .await;
            match renewed {
                Ok(_) => {}
                // Let in (or replaced) meanwhile: the caller sees that next time.
                Err(e) if failed_condition(&e) => {}
                Err(e) => return Err(backend("renewing a room's place in the queue")(e)),
            }
        }
        Ok(Some(t))
    }

    async fn take_room_ticket(
        &self,
        room: RoomId,
        let_in: u64,
        now: Timestamp,
    ) -> StoreResult<RoomTicket> {
        for _ in 0..3 {
            if let Some(t) = self.room_ticket(room, now).await? {
                return Ok(t);
            }
            let number = self.next_number(now).await?;
            let t = RoomTicket::taken(room, number, let_in, now);
            let put = self
                .ddb
                .put_item()
                .table_name(&self.cfg.table)
                .item("pk", s(room_pk(room)))
                .item("sk", s(SK))
                .item("kind", s(RecordKind::RoomTicket.name()))
                .item("room_id", s(room.to_string()))
                .item("number", n(t.number))
                .item("first_ahead", n(t.first_ahead))
                .item("issued_at", n(now.millis()))
                .item("expires_at", n(t.expires_at.epoch_secs()))
                .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                .expression_attribute_values(":now", n(now.epoch_secs()))
                .send()
                .await;
            match put {
                Ok(_) => return Ok(t),
                // A classmate queued the room a moment earlier: wait on that place. Nobody
                // waits on the number taken here: it counts as let in, or the mark would
                // stop before it.
                Err(e) if failed_condition(&e) => self.ticket_admitted(number, false, now).await?,
                Err(e) => return Err(backend("queueing a room")(e)),
            }
        }
        Err(StoreError::Conflict {
            what: "the room's place in the queue",
        })
    }

    async fn room_admitted(
        &self,
        ticket: &RoomTicket,
        passing: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        let dropped = self
            .ddb
            .delete_item()
            .table_name(&self.cfg.table)
            .key("pk", s(room_pk(ticket.room_id)))
            .key("sk", s(SK))
            .condition_expression("#number = :n")
            .expression_attribute_names("#number", "number")
            .expression_attribute_values(":n", n(ticket.number))
            .send()
            .await;
        match dropped {
            Ok(_) => {}
            Err(e) if failed_condition(&e) => {}
            Err(e) => return Err(backend("letting a room in from the queue")(e)),
        }
        self.ticket_admitted(ticket.number, passing, now).await
    }

    async fn capacity_seen(&self, now: Timestamp) -> StoreResult<()> {
        let seen = self
            .queue_update()
            .update_expression("SET capacity_seen_at = :now_ms")
            .condition_expression("expires_at > :now AND capacity_seen_at < moved_at")
            .expression_attribute_values(":now_ms", n(now.millis()))
            .expression_attribute_values(":now", n(now.epoch_secs()))
            .send()
            .await;
        match seen {
            Ok(_) => Ok(()),
            Err(e) if failed_condition(&e) => Ok(()),
            Err(e) => Err(backend("noting a free seat")(e)),
        }
    }
}

impl AwsStore {
    /// An update of the queue's counters.
    fn queue_update(
        &self,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.ddb
            .update_item()
            .table_name(&self.cfg.table)
            .key("pk", s(PK))
            .key("sk", s(SK))
    }

    /// The next place number: one more than any handed out before.
    async fn next_number(&self, now: Timestamp) -> StoreResult<u64> {
        let exp = retention::admission_queue_expiry(now).epoch_secs();
        for _ in 0..3 {
            // A live queue counts on; an expired one must start again, not carry on.
            let added = self
                .queue_update()
                .update_expression(
                    "ADD issued :one SET #kind = :kind, #queue = :queue, expires_at = :exp, \
                     admitted_through = if_not_exists(admitted_through, :zero), \
                     entered = if_not_exists(entered, :none), \
                     moved_at = if_not_exists(moved_at, :now_ms), \
                     capacity_seen_at = if_not_exists(capacity_seen_at, :zero)",
                )
                .condition_expression("attribute_not_exists(pk) OR expires_at > :now")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_names("#queue", "queue")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":none", early_places(&[]))
                .expression_attribute_values(":kind", s(RecordKind::AdmissionQueue.name()))
                .expression_attribute_values(":queue", s("media"))
                .expression_attribute_values(":exp", n(exp))
                .expression_attribute_values(":now", n(now.epoch_secs()))
                .expression_attribute_values(":now_ms", n(now.millis()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                .send()
                .await;
            match added {
                Ok(out) => {
                    let attrs = out.attributes.unwrap_or_default();
                    return Fields::of(&attrs, RecordKind::AdmissionQueue).num("issued");
                }
                Err(e) if failed_condition(&e) => {}
                Err(e) => return Err(backend("issuing a queue ticket")(e)),
            }
            let fresh = self
                .ddb
                .put_item()
                .table_name(&self.cfg.table)
                .item("pk", s(PK))
                .item("sk", s(SK))
                .item("kind", s(RecordKind::AdmissionQueue.name()))
                .item("queue", s("media"))
                .item("issued", n(1))
                .item("admitted_through", n(0))
                .item("entered", early_places(&[]))
                .item("moved_at", n(now.millis()))
                .item("capacity_seen_at", n(0))
                .item("expires_at", n(exp))
                .condition_expression("expires_at <= :now")
                .expression_attribute_values(":now", n(now.epoch_secs()))
                .send()
                .await;
            match fresh {
                Ok(_) => return Ok(1),
                // Another portal started it again first: count on from there.
                Err(e) if failed_condition(&e) => {}
                Err(e) => return Err(backend("issuing a queue ticket")(e)),
            }
        }
        Err(StoreError::Conflict {
            what: "the admission queue",
        })
    }

    /// Moves the mark (or notes an early place) as [`AdmissionQueue::letting_in`] says:
    /// read, then write on the condition that nobody changed the mark or the early places
    /// meanwhile (within one mark they only grow, so their count tells), else again.
    async fn ticket_admitted(&self, number: u64, passing: bool, now: Timestamp) -> StoreResult<()> {
        let doing = "admitting a queue ticket";
        // A place let in early is appended in one write, without reading: at 8:00 many go
        // in at once, and a read-then-write for each would mostly retry.
        if !passing && number > 1 {
            let noted = self
                .queue_update()
                .update_expression(
                    "SET entered = list_append(if_not_exists(entered, :none), :one), \
                     moved_at = :now_ms, expires_at = :exp",
                )
                .condition_expression(
                    "admitted_through < :below AND expires_at > :now \
                     AND NOT contains(entered, :n)",
                )
                .expression_attribute_values(":none", early_places(&[]))
                .expression_attribute_values(":one", early_places(&[number]))
                .expression_attribute_values(":n", n(number))
                .expression_attribute_values(":below", n(number - 1))
                .expression_attribute_values(":now_ms", n(now.millis()))
                .expression_attribute_values(":now", n(now.epoch_secs()))
                .expression_attribute_values(
                    ":exp",
                    n(retention::admission_queue_expiry(now).epoch_secs()),
                )
                .send()
                .await;
            match noted {
                Ok(_) => return Ok(()),
                // It is at the front (or in already): the mark moves, below.
                Err(e) if failed_condition(&e) => {}
                Err(e) => return Err(backend(doing)(e)),
            }
        }
        for attempt in 0..20u64 {
            if attempt > 0 {
                // Others moved the queue meanwhile: step aside a little, differently each.
                let r = rand::random::<u64>() % (attempt * 5 + 5);
                tokio::time::sleep(std::time::Duration::from_millis(r)).await;
            }
            let Some(q) = self
                .get(PK.to_owned(), SK, doing)
                .await?
                .filter(|i| is_live(i, now))
                .map(|i| queue_from(&i))
                .transpose()?
            else {
                return Ok(());
            };
            let Some((mark, entered)) = q.letting_in(number, passing) else {
                return Ok(());
            };
            let mut update = self
                .queue_update()
                .expression_attribute_values(":old", n(q.admitted_through))
                .expression_attribute_values(":mark", n(mark))
                .expression_attribute_values(":now_ms", n(now.millis()))
                .expression_attribute_values(":now", n(now.epoch_secs()))
                .expression_attribute_values(
                    ":exp",
                    n(retention::admission_queue_expiry(now).epoch_secs()),
                );
            // `capacity_seen_at` stays: older than `moved_at` now, it no longer counts.
            update = update
                .update_expression(
                    "SET admitted_through = :mark, entered = :entered, moved_at = :now_ms, \
                     expires_at = :exp",
                )
                .expression_attribute_values(":entered", early_places(&entered))
                .condition_expression(
                    "admitted_through = :old AND expires_at > :now \
                     AND (attribute_not_exists(entered) OR size(entered) = :early)",
                )
                .expression_attribute_values(":early", n(q.entered.len()));
            match update.send().await {
                Ok(_) => return Ok(()),
                // Another room went in meanwhile: read again.
                Err(e) if failed_condition(&e) => {}
                Err(e) => return Err(backend(doing)(e)),
            }
        }
        Err(StoreError::Conflict {
            what: "the admission queue's mark",
        })
    }
}
