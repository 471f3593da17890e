//! Data-subject rights (GDPR Art. 15–18): access (export), correction, restriction and
//! erasure — self-service for moderators, and through an admin for rooms and guests —
//! plus the authority-disclosure export. Every admin action is written to the audit log.

use super::{Aula, Caller, ServiceError, ServiceResult};
use crate::retention;
use crate::{
    AccessLogEntry, AccountStatus, AuditAction, AuditEntry, AuditReason, ChatMessage, Email,
    FederalState, Guest, Meeting, Moderator, ModeratorId, ObjectClass, Organisation, PersonName,
    Role, Room, RoomId, ScheduledMeeting, Timestamp,
};
use serde::Serialize;

/// A moderator's account as exported and shown: everything but the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountView {
    pub id: ModeratorId,
    pub last_name: PersonName,
    pub first_name: PersonName,
    pub email: Email,
    pub federal_state: FederalState,
    pub organisation: Organisation,
    pub role: Role,
    pub status: AccountStatus,
    /// The password was handed over (initial or reset): the portal asks for a new one first.
    pub must_change_password: bool,
    pub created_at: Timestamp,
}

impl From<&Moderator> for AccountView {
    fn from(m: &Moderator) -> Self {
        AccountView {
            id: m.id,
            last_name: m.last_name.clone(),
            first_name: m.first_name.clone(),
            email: m.email.clone(),
            federal_state: m.federal_state,
            organisation: m.organisation.clone(),
            role: m.role,
            status: m.status,
            must_change_password: m.must_change_password,
            created_at: m.created_at,
        }
    }
}

/// Everything stored about one room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomExport {
    pub room: Room,
    pub guests: Vec<Guest>,
    pub meetings: Vec<Meeting>,
    /// Meetings scheduled in the room, earliest first.
    pub scheduled: Vec<ScheduledMeeting>,
    /// The room chat and every private conversation, oldest first.
    pub messages: Vec<ChatMessage>,
}

/// Everything stored about one moderator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModeratorExport {
    pub generated_at: Timestamp,
    pub account: AccountView,
    /// Kept, but not exported: the Argon2id hash of the password.
    pub not_exported: Vec<&'static str>,
    pub rooms: Vec<RoomExport>,
}

/// What an authority asked for, on a legal request.
#[derive(Debug, Clone)]
pub struct DisclosureRequest {
    pub moderator: Option<ModeratorId>,
    pub room: Option<RoomId>,
    /// Access-log entries in `[from, until)`.
    pub access_log: Option<(Timestamp, Timestamp)>,
    pub reason: AuditReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Disclosure {
    pub generated_at: Timestamp,
    pub reason: AuditReason,
    pub moderator: Option<ModeratorExport>,
    pub room: Option<RoomExport>,
    pub access_log: Vec<AccessLogEntry>,
}

/// What a moderator may correct about themselves.
#[derive(Debug, Clone, Default)]
pub struct ProfileChanges {
    pub last_name: Option<PersonName>,
    pub first_name: Option<PersonName>,
    pub email: Option<Email>,
    pub federal_state: Option<FederalState>,
    pub organisation: Option<Organisation>,
}

/// How often restricting an admin looks for another active admin to keep.
const KEEPER_ATTEMPTS: usize = 5;

impl Aula {
    pub(crate) async fn audit(
        &self,
        actor: ModeratorId,
        action: AuditAction,
        target: String,
        reason: &str,
    ) -> ServiceResult<()> {
        let now = self.now();
        let entry = AuditEntry {
            id: self.ids.audit_id(),
            time: now,
            actor,
            action,
            target,
            reason: AuditReason::parse(reason)?,
            expires_at: retention::audit_expiry(now),
        };
        self.store.append_audit(&entry).await?;
        tracing::info!(actor = %actor, action = action.as_str(), target = %entry.target, "admin action audited");
        Ok(())
    }

    async fn export_room_data(&self, room: Room) -> ServiceResult<RoomExport> {
        let now = self.now();
        let guests = self.store.guests_of(room.id, now).await?;
        let meetings = self.store.meetings_of(room.id, now).await?;
        let scheduled = self.store.scheduled_of_room(room.id, now).await?;
        let messages = self.store.messages_of_room(room.id, now).await?;
        Ok(RoomExport {
            room,
            guests,
            meetings,
            scheduled,
            messages,
        })
    }

    async fn export_moderator_data(&self, id: ModeratorId) -> ServiceResult<ModeratorExport> {
        let m = self
            .store
            .moderator(id)
            .await?
            .ok_or(ServiceError::NotFound("the account"))?;
        let mut rooms = Vec::new();
        for room in self.store.rooms_of(id, self.now()).await? {
            rooms.push(self.export_room_data(room).await?);
        }
        Ok(ModeratorExport {
            generated_at: self.now(),
            account: AccountView::from(&m),
            not_exported: vec!["password_hash"],
            rooms,
        })
    }

    /// Deletes the account with everything it owns: rooms (with their chats, meetings,
    /// scheduled meetings and guests), sessions and stored exports.
    async fn erase_moderator_data(&self, id: ModeratorId) -> ServiceResult<()> {
        let now = self.now();
        // Expired rooms still physically present go too: erasure is not "hidden".
        let far_past = Timestamp::from_millis(0);
        for room in self.store.rooms_of(id, far_past).await? {
            self.store.delete_room(room.id).await?;
        }
        for room in self.store.rooms_of(id, now).await? {
            self.store.delete_room(room.id).await?;
        }
        // A schedule can outlive its room's record (the room expired and was swept first).
        for plan in self.store.scheduled_of(id, far_past).await? {
            self.store.delete_scheduled(&plan).await?;
        }
        for key in self
            .store
            .list_objects(ObjectClass::Export, &format!("exports/{id}/"), far_past)
            .await?
        {
            self.store.delete_object(ObjectClass::Export, &key).await?;
        }
        self.store.delete_moderator(id).await?;
        tracing::info!(moderator = %id, "account erased");
        Ok(())
    }

    /// Restricts the account. An admin is restricted only while another admin stays
    /// active: nobody could otherwise restrict, erase, export or provision accounts, and a
    /// restart does not make a new one. The store checks the other admin and writes in one
    /// atomic step, so two admins removing each other at the same instant cannot both
    /// succeed; when the admin it named is gone meanwhile, it looks again.
    async fn restrict_account(&self, target: &Moderator) -> ServiceResult<()> {
        if target.role != Role::Admin {
            let mut m = target.clone();
            m.status = AccountStatus::Restricted;
            self.store.update_moderator(&m).await?;
            return Ok(());
        }
        const LAST_ADMIN: ServiceError =
            ServiceError::Refused("this is the last active admin: make another admin first");
        // Each miss means the named admin left (or a concurrent change got in the way):
        // bounded, so a storm of changes ends in a refusal rather than a loop.
        for _ in 0..KEEPER_ATTEMPTS {
            let keeper = self.store.list_moderators().await?.into_iter().find(|m| {
                m.id != target.id && m.role == Role::Admin && m.status == AccountStatus::Active
            });
            let Some(keeper) = keeper else {
                return Err(LAST_ADMIN);
            };
            if self
                .store
                .restrict_keeping_admin(target.id, keeper.id)
                .await?
            {
                return Ok(());
            }
        }
        Err(LAST_ADMIN)
    }

    // ---- self-service ---------------------------------------------------------------

    /// Art. 15: everything Aula stores about the caller.
    pub async fn export_me(&self, caller: &Caller) -> ServiceResult<ModeratorExport> {
        let id = Self::moderator_id(caller)?;
        self.export_moderator_data(id).await
    }

    /// Art. 16: corrects the caller's profile.
    pub async fn correct_me(
        &self,
        caller: &Caller,
        changes: ProfileChanges,
    ) -> ServiceResult<Moderator> {
        let mut m = self.me(caller).await?;
        if let Some(v) = changes.last_name {
            m.last_name = v;
        }
        if let Some(v) = changes.first_name {
            m.first_name = v;
        }
        if let Some(v) = changes.email {
            m.email = v;
        }
        if let Some(v) = changes.federal_state {
            m.federal_state = v;
        }
        if let Some(v) = changes.organisation {
            m.organisation = v;
        }
        self.store.update_moderator(&m).await?;
        Ok(m)
    }

    /// Art. 18: blocks the caller's own account (data kept, no login; an admin lifts it).
    pub async fn restrict_me(&self, caller: &Caller) -> ServiceResult<()> {
        let m = self.me(caller).await?;
        self.restrict_account(&m).await?;
        self.store.delete_sessions_of(m.id).await?;
        Ok(())
    }

    /// Art. 17: erases the caller's account and everything it owns; the password confirms.
    pub async fn erase_me(&self, caller: &Caller, password: &super::Password) -> ServiceResult<()> {
        let m = self.me(caller).await?;
        if !self.passwords.verify(password, &m.password_hash) {
            return Err(ServiceError::BadCredentials);
        }
        if m.role == Role::Admin {
            // Blocked first, under the last-admin rule, then erased.
            self.restrict_account(&m).await?;
        }
        self.erase_moderator_data(m.id).await
    }

    // ---- admins ---------------------------------------------------------------------

    pub async fn list_moderators(&self, caller: &Caller) -> ServiceResult<Vec<AccountView>> {
        Self::admin_id(caller)?;
        Ok(self
            .store
            .list_moderators()
            .await?
            .iter()
            .map(AccountView::from)
            .collect())
    }

    pub async fn admin_export_moderator(
        &self,
        caller: &Caller,
        id: ModeratorId,
        reason: &AuditReason,
    ) -> ServiceResult<ModeratorExport> {
        let admin = Self::admin_id(caller)?;
        let export = self.export_moderator_data(id).await?;
        self.audit(
            admin,
            AuditAction::ExportModerator,
            format!("moderator:{id}"),
            reason.as_str(),
        )
        .await?;
        Ok(export)
    }

    pub async fn admin_set_restricted(
        &self,
        caller: &Caller,
        id: ModeratorId,
        restricted: bool,
        reason: &AuditReason,
    ) -> ServiceResult<AccountView> {
        let admin = Self::admin_id(caller)?;
        let mut m = self
            .store
            .moderator(id)
            .await?
            .ok_or(ServiceError::NotFound("the account"))?;
        if restricted {
            if id == admin {
                return Err(ServiceError::Refused(
                    "admins cannot restrict their own account here; another admin can",
                ));
            }
            self.restrict_account(&m).await?;
            m.status = AccountStatus::Restricted;
            self.store.delete_sessions_of(id).await?;
        } else {
            m.status = AccountStatus::Active;
            self.store.update_moderator(&m).await?;
        }
        let action = if restricted {
            AuditAction::RestrictModerator
        } else {
            AuditAction::UnrestrictModerator
        };
        self.audit(admin, action, format!("moderator:{id}"), reason.as_str())
            .await?;
        Ok(AccountView::from(&m))
    }

    pub async fn admin_erase_moderator(
        &self,
        caller: &Caller,
        id: ModeratorId,
        reason: &AuditReason,
    ) -> ServiceResult<()> {
        let admin = Self::admin_id(caller)?;
        let Some(m) = self.store.moderator(id).await? else {
            return Err(ServiceError::NotFound("the account"));
        };
        if id == admin {
            return Err(ServiceError::Refused(
                "admins cannot erase their own account here; another admin can",
            ));
        }
        if m.role == Role::Admin {
            // Blocked first, under the last-admin rule, then erased.
            self.restrict_account(&m).await?;
        }
        // Audit first: if erasure fails half-way, the attempt is still on record.
        self.audit(
            admin,
            AuditAction::EraseModerator,
            format!("moderator:{id}"),
            reason.as_str(),
        )
        .await?;
        self.erase_moderator_data(id).await
    }

    pub async fn admin_export_room(
        &self,
        caller: &Caller,
        room: RoomId,
        reason: &AuditReason,
    ) -> ServiceResult<RoomExport> {
        let admin = Self::admin_id(caller)?;
        let r = self
            .store
            .room(room, self.now())
            .await?
            .ok_or(ServiceError::NotFound("the room"))?;
        let export = self.export_room_data(r).await?;
        self.audit(
            admin,
            AuditAction::ExportRoom,
            format!("room:{room}"),
            reason.as_str(),
        )
        .await?;
        Ok(export)
    }

    /// Erases a room with its chats, meetings and guests' nicknames.
    pub async fn admin_erase_room(
        &self,
        caller: &Caller,
        room: RoomId,
        reason: &AuditReason,
    ) -> ServiceResult<()> {
        let admin = Self::admin_id(caller)?;
        self.audit(
            admin,
            AuditAction::EraseRoom,
            format!("room:{room}"),
            reason.as_str(),
        )
        .await?;
        self.store.delete_room(room).await?;
        Ok(())
    }

    /// The export for an authority's legal request: what it names, audited with its reason.
    pub async fn authority_disclosure(
        &self,
        caller: &Caller,
        req: DisclosureRequest,
    ) -> ServiceResult<Disclosure> {
        let admin = Self::admin_id(caller)?;
        let now = self.now();
        let moderator = match req.moderator {
            Some(id) => Some(self.export_moderator_data(id).await?),
            None => None,
        };
        let room = match req.room {
            Some(id) => {
                let r = self
                    .store
                    .room(id, now)
                    .await?
                    .ok_or(ServiceError::NotFound("the room"))?;
                Some(self.export_room_data(r).await?)
            }
            None => None,
        };
        let access_log = match req.access_log {
            Some((from, until)) => self.store.access_log_between(from, until, now).await?,
            None => Vec::new(),
        };
        let mut targets = Vec::new();
        if let Some(id) = req.moderator {
            targets.push(format!("moderator:{id}"));
        }
        if let Some(id) = req.room {
            targets.push(format!("room:{id}"));
        }
        if let Some((from, until)) = req.access_log {
            targets.push(format!("access_log:{from}..{until}"));
        }
        self.audit(
            admin,
            AuditAction::AuthorityDisclosure,
            targets.join(" "),
            req.reason.as_str(),
        )
        .await?;
        Ok(Disclosure {
            generated_at: now,
            reason: req.reason,
            moderator,
            room,
            access_log,
        })
    }

    /// The audit log, for admins. There is no way to change or delete it.
    pub async fn audit_log(
        &self,
        caller: &Caller,
        from: Timestamp,
        until: Timestamp,
    ) -> ServiceResult<Vec<AuditEntry>> {
        Self::admin_id(caller)?;
        Ok(self.store.audit_between(from, until, self.now()).await?)
    }
}
