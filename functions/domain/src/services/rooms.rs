//! Rooms: a moderator creates, configures and deletes them, rotates the invite link, runs
//! the lobby and gets join grants; guests of a room see what they need to take part.

use super::{Aula, Caller, ServiceError, ServiceResult};
use crate::retention;
use crate::{
    Admission, Guest, GuestId, Meeting, Participant, Room, RoomId, RoomName, RoomSettings,
};
use serde::Serialize;

/// What a moderator may change about a room.
#[derive(Debug, Clone, Default)]
pub struct RoomChanges {
    pub name: Option<RoomName>,
    pub settings: Option<RoomSettings>,
}

/// A room as a participant sees it: the owner sees everything, a guest no invite link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomView {
    pub id: RoomId,
    pub name: RoomName,
    pub settings: RoomSettings,
    pub owner: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParticipantView {
    /// `m:<id>` or `g:<id>`: the address for private messages.
    pub participant: Participant,
    pub display_name: String,
    pub moderator: bool,
    pub admission: Admission,
}

/// Who belongs to a room: its moderator and its guests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Participants {
    pub participants: Vec<ParticipantView>,
}

/// The part someone plays in a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum GrantRole {
    Moderator,
    Guest,
}

/// What a join grant for the media node says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinGrant {
    pub room: RoomId,
    pub participant: Participant,
    pub role: GrantRole,
    pub display_name: String,
    pub settings: RoomSettings,
    /// The holder knocks: the node keeps them in its lobby until a moderator admits them.
    pub lobby: bool,
}

/// A caller's standing in a room they take part in.
pub(crate) struct Participation {
    pub room: Room,
    pub me: Participant,
    pub owner: bool,
    /// The guest's record when the caller is one (read to check their admission), so a
    /// caller needing their nickname does not read it again.
    pub guest: Option<Guest>,
}

impl Aula {
    /// The room if the caller takes part in it: its owner, or an admitted guest of it.
    /// Anyone else learns nothing, not even that it exists.
    pub(crate) async fn participation(
        &self,
        caller: &Caller,
        room: RoomId,
    ) -> ServiceResult<Participation> {
        let now = self.now();
        match caller {
            Caller::Anonymous => Err(ServiceError::Unauthenticated),
            Caller::Moderator { id, .. } => {
                let r = self.store.room(room, now).await?.filter(|r| r.owner == *id);
                let r = r.ok_or(ServiceError::NotFound("the room"))?;
                Ok(Participation {
                    room: r,
                    me: Participant::Moderator(*id),
                    owner: true,
                    guest: None,
                })
            }
            Caller::Guest {
                id,
                room: guest_room,
            } => {
                if *guest_room != room {
                    return Err(ServiceError::NotFound("the room"));
                }
                // Both at once: a guest's every request reads both, on the class's path.
                let (g, r) = futures_util::future::join(
                    self.store.guest(room, *id, now),
                    self.store.room(room, now),
                )
                .await;
                let g = g?.ok_or(ServiceError::Unauthenticated)?;
                match g.admission {
                    Admission::Admitted => {}
                    Admission::Waiting => return Err(ServiceError::InLobby),
                    Admission::Denied => return Err(ServiceError::Denied),
                }
                let r = r?.ok_or(ServiceError::NotFound("the room"))?;
                Ok(Participation {
                    room: r,
                    me: Participant::Guest(*id),
                    owner: false,
                    guest: Some(g),
                })
            }
        }
    }

    /// The room, if the caller owns it.
    pub(crate) async fn owned_room(&self, caller: &Caller, room: RoomId) -> ServiceResult<Room> {
        let p = self.participation(caller, room).await;
        match p {
            Ok(p) if p.owner => Ok(p.room),
            Ok(_) | Err(ServiceError::InLobby) | Err(ServiceError::Denied) => {
                Err(ServiceError::Forbidden)
            }
            Err(e) => Err(e),
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_room(
        &self,
        caller: &Caller,
        name: RoomName,
        settings: RoomSettings,
    ) -> ServiceResult<Room> {
        let owner = Self::moderator_id(caller)?;
        settings.check()?;
        let now = self.now();
        let room = Room {
            id: self.ids.room_id(),
            owner,
            name,
            settings,
            invite_token: self.ids.invite_token(),
            created_at: now,
            last_used_at: now,
            expires_at: retention::history_expiry(now),
        };
        self.store.create_room(&room).await?;
        tracing::info!(room = %room.id, "room created");
        Ok(room)
    }

    pub async fn my_rooms(&self, caller: &Caller) -> ServiceResult<Vec<Room>> {
        let owner = Self::moderator_id(caller)?;
        Ok(self.store.rooms_of(owner, self.now()).await?)
    }

    /// The full room, for its owner.
    pub async fn room(&self, caller: &Caller, room: RoomId) -> ServiceResult<Room> {
        self.owned_room(caller, room).await
    }

    /// The room as any participant sees it.
    pub async fn room_view(&self, caller: &Caller, room: RoomId) -> ServiceResult<RoomView> {
        let p = self.participation(caller, room).await?;
        Ok(RoomView {
            id: p.room.id,
            name: p.room.name,
            settings: p.room.settings,
            owner: p.owner,
        })
    }

    #[tracing::instrument(skip_all, fields(room = %room))]
    pub async fn update_room(
        &self,
        caller: &Caller,
        room: RoomId,
        changes: RoomChanges,
    ) -> ServiceResult<Room> {
        let mut r = self.owned_room(caller, room).await?;
        if let Some(name) = changes.name {
            r.name = name;
        }
        if let Some(settings) = changes.settings {
            settings.check()?;
            r.settings = settings;
        }
        let now = self.now();
        r.touch(now);
        self.store.update_room(&r, now).await?;
        Ok(r)
    }

    /// A new invite link; the old one stops working at once.
    #[tracing::instrument(skip_all, fields(room = %room))]
    pub async fn rotate_invite(&self, caller: &Caller, room: RoomId) -> ServiceResult<Room> {
        let mut r = self.owned_room(caller, room).await?;
        r.invite_token = self.ids.invite_token();
        let now = self.now();
        r.touch(now);
        self.store.update_room(&r, now).await?;
        Ok(r)
    }

    /// Deletes the room with its chats, meetings and guests.
    #[tracing::instrument(skip_all, fields(room = %room))]
    pub async fn delete_room(&self, caller: &Caller, room: RoomId) -> ServiceResult<()> {
        let r = self.owned_room(caller, room).await?;
        self.store.delete_room(r.id).await?;
        Ok(())
    }

    pub async fn meetings(&self, caller: &Caller, room: RoomId) -> ServiceResult<Vec<Meeting>> {
        let r = self.owned_room(caller, room).await?;
        Ok(self.store.meetings_of(r.id, self.now()).await?)
    }

    /// Guests waiting in the lobby, for the room's moderator.
    pub async fn lobby(&self, caller: &Caller, room: RoomId) -> ServiceResult<Vec<Guest>> {
        let r = self.owned_room(caller, room).await?;
        let guests = self.store.guests_of(r.id, self.now()).await?;
        Ok(guests
            .into_iter()
            .filter(|g| g.admission == Admission::Waiting)
            .collect())
    }

    /// Admits a waiting guest, or denies (and so removes) any guest: a denied guest's
    /// grant is refused from then on.
    #[tracing::instrument(skip_all, fields(room = %room, guest = %guest))]
    pub async fn set_admission(
        &self,
        caller: &Caller,
        room: RoomId,
        guest: GuestId,
        admission: Admission,
    ) -> ServiceResult<Guest> {
        let r = self.owned_room(caller, room).await?;
        let now = self.now();
        let mut g = self
            .store
            .guest(r.id, guest, now)
            .await?
            .ok_or(ServiceError::NotFound("the guest"))?;
        g.admission = admission;
        self.store.put_guest(&g).await?;
        Ok(g)
    }

    /// Everyone who belongs to the room, for its participants.
    pub async fn participants(&self, caller: &Caller, room: RoomId) -> ServiceResult<Participants> {
        let p = self.participation(caller, room).await?;
        let owner = self.store.moderator(p.room.owner).await?;
        let mut participants = Vec::new();
        if let Some(m) = owner {
            participants.push(ParticipantView {
                participant: Participant::Moderator(m.id),
                display_name: format!("{} {}", m.first_name, m.last_name),
                moderator: true,
                admission: Admission::Admitted,
            });
        }
        for g in self.store.guests_of(p.room.id, self.now()).await? {
            if g.admission == Admission::Denied {
                continue;
            }
            participants.push(ParticipantView {
                participant: Participant::Guest(g.id),
                display_name: g.nickname.to_string(),
                moderator: false,
                admission: g.admission,
            });
        }
        Ok(Participants { participants })
    }

    /// What a join grant for the room's media node carries: for the owner (as moderator)
    /// and admitted guests; a waiting guest is told to wait, a removed one is refused.
    pub async fn join_grant(&self, caller: &Caller, room: RoomId) -> ServiceResult<JoinGrant> {
        // A moderator's name is read alongside the room (the grant carries it).
        let name = async {
            match caller {
                Caller::Moderator { id, .. } => self.store.moderator(*id).await,
                _ => Ok(None),
            }
        };
        let (p, moderator) =
            futures_util::future::join(self.participation(caller, room), name).await;
        let p = match p {
            Err(ServiceError::InLobby) => return self.lobby_grant(caller, room).await,
            p => p?,
        };
        let (role, display_name) = match p.me {
            Participant::Moderator(_) => {
                let m = moderator?.ok_or(ServiceError::Unauthenticated)?;
                (
                    GrantRole::Moderator,
                    format!("{} {}", m.first_name, m.last_name),
                )
            }
            Participant::Guest(_) => {
                let g = p.guest.as_ref().ok_or(ServiceError::Unauthenticated)?;
                (GrantRole::Guest, g.nickname.to_string())
            }
        };
        Ok(JoinGrant {
            room,
            participant: p.me,
            role,
            display_name,
            settings: p.room.settings,
            lobby: false,
        })
    }

    /// A waiting guest may knock at the media node: the grant says so, and the node lets
    /// them see and hear nothing until a moderator admits them there.
    async fn lobby_grant(&self, caller: &Caller, room: RoomId) -> ServiceResult<JoinGrant> {
        let Caller::Guest { id, .. } = caller else {
            return Err(ServiceError::InLobby);
        };
        let now = self.now();
        let guest = self
            .store
            .guest(room, *id, now)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        let r = self
            .store
            .room(room, now)
            .await?
            .ok_or(ServiceError::NotFound("the room"))?;
        Ok(JoinGrant {
            room,
            participant: Participant::Guest(*id),
            role: GrantRole::Guest,
            display_name: guest.nickname.to_string(),
            settings: r.settings,
            lobby: true,
        })
    }
}
