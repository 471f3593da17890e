//! Rooms and what lives in a room's partition (`ROOM#<id>`): guests and meetings. Chat
//! messages and the placement share the partition too, so deleting a room is one query.

use super::AwsStore;
use super::codec::{Fields, Item, b, is_live, item, live, n, padded, prefix, s};
use crate::backend;
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;

pub(super) fn room_pk(id: RoomId) -> String {
    format!("ROOM#{id}")
}

fn room_item(r: &Room) -> Item {
    let mut i = item(
        RecordKind::Room,
        [
            ("pk", s(room_pk(r.id))),
            ("sk", s("ROOM")),
            ("gsi1pk", s(format!("OWNER#{}", r.owner))),
            ("gsi1sk", s(format!("{}#{}", padded(r.created_at), r.id))),
            ("gsi2pk", s(format!("INVITE#{}", r.invite_token.as_str()))),
            ("gsi2sk", s("ROOM")),
            ("id", s(r.id.to_string())),
            ("owner", s(r.owner.to_string())),
            ("name", s(r.name.as_str())),
            ("lobby", b(r.settings.lobby)),
            (
                "guests_may_share_screen",
                b(r.settings.guests_may_share_screen),
            ),
            ("guests_may_send_video", b(r.settings.guests_may_send_video)),
            ("mute_on_join", b(r.settings.mute_on_join)),
            ("invite_token", s(r.invite_token.as_str())),
            ("created_at", n(r.created_at.millis())),
            ("last_used_at", n(r.last_used_at.millis())),
            ("expires_at", n(r.expires_at.epoch_secs())),
        ],
    );
    if let Some(e) = r.settings.expected_participants {
        i.insert("expected_participants".into(), n(e));
    }
    i
}

fn room_from(i: &Item) -> StoreResult<Room> {
    let f = Fields::of(i, RecordKind::Room);
    Ok(Room {
        id: f.parse("id", RoomId::parse)?,
        owner: f.parse("owner", ModeratorId::parse)?,
        name: f.parse("name", RoomName::parse)?,
        settings: RoomSettings {
            lobby: f.bool("lobby")?,
            guests_may_share_screen: f.bool("guests_may_share_screen")?,
            guests_may_send_video: f.bool("guests_may_send_video")?,
            mute_on_join: f.bool("mute_on_join")?,
            expected_participants: f.opt_num("expected_participants")?,
        },
        invite_token: f.parse("invite_token", InviteToken::parse)?,
        created_at: f.ts("created_at")?,
        last_used_at: f.ts("last_used_at")?,
        expires_at: f.expiry()?,
    })
}

fn guest_item(g: &Guest) -> Item {
    item(
        RecordKind::Guest,
        [
            ("pk", s(room_pk(g.room_id))),
            ("sk", s(format!("GUEST#{}", g.id))),
            ("id", s(g.id.to_string())),
            ("room_id", s(g.room_id.to_string())),
            ("nickname", s(g.nickname.as_str())),
            ("admission", s(g.admission.as_str())),
            ("created_at", n(g.created_at.millis())),
            ("last_used_at", n(g.last_used_at.millis())),
            ("expires_at", n(g.expires_at.epoch_secs())),
        ],
    )
}

fn guest_from(i: &Item) -> StoreResult<Guest> {
    let f = Fields::of(i, RecordKind::Guest);
    Ok(Guest {
        id: f.parse("id", GuestId::parse)?,
        room_id: f.parse("room_id", RoomId::parse)?,
        nickname: f.parse("nickname", Nickname::parse)?,
        admission: f.parse("admission", Admission::parse)?,
        created_at: f.ts("created_at")?,
        last_used_at: f.ts("last_used_at")?,
        expires_at: f.expiry()?,
    })
}

fn meeting_item(m: &Meeting) -> Item {
    let mut i = item(
        RecordKind::Meeting,
        [
            ("pk", s(room_pk(m.room_id))),
            (
                "sk",
                s(format!("MEETING#{}#{}", padded(m.started_at), m.id)),
            ),
            ("id", s(m.id.to_string())),
            ("room_id", s(m.room_id.to_string())),
            ("started_at", n(m.started_at.millis())),
            ("peak_participants", n(m.peak_participants)),
            ("expires_at", n(m.expires_at.epoch_secs())),
        ],
    );
    if let Some(end) = m.ended_at {
        i.insert("ended_at".into(), n(end.millis()));
    }
    i
}

fn meeting_from(i: &Item) -> StoreResult<Meeting> {
    let f = Fields::of(i, RecordKind::Meeting);
    Ok(Meeting {
        id: f.parse("id", MeetingId::parse)?,
        room_id: f.parse("room_id", RoomId::parse)?,
        started_at: f.ts("started_at")?,
        ended_at: f.opt_num("ended_at")?.map(Timestamp::from_millis),
        peak_participants: f.num("peak_participants")?,
        expires_at: f.expiry()?,
    })
}

fn scheduled_sk(p: &ScheduledMeeting) -> String {
    format!("PLAN#{}#{}", padded(p.starts_at), p.id)
}

fn scheduled_item(p: &ScheduledMeeting) -> Item {
    let order = format!("{}#{}", padded(p.starts_at), p.id);
    item(
        RecordKind::ScheduledMeeting,
        [
            ("pk", s(room_pk(p.room_id))),
            ("sk", s(scheduled_sk(p))),
            ("gsi1pk", s(format!("PLANS#{}", p.owner))),
            ("gsi1sk", s(order.clone())),
            (
                "gsi2pk",
                s(format!("PLANDAY#{}", super::logs::day(p.starts_at))),
            ),
            ("gsi2sk", s(order)),
            ("id", s(p.id.to_string())),
            ("room_id", s(p.room_id.to_string())),
            ("owner", s(p.owner.to_string())),
            ("starts_at", n(p.starts_at.millis())),
            ("minutes", n(p.minutes)),
            ("expected_participants", n(p.expected_participants)),
            ("created_at", n(p.created_at.millis())),
            ("expires_at", n(p.expires_at.epoch_secs())),
        ],
    )
}

fn scheduled_from(i: &Item) -> StoreResult<ScheduledMeeting> {
    let f = Fields::of(i, RecordKind::ScheduledMeeting);
    Ok(ScheduledMeeting {
        id: f.parse("id", ScheduleId::parse)?,
        room_id: f.parse("room_id", RoomId::parse)?,
        owner: f.parse("owner", ModeratorId::parse)?,
        starts_at: f.ts("starts_at")?,
        minutes: f.num("minutes")?,
        expected_participants: f.num("expected_participants")?,
        created_at: f.ts("created_at")?,
        expires_at: f.expiry()?,
    })
}

fn earliest_first(mut plans: Vec<ScheduledMeeting>) -> Vec<ScheduledMeeting> {
    plans.sort_by_key(|p| (p.starts_at, p.id));
    plans
}

/// Scheduled meetings live in their room's partition (sk `PLAN#<start>#<id>`, before the
/// room item `ROOM`, so deleting the room deletes them first), listed per owner through gsi1
/// (`PLANS#<owner>`) and per UTC day of their start through gsi2 (`PLANDAY#<day>`), which the
/// forecast reads.
#[async_trait]
impl ScheduleStore for AwsStore {
    async fn put_scheduled(&self, p: &ScheduledMeeting) -> StoreResult<()> {
        self.put(scheduled_item(p), "saving a scheduled meeting")
            .await
    }

    async fn scheduled_of_room(
        &self,
        room: RoomId,
        now: Timestamp,
    ) -> StoreResult<Vec<ScheduledMeeting>> {
        let items = self
            .query_range(
                room_pk(room),
                prefix("PLAN#"),
                true,
                "listing scheduled meetings",
            )
            .await?;
        live(items, now, scheduled_from).map(earliest_first)
    }

    async fn scheduled_of(
        &self,
        owner: ModeratorId,
        now: Timestamp,
    ) -> StoreResult<Vec<ScheduledMeeting>> {
        let items = self
            .query_index(
                "gsi1",
                format!("PLANS#{owner}"),
                "listing scheduled meetings",
            )
            .await?;
        live(items, now, scheduled_from).map(earliest_first)
    }

    async fn scheduled_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<ScheduledMeeting>> {
        let until = until.min(from.plus(MAX_SCHEDULE_SPAN));
        let mut plans = Vec::new();
        let mut day_start = from;
        let last = super::logs::day(until.minus(Span::MILLISECOND));
        loop {
            let today = super::logs::day(day_start);
            let items = self
                .query_index(
                    "gsi2",
                    format!("PLANDAY#{today}"),
                    "listing scheduled meetings",
                )
                .await?;
            plans.extend(
                live(items, now, scheduled_from)?
                    .into_iter()
                    .filter(|p| from <= p.starts_at && p.starts_at < until),
            );
            if today >= last {
                return Ok(earliest_first(plans));
            }
            day_start = day_start.plus(Span::days(1));
        }
    }

    async fn delete_scheduled(&self, p: &ScheduledMeeting) -> StoreResult<()> {
        self.delete(
            room_pk(p.room_id),
            &scheduled_sk(p),
            "deleting a scheduled meeting",
        )
        .await
    }
}

#[async_trait]
impl RoomStore for AwsStore {
    #[tracing::instrument(skip_all, fields(room = %r.id))]
    async fn create_room(&self, r: &Room) -> StoreResult<()> {
        let ok = self
            .transact(
                vec![self.put_item(room_item(r), Some("attribute_not_exists(pk)"))?],
                "creating a room",
            )
            .await?;
        if ok {
            Ok(())
        } else {
            Err(StoreError::Conflict { what: "the room" })
        }
    }

    async fn room(&self, id: RoomId, now: Timestamp) -> StoreResult<Option<Room>> {
        match self.get(room_pk(id), "ROOM", "reading a room").await? {
            Some(i) if is_live(&i, now) => room_from(&i).map(Some),
            _ => Ok(None),
        }
    }

    async fn room_by_invite(
        &self,
        token: &InviteToken,
        now: Timestamp,
    ) -> StoreResult<Option<Room>> {
        // The index is eventually consistent: confirm against the room itself, so a
        // rotated-away token never admits anyone.
        let hits = self
            .query_index(
                "gsi2",
                format!("INVITE#{}", token.as_str()),
                "finding a room by invite",
            )
            .await?;
        for hit in hits {
            let id = Fields::of(&hit, RecordKind::Room).parse("id", RoomId::parse)?;
            if let Some(room) = self.room(id, now).await?
                && &room.invite_token == token
            {
                return Ok(Some(room));
            }
        }
        Ok(None)
    }

    async fn rooms_of(&self, owner: ModeratorId, now: Timestamp) -> StoreResult<Vec<Room>> {
        let items = self
            .query_index("gsi1", format!("OWNER#{owner}"), "listing rooms")
            .await?;
        live(items, now, room_from)
    }

    #[tracing::instrument(skip_all, fields(room = %r.id))]
    async fn update_room(&self, r: &Room, now: Timestamp) -> StoreResult<()> {
        let result = self
            .ddb
            .put_item()
            .table_name(&self.cfg.table)
            .set_item(Some(room_item(r)))
            .condition_expression("attribute_exists(pk) AND expires_at > :now")
            .expression_attribute_values(":now", n(now.epoch_secs()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::NotFound { what: "the room" })
            }
            Err(e) => Err(backend("updating a room")(e)),
        }
    }

    #[tracing::instrument(skip_all, fields(room = %id))]
    async fn delete_room(&self, id: RoomId) -> StoreResult<()> {
        // Everything of the room shares its partition; the room item (sk `ROOM`) sorts
        // after `GUEST#`, `IDEMP#`, `MEETING#`, `MSG#`, `PLACEMENT` and `PLAN#`, so it goes
        // last.
        let items = self
            .query_range(room_pk(id), None, true, "deleting a room")
            .await?;
        self.delete_all(&items, "deleting a room").await
    }
}

#[async_trait]
impl GuestStore for AwsStore {
    async fn put_guest(&self, g: &Guest) -> StoreResult<()> {
        self.put(guest_item(g), "saving a guest").await
    }

    async fn guest(&self, room: RoomId, id: GuestId, now: Timestamp) -> StoreResult<Option<Guest>> {
        match self
            .get(room_pk(room), &format!("GUEST#{id}"), "reading a guest")
            .await?
        {
            Some(i) if is_live(&i, now) => guest_from(&i).map(Some),
            _ => Ok(None),
        }
    }

    async fn guests_of(&self, room: RoomId, now: Timestamp) -> StoreResult<Vec<Guest>> {
        let items = self
            .query_range(room_pk(room), prefix("GUEST#"), true, "listing guests")
            .await?;
        let mut guests = live(items, now, guest_from)?;
        guests.sort_by_key(|g| (g.created_at, g.id));
        Ok(guests)
    }

    async fn delete_guest(&self, room: RoomId, id: GuestId) -> StoreResult<()> {
        self.delete(room_pk(room), &format!("GUEST#{id}"), "deleting a guest")
            .await
    }
}

#[async_trait]
impl MeetingStore for AwsStore {
    async fn put_meeting(&self, m: &Meeting) -> StoreResult<()> {
        self.put(meeting_item(m), "saving a meeting").await
    }

    async fn meetings_of(&self, room: RoomId, now: Timestamp) -> StoreResult<Vec<Meeting>> {
        let items = self
            .query_range(room_pk(room), prefix("MEETING#"), false, "listing meetings")
            .await?;
        live(items, now, meeting_from)
    }
}
