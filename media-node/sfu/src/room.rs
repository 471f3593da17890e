//! Rooms and who is in them: joining and leaving, the lobby, moderation, chat, the frames
//! everyone in a meeting gets, the speakers' decisions, and forgetting empty rooms.

use crate::participant::Member;
use crate::protocol::{ClientMessage, ErrorCode, Farewell, PeerInfo, ServerMessage, Source};
use crate::sfu::{ConnId, Joining, Output, Sfu, SfuError};
use crate::speakers::{self, Speakers};
use aula_domain::services::GrantRole;
use aula_domain::{Conversation, Participant, RelayedMessage, RoomId};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Rooms nobody is in are forgotten after this (their removed list with them: by then the
/// grants of removed participants have long expired, and the functions refuse new ones).
const FORGET_EMPTY_ROOM_AFTER: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub(crate) struct Room {
    /// In order of joining.
    pub(crate) members: Vec<ConnId>,
    pub(crate) speakers: Speakers<Participant>,
    pub(crate) meeting: bool,
    peak: u32,
    /// Refused from now on: removed by a moderator or turned down in the lobby.
    removed: HashSet<Participant>,
    /// Guests of a meeting a moderator ended: they may come back once a moderator is in.
    ended_guests: HashSet<Participant>,
    empty_since: Option<Instant>,
}

impl Sfu {
    pub(crate) fn room_members(&self, room: RoomId) -> Vec<ConnId> {
        self.rooms
            .get(&room)
            .map(|r| r.members.clone())
            .unwrap_or_default()
    }

    /// Sends to everyone in the meeting (not the lobby) of a room.
    pub(crate) fn broadcast(
        &mut self,
        room: RoomId,
        except: Option<ConnId>,
        message: &ServerMessage,
    ) {
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        for conn in &r.members {
            if Some(*conn) != except && self.members.get(conn).is_some_and(|m| m.in_meeting) {
                self.outputs.push_back(Output::Signal {
                    conn: *conn,
                    message: message.clone(),
                });
            }
        }
    }

    fn tell_moderators(&mut self, room: RoomId, message: &ServerMessage) {
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        for conn in &r.members {
            if self
                .members
                .get(conn)
                .is_some_and(|m| m.in_meeting && m.is_moderator())
            {
                self.outputs.push_back(Output::Signal {
                    conn: *conn,
                    message: message.clone(),
                });
            }
        }
    }

    // ---- joining and leaving ----------------------------------------------------------

    pub(crate) fn join_room(&mut self, now: Instant, conn: ConnId, j: Joining) {
        if self.members.contains_key(&conn) {
            return self.refuse(conn, ErrorCode::NotJoined, "this connection already joined");
        }
        if self.draining {
            self.refuse(
                conn,
                ErrorCode::Draining,
                "this media node is shutting down",
            );
            return self.close(conn);
        }
        // Only a join that is let in makes room state: a refused one must leave nothing
        // behind (a full node would otherwise collect a room for every refusal).
        let room = self.rooms.get(&j.room);
        if room.is_some_and(|r| r.removed.contains(&j.participant)) {
            let reason = if j.lobby {
                Farewell::Denied
            } else {
                Farewell::Removed
            };
            self.signal(conn, ServerMessage::Bye { reason });
            return self.close(conn);
        }
        let moderator_present = room.is_some_and(|r| {
            r.members.iter().any(|c| {
                self.members
                    .get(c)
                    .is_some_and(|m| m.in_meeting && m.is_moderator())
            })
        });
        if j.role == GrantRole::Guest
            && room.is_some_and(|r| r.ended_guests.contains(&j.participant))
            && !moderator_present
        {
            self.signal(
                conn,
                ServerMessage::Bye {
                    reason: Farewell::Ended,
                },
            );
            return self.close(conn);
        }
        if let Some(old) = self.by_participant.get(&(j.room, j.participant)).copied() {
            // The same person again (a reload, another tab): the newest connection wins.
            self.farewell(now, old, Farewell::Replaced);
        } else if self.stats().load() >= self.config.capacity {
            self.refuse(conn, ErrorCode::Full, "this media node is full");
            return self.close(conn);
        }
        let room = self.rooms.entry(j.room).or_default();
        room.members.push(conn);
        room.empty_since = None;
        if j.role == GrantRole::Moderator {
            room.ended_guests.clear();
        }
        let lobby = j.lobby && j.role == GrantRole::Guest;
        let muted = j.settings.mute_on_join && j.role == GrantRole::Guest;
        self.by_participant.insert((j.room, j.participant), conn);
        self.members.insert(
            conn,
            Member::new(
                j.room,
                j.participant,
                j.name.clone(),
                j.role,
                j.settings,
                muted,
            ),
        );
        tracing::info!(room = %j.room, participant = %j.participant, lobby, "joined");
        if lobby {
            self.signal(conn, ServerMessage::Lobby);
            self.tell_moderators(
                j.room,
                &ServerMessage::Knock {
                    participant: j.participant,
                    name: j.name,
                },
            );
        } else {
            self.enter_meeting(now, conn);
        }
    }

    fn enter_meeting(&mut self, now: Instant, conn: ConnId) {
        let Some(m) = self.members.get_mut(&conn) else {
            return;
        };
        m.in_meeting = true;
        let (room_id, me, role, settings) = (m.room, m.participant, m.role, m.settings);
        let info = m.info();
        let mut others: Vec<PeerInfo> = Vec::new();
        let mut knocking: Vec<(Participant, String)> = Vec::new();
        for (c, o) in self
            .rooms
            .get(&room_id)
            .into_iter()
            .flat_map(|r| &r.members)
            .filter_map(|c| Some((*c, self.members.get(c)?)))
        {
            if !o.in_meeting {
                knocking.push((o.participant, o.name.clone()));
            } else if c != conn {
                others.push(o.info());
            }
        }
        let room = self.rooms.entry(room_id).or_default();
        room.speakers.join(me);
        let started = !room.meeting;
        room.meeting = true;
        let count = others.len() as u32 + 1;
        room.peak = room.peak.max(count);
        if started {
            room.peak = count;
            self.outputs
                .push_back(Output::MeetingStarted { room: room_id });
        }
        self.signal(
            conn,
            ServerMessage::Welcome {
                v: crate::protocol::PROTOCOL_VERSION,
                you: me,
                role,
                settings,
                participants: others,
                last_n: self.config.last_n,
            },
        );
        // Everyone (the newcomer too) learns whose video is forwarded now.
        self.announce_speakers(room_id);
        if role == GrantRole::Moderator {
            for (participant, name) in knocking {
                self.signal(conn, ServerMessage::Knock { participant, name });
            }
            // A moderator who comes later learns whose connection is not good now.
            let marks: Vec<(Participant, crate::quality::Report)> = self
                .room_members(room_id)
                .iter()
                .filter_map(|c| self.members.get(c).filter(|o| o.in_meeting))
                .map(|o| (o.participant, o.quality.reported()))
                .filter(|(p, r)| *p != me && *r != crate::quality::Report::GOOD)
                .collect();
            for (participant, report) in marks {
                self.signal(conn, crate::fanout::quality_frame(participant, report));
            }
        }
        self.broadcast(
            room_id,
            Some(conn),
            &ServerMessage::ParticipantJoined { peer: info },
        );
        // The newcomer sees everyone already publishing.
        self.renegotiate(now, conn);
    }

    /// The connection is gone (closed by the client, or by the node after a farewell).
    pub(crate) fn leave_room(&mut self, now: Instant, conn: ConnId) {
        let Some(m) = self.members.remove(&conn) else {
            return;
        };
        tracing::info!(room = %m.room, participant = %m.participant, "left");
        self.by_participant.remove(&(m.room, m.participant));
        for peer in [m.publish, m.subscription.peer()].into_iter().flatten() {
            self.close_peer(peer);
        }
        let room_id = m.room;
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.retain(|c| *c != conn);
            room.speakers.leave(m.participant);
        }
        if m.in_meeting {
            self.broadcast(
                room_id,
                None,
                &ServerMessage::ParticipantLeft {
                    participant: m.participant,
                },
            );
            self.announce_speakers(room_id);
            for other in self.room_members(room_id) {
                let forwarded_theirs = self
                    .members
                    .get(&other)
                    .is_some_and(|o| o.outgoing.keys().any(|(p, _)| *p == m.participant));
                if forwarded_theirs {
                    self.renegotiate(now, other);
                }
            }
        } else {
            self.tell_moderators(
                room_id,
                &ServerMessage::KnockEnded {
                    participant: m.participant,
                },
            );
        }
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let members = &self.members;
        let nobody_in_meeting = !room
            .members
            .iter()
            .any(|c| members.get(c).is_some_and(|m| m.in_meeting));
        if nobody_in_meeting && room.meeting {
            room.meeting = false;
            self.outputs.push_back(Output::MeetingEnded {
                room: room_id,
                peak_participants: room.peak,
            });
            room.peak = 0;
        }
        if room.members.is_empty() {
            room.empty_since = Some(now);
            let forget_at = now + FORGET_EMPTY_ROOM_AFTER;
            self.next_forget = Some(self.next_forget.map_or(forget_at, |t| t.min(forget_at)));
        }
    }

    fn farewell(&mut self, now: Instant, conn: ConnId, reason: Farewell) {
        self.signal(conn, ServerMessage::Bye { reason });
        self.close(conn);
        self.leave_room(now, conn);
    }

    pub(crate) fn start_draining(&mut self) {
        self.draining = true;
        let conns: Vec<ConnId> = self.members.keys().copied().collect();
        for conn in conns {
            self.signal(conn, ServerMessage::Move);
        }
    }

    // ---- signalling -------------------------------------------------------------------

    pub(crate) fn on_message(&mut self, now: Instant, conn: ConnId, message: ClientMessage) {
        let Some(m) = self.members.get(&conn) else {
            return self.refuse(conn, ErrorCode::NotJoined, "send join first");
        };
        let (in_meeting, moderator, room) = (m.in_meeting, m.is_moderator(), m.room);
        let result = match message {
            ClientMessage::Join { .. } => Err(SfuError::Refused(
                ErrorCode::NotJoined,
                "this connection already joined",
            )),
            ClientMessage::Chat { .. } => Ok(()),
            ClientMessage::Ping => {
                self.signal(conn, ServerMessage::Pong);
                Ok(())
            }
            ClientMessage::Leave => {
                self.close(conn);
                self.leave_room(now, conn);
                Ok(())
            }
            _ if !in_meeting => Err(SfuError::Refused(
                ErrorCode::NotAllowed,
                "wait until a moderator admits you",
            )),
            ClientMessage::PublishOffer {
                sdp,
                tracks,
                restart,
            } => self.publish(now, conn, sdp, tracks, restart),
            ClientMessage::SubscribeAnswer { sdp } => self.subscribe_answer(now, conn, sdp),
            ClientMessage::Candidate {
                connection,
                candidate,
            } => self.remote_candidate(conn, connection, candidate),
            ClientMessage::SetMuted { muted } => {
                self.update(conn, |m| m.muted = muted);
                Ok(())
            }
            ClientMessage::RaiseHand { raised } => {
                self.update(conn, |m| m.hand_raised = raised);
                Ok(())
            }
            ClientMessage::RequestKeyframe { participant } => {
                self.subscriber_asks(now, conn, participant, Source::Camera);
                self.subscriber_asks(now, conn, participant, Source::Screen);
                Ok(())
            }
            _ if !moderator => Err(SfuError::Refused(
                ErrorCode::Forbidden,
                "only a moderator may do that",
            )),
            ClientMessage::Admit { participant } => {
                self.lobby_member(room, participant).map(|target| {
                    self.tell_moderators(room, &ServerMessage::KnockEnded { participant });
                    self.enter_meeting(now, target);
                })
            }
            ClientMessage::Deny { participant } => {
                self.lobby_member(room, participant).map(|target| {
                    self.rooms
                        .entry(room)
                        .or_default()
                        .removed
                        .insert(participant);
                    self.farewell(now, target, Farewell::Denied);
                })
            }
            ClientMessage::Mute { participant } => {
                self.guest_member(room, participant).map(|target| {
                    let by = self.members.get(&conn).map(|m| m.participant);
                    self.update(target, |m| m.muted = true);
                    if let Some(by) = by {
                        self.signal(target, ServerMessage::Muted { by });
                    }
                })
            }
            ClientMessage::Remove { participant } => {
                self.guest_member(room, participant).map(|target| {
                    self.rooms
                        .entry(room)
                        .or_default()
                        .removed
                        .insert(participant);
                    self.farewell(now, target, Farewell::Removed);
                })
            }
            ClientMessage::LowerHand { participant } => {
                self.meeting_member(room, participant).map(|target| {
                    self.update(target, |m| m.hand_raised = false);
                })
            }
            ClientMessage::EndMeeting => {
                self.end_meeting(now, room);
                Ok(())
            }
        };
        if let Err(e) = result {
            let (code, text) = match &e {
                SfuError::Refused(code, text) => (*code, (*text).to_owned()),
                SfuError::Media(e) => (ErrorCode::BadSdp, e.to_string()),
            };
            self.signal(
                conn,
                ServerMessage::Error {
                    code,
                    message: text,
                },
            );
        }
    }

    fn lobby_member(&self, room: RoomId, p: Participant) -> Result<ConnId, SfuError> {
        self.by_participant
            .get(&(room, p))
            .copied()
            .filter(|c| self.members.get(c).is_some_and(|m| !m.in_meeting))
            .ok_or(SfuError::Refused(
                ErrorCode::UnknownParticipant,
                "nobody by that name is knocking",
            ))
    }

    fn meeting_member(&self, room: RoomId, p: Participant) -> Result<ConnId, SfuError> {
        self.by_participant
            .get(&(room, p))
            .copied()
            .filter(|c| self.members.get(c).is_some_and(|m| m.in_meeting))
            .ok_or(SfuError::Refused(
                ErrorCode::UnknownParticipant,
                "nobody by that name is in this meeting",
            ))
    }

    fn guest_member(&self, room: RoomId, p: Participant) -> Result<ConnId, SfuError> {
        self.by_participant
            .get(&(room, p))
            .copied()
            .filter(|c| {
                self.members
                    .get(c)
                    .is_some_and(|m| m.role == GrantRole::Guest)
            })
            .ok_or(SfuError::Refused(
                ErrorCode::UnknownParticipant,
                "no such guest in this meeting",
            ))
    }

    /// Changes what the others see of a participant, and tells them.
    pub(crate) fn update(&mut self, conn: ConnId, change: impl FnOnce(&mut Member)) {
        let Some(m) = self.members.get_mut(&conn) else {
            return;
        };
        change(m);
        let (room, info) = (m.room, m.info());
        if info.muted
            && let Some(r) = self.rooms.get_mut(&room)
        {
            r.speakers.silence(info.participant);
        }
        self.broadcast(
            room,
            None,
            &ServerMessage::ParticipantUpdated { peer: info },
        );
    }

    fn end_meeting(&mut self, now: Instant, room: RoomId) {
        for conn in self.room_members(room) {
            if let Some(m) = self.members.get(&conn)
                && m.role == GrantRole::Guest
            {
                let p = m.participant;
                self.rooms.entry(room).or_default().ended_guests.insert(p);
            }
            self.farewell(now, conn, Farewell::Ended);
        }
    }

    pub(crate) fn on_chat(&mut self, conn: ConnId, message: RelayedMessage) {
        let Some(m) = self.members.get(&conn) else {
            return self.refuse(conn, ErrorCode::NotJoined, "send join first");
        };
        if !m.in_meeting || m.participant != message.author {
            return self.refuse(conn, ErrorCode::BadChat, "not your message to deliver");
        }
        let room = m.room;
        let conversation = message.conversation;
        let frame = ServerMessage::Chat { message };
        match conversation {
            Conversation::Room => self.broadcast(room, None, &frame),
            Conversation::Private(a, b) => {
                for p in [a, b] {
                    if let Some(c) = self.by_participant.get(&(room, p)).copied()
                        && self.members.get(&c).is_some_and(|m| m.in_meeting)
                    {
                        self.signal(c, frame.clone());
                    }
                }
            }
        }
    }

    // ---- speakers and housekeeping ----------------------------------------------------

    pub(crate) fn speaker_tick(&mut self, now: Instant) {
        let mut changed = Vec::new();
        for (id, room) in &mut self.rooms {
            if room.meeting && room.speakers.decide(now) {
                changed.push((
                    *id,
                    room.speakers.active(),
                    room.speakers.last_n(self.config.last_n).collect::<Vec<_>>(),
                ));
            }
        }
        for (room, active, video) in changed {
            self.broadcast(room, None, &ServerMessage::Speakers { active, video });
        }
        self.allocate_bandwidth(now);
        self.next_speaker_tick = if self.rooms.values().any(|r| r.meeting) {
            Some(now + speakers::DECISION_INTERVAL)
        } else {
            None
        };
    }

    fn announce_speakers(&mut self, room: RoomId) {
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        let frame = ServerMessage::Speakers {
            active: r.speakers.active(),
            video: r.speakers.last_n(self.config.last_n).collect(),
        };
        self.broadcast(room, None, &frame);
    }

    /// Drops rooms empty for an hour. Runs on every timeout, so it looks at the rooms only
    /// when the earliest of them is due (`next_forget`), not on every call.
    pub(crate) fn forget_empty_rooms(&mut self, now: Instant) {
        if self.next_forget.is_none_or(|t| now < t) {
            return;
        }
        self.rooms.retain(|_, r| {
            r.empty_since
                .is_none_or(|t| now.saturating_duration_since(t) < FORGET_EMPTY_ROOM_AFTER)
        });
        self.next_forget = self
            .rooms
            .values()
            .filter_map(|r| r.empty_since)
            .min()
            .map(|t| t + FORGET_EMPTY_ROOM_AFTER);
    }
}
