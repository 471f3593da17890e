//! Moderator accounts, login with throttling (see `throttle`), known devices, sessions,
//! and guests joining by invite link.

use super::throttle::{AttemptKeys, Throttle, ThrottlePolicy, Verdict};
use super::{Aula, Caller, ServiceError, ServiceResult};
use crate::ports::StoreError;
use crate::retention;
use crate::{
    AccountStatus, Admission, AuditAction, Email, FederalState, Guest, GuestId, InviteToken,
    Moderator, ModeratorId, Nickname, Organisation, ParseError, PersonName, RateKey, Role, RoomId,
    Session, SessionId,
};
use std::fmt;

/// A password as typed. Never stored, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_CHARS: usize = 256;
    /// Checks the length rule for a new password.
    pub fn new_password(raw: &str) -> Result<Self, ParseError> {
        let n = raw.chars().count();
        if n < Self::MIN_CHARS {
            return Err(ParseError::TooShort {
                field: "password",
                min: Self::MIN_CHARS,
            });
        }
        if n > Self::MAX_CHARS {
            return Err(ParseError::TooLong {
                field: "password",
                max: Self::MAX_CHARS,
            });
        }
        Ok(Password(raw.to_owned()))
    }
    /// A password offered at login: any length up to the maximum is checked against the
    /// hash (the rule for new passwords may have changed since it was set).
    pub fn offered(raw: &str) -> Self {
        Password(raw.chars().take(Self::MAX_CHARS + 1).collect())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Where a request comes from, for per-address limits (never stored as such).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress(pub String);

impl ClientAddress {
    /// The address as limits count it: an IPv6 client is counted by its /64, the block one
    /// household or school network gets, so rotating addresses inside it gains nothing.
    pub fn of(ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(v4) => ClientAddress(v4.to_string()),
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientAddress(v4.to_string()),
                None => {
                    let s = v6.segments();
                    ClientAddress(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
                }
            },
        }
    }
}

/// Limits against password guessing, and whether anyone may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginPolicy {
    pub throttle: ThrottlePolicy,
    pub self_registration: bool,
}

/// What a browser keeps to be recognised as a device its owner logged in from before: a
/// random nonce and a keyed hash binding it to the email. It holds no personal data (the
/// email cannot be read out of it) and nothing is stored on the server.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken(String);

impl DeviceToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceToken(..)")
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub moderator: Moderator,
    pub session: Session,
    /// For the known-device cookie (renewed at every login).
    pub device: DeviceToken,
}

/// Compares without stopping at the first difference, so timing tells nothing.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The profile of a new account, parsed.
#[derive(Debug, Clone)]
pub struct NewModerator {
    pub last_name: PersonName,
    pub first_name: PersonName,
    pub email: Email,
    pub federal_state: FederalState,
    pub organisation: Organisation,
}

/// What became of one row of a list of accounts to create.
#[derive(Debug)]
pub enum Provisioned {
    /// (dry run) the row is valid and its email free.
    WouldCreate,
    /// The account, and its initial password to hand over once.
    Created(Box<Moderator>, Password),
    /// An account with this email exists already.
    EmailTaken,
    /// The same email came earlier in the list.
    DuplicateInBatch,
}

impl Aula {
    fn rate_key(&self, purpose: &str, value: &str) -> ServiceResult<RateKey> {
        let hash = self.hasher.keyed_hash(purpose, value.as_bytes());
        Ok(RateKey::parse(&format!("{purpose}:{hash}"))?)
    }

    fn device_tag(&self, nonce: &str, email_key: &str) -> String {
        self.hasher
            .keyed_hash("known-device", format!("{nonce}\0{email_key}").as_bytes())
    }

    fn new_device_token(&self, email_key: &str) -> DeviceToken {
        let nonce = crate::InviteToken::from_random(self.ids.random_16());
        let tag = self.device_tag(nonce.as_str(), email_key);
        DeviceToken(format!("{}.{tag}", nonce.as_str()))
    }

    /// The nonce of a known-device cookie that this server made for this email.
    fn known_device(&self, cookie: Option<&str>, email_key: &str) -> Option<String> {
        let (nonce, tag) = cookie?.split_once('.')?;
        let nonce = crate::InviteToken::parse(nonce).ok()?;
        let expected = self.device_tag(nonce.as_str(), email_key);
        same_bytes(expected.as_bytes(), tag.as_bytes()).then(|| nonce.as_str().to_owned())
    }

    /// Makes a random initial password (16 random bytes, base64url: 22 characters).
    fn random_password(&self) -> Password {
        Password(
            crate::InviteToken::from_random(self.ids.random_16())
                .as_str()
                .to_owned(),
        )
    }

    fn moderator_from(
        &self,
        input: NewModerator,
        role: Role,
        password: &Password,
        handed_over: bool,
    ) -> ServiceResult<Moderator> {
        Ok(Moderator {
            id: self.ids.moderator_id(),
            last_name: input.last_name,
            first_name: input.first_name,
            email: input.email,
            federal_state: input.federal_state,
            organisation: input.organisation,
            role,
            status: AccountStatus::Active,
            password_hash: self.passwords.hash(password)?,
            must_change_password: handed_over,
            created_at: self.now(),
        })
    }

    /// An admin creates an account. The initial password is returned once, to hand over.
    #[tracing::instrument(skip_all)]
    pub async fn provision_moderator(
        &self,
        caller: &Caller,
        input: NewModerator,
        role: Role,
    ) -> ServiceResult<(Moderator, Password)> {
        let admin = Self::admin_id(caller)?;
        let password = self.random_password();
        let m = self.moderator_from(input, role, &password, true)?;
        self.store.create_moderator(&m).await?;
        self.audit(
            admin,
            AuditAction::ProvisionModerator,
            format!("moderator:{}", m.id),
            "account provisioned",
        )
        .await?;
        Ok((m, password))
    }

    /// An admin creates many accounts at once (a school's list). Each row is checked on
    /// its own: an email twice in the list or already registered is reported for that row
    /// and the others go ahead. With `dry_run` nothing is written; the answer says what
    /// would happen. Every created account is audited like a single one.
    #[tracing::instrument(skip_all, fields(rows = rows.len(), dry_run))]
    pub async fn provision_many(
        &self,
        caller: &Caller,
        rows: Vec<NewModerator>,
        dry_run: bool,
    ) -> ServiceResult<Vec<Provisioned>> {
        Self::admin_id(caller)?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if !seen.insert(row.email.clone()) {
                out.push(Provisioned::DuplicateInBatch);
                continue;
            }
            // Read first even outside a dry run: a taken email then costs one read, not an
            // Argon2 hash that the write's conflict would throw away.
            if self.store.moderator_by_email(&row.email).await?.is_some() {
                out.push(Provisioned::EmailTaken);
                continue;
            }
            if dry_run {
                out.push(Provisioned::WouldCreate);
                continue;
            }
            match self.provision_moderator(caller, row, Role::Moderator).await {
                Ok((m, password)) => out.push(Provisioned::Created(Box::new(m), password)),
                // Taken between the check and the write (another admin, the same list twice).
                Err(ServiceError::Conflict(_)) => out.push(Provisioned::EmailTaken),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Self-registration, where the deployment enables it.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        input: NewModerator,
        password: &Password,
    ) -> ServiceResult<Moderator> {
        if !self.policy.self_registration {
            return Err(ServiceError::RegistrationClosed);
        }
        let m = self.moderator_from(input, Role::Moderator, password, false)?;
        self.store.create_moderator(&m).await?;
        Ok(m)
    }

    /// Creates the first admin when there is none, and returns the one-time password to
    /// print. Returns `None` when an admin exists.
    pub async fn bootstrap_admin(
        &self,
        email: Email,
    ) -> ServiceResult<Option<(Moderator, Password)>> {
        let all = self.store.list_moderators().await?;
        if all.iter().any(|m| m.role == Role::Admin) {
            return Ok(None);
        }
        let password = self.random_password();
        let input = NewModerator {
            last_name: PersonName::parse("Administration")?,
            first_name: PersonName::parse("Aula")?,
            email,
            federal_state: FederalState::Berlin,
            organisation: Organisation::parse("Aula")?,
        };
        let m = self.moderator_from(input, Role::Admin, &password, true)?;
        self.store.create_moderator(&m).await?;
        Ok(Some((m, password)))
    }

    /// Checks email and password, throttled per account and source (`throttle`): the
    /// browser's known-device cookie (`device`), when it was made for this email, is the
    /// source and exempts it from the limits aimed at strangers. Whether the email exists is
    /// never revealed: unknown emails are counted and answered exactly like wrong passwords.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        email_raw: &str,
        password: &Password,
        from: &ClientAddress,
        device: Option<&str>,
    ) -> ServiceResult<LoggedIn> {
        let now = self.now();
        let email_key = email_raw.trim().to_lowercase();
        let known = self.known_device(device, &email_key);
        let source = match &known {
            Some(nonce) => format!("device:{nonce}"),
            None => format!("address:{}", from.0),
        };
        let keys = AttemptKeys {
            pair: self.rate_key("login-pair", &format!("{email_key}\0{source}"))?,
            account: self.rate_key("login-account", &email_key)?,
            address: self.rate_key("login-address", &from.0)?,
            known_device: known.is_some(),
        };
        let throttle = Throttle {
            store: self.store.as_ref(),
            policy: &self.policy.throttle,
        };
        if let Verdict::Wait { retry_after_secs } = throttle.check(&keys, now).await? {
            tracing::warn!(known_device = keys.known_device, "login throttled");
            return Err(ServiceError::RateLimited { retry_after_secs });
        }

        let found = match Email::parse(email_raw) {
            Ok(email) => self.store.moderator_by_email(&email).await?,
            Err(_) => None,
        };
        let verified = match &found {
            Some(m) => self.passwords.verify(password, &m.password_hash),
            None => {
                // Spend the same work as a real check, so timing does not tell either.
                let _ = self.passwords.verify(password, &self.dummy_hash()?);
                false
            }
        };
        let Some(m) = found.filter(|_| verified) else {
            throttle.failed(&keys, now).await?;
            tracing::info!(known_device = keys.known_device, "login failed");
            return Err(ServiceError::BadCredentials);
        };
        // The password was right, also for a blocked account: not a failure to count.
        throttle.succeeded(&keys, now).await?;
        if m.status == AccountStatus::Restricted {
            return Err(ServiceError::AccountRestricted);
        }
        let session = Session {
            id: self.ids.session_id(),
            moderator_id: m.id,
            role: m.role,
            must_change_password: m.must_change_password,
            created_at: now,
            expires_at: retention::session_expiry(now),
        };
        self.store.put_session(&session).await?;
        tracing::info!(moderator = %m.id, known_device = keys.known_device, "logged in");
        Ok(LoggedIn {
            moderator: m,
            session,
            device: self.new_device_token(&email_key),
        })
    }

    fn dummy_hash(&self) -> ServiceResult<crate::PasswordHash> {
        // Computed on first use and kept: hashing is the expensive part we want to mirror.
        static DUMMY: std::sync::OnceLock<crate::PasswordHash> = std::sync::OnceLock::new();
        if let Some(h) = DUMMY.get() {
            return Ok(h.clone());
        }
        let h = self
            .passwords
            .hash(&Password("not-a-real-password-0".into()))?;
        Ok(DUMMY.get_or_init(|| h).clone())
    }

    /// Turns a verified session cookie into a caller. The session record alone decides: it
    /// is deleted by logout, by restriction and by erasure, so a live session is an active
    /// account, and the check never needs to read the account itself.
    pub async fn authenticate(
        &self,
        moderator: ModeratorId,
        session: SessionId,
    ) -> ServiceResult<(Caller, Session)> {
        let Some(s) = self.store.session(moderator, session, self.now()).await? else {
            return Err(ServiceError::Unauthenticated);
        };
        Ok((
            Caller::Moderator {
                id: moderator,
                role: s.role,
                session,
            },
            s,
        ))
    }

    /// Extends a session that is in use (called when its cookie is rotated).
    pub async fn renew_session(&self, mut session: Session) -> ServiceResult<Session> {
        session.expires_at = retention::session_expiry(self.now());
        self.store.put_session(&session).await?;
        Ok(session)
    }

    pub async fn logout(&self, caller: &Caller) -> ServiceResult<()> {
        if let Caller::Moderator { id, session, .. } = caller {
            self.store.delete_session(*id, *session).await?;
        }
        Ok(())
    }

    pub async fn me(&self, caller: &Caller) -> ServiceResult<Moderator> {
        let id = Self::moderator_id(caller)?;
        self.store
            .moderator(id)
            .await?
            .ok_or(ServiceError::Unauthenticated)
    }

    pub async fn change_password(
        &self,
        caller: &Caller,
        current: &Password,
        new: &Password,
    ) -> ServiceResult<()> {
        let mut m = self.me(caller).await?;
        if !self.passwords.verify(current, &m.password_hash) {
            return Err(ServiceError::BadCredentials);
        }
        if new.expose() == current.expose() {
            return Err(ServiceError::Refused(
                "the new password must differ from the current one",
            ));
        }
        m.password_hash = self.passwords.hash(new)?;
        let was_handed_over = m.must_change_password;
        m.must_change_password = false;
        self.store.update_moderator(&m).await?;
        if let Caller::Moderator { session, .. } = caller
            && let Some(mut s) = self.store.session(m.id, *session, self.now()).await?
        {
            // Whoever else knew the old password is logged out; this session goes on, now
            // free of the handed-over password's limits. It is never deleted, not even for
            // a moment: a request of this browser arriving meanwhile must still get in.
            s.must_change_password = false;
            self.store.put_session(&s).await?;
            self.store.delete_sessions_except(m.id, *session).await?;
        }
        tracing::info!(moderator = %m.id, was_handed_over, "password changed");
        Ok(())
    }

    /// The operator (someone with access to the server, not an admin in the portal) gives
    /// an account a new random password, e.g. when the only admin lost theirs. The account
    /// is unblocked, its sessions end, the new password must be changed at the next login,
    /// and the audit log records the reset with the account itself as the actor.
    #[tracing::instrument(skip_all)]
    pub async fn operator_reset_password(
        &self,
        email: &Email,
    ) -> ServiceResult<(Moderator, Password)> {
        let mut m = self
            .store
            .moderator_by_email(email)
            .await?
            .ok_or(ServiceError::NotFound("an account with this email"))?;
        let password = self.random_password();
        m.password_hash = self.passwords.hash(&password)?;
        m.must_change_password = true;
        m.status = AccountStatus::Active;
        self.store.update_moderator(&m).await?;
        self.store.delete_sessions_of(m.id).await?;
        self.audit(
            m.id,
            AuditAction::ResetPassword,
            format!("moderator:{}", m.id),
            "password reset by the operator on the server (aula admin reset-password)",
        )
        .await?;
        Ok((m, password))
    }

    /// A guest opens the invite link and gives a nickname. With the lobby on they wait
    /// until a moderator admits them; otherwise they are in.
    #[tracing::instrument(skip_all)]
    pub async fn join_by_invite(
        &self,
        token: &InviteToken,
        nickname: Nickname,
    ) -> ServiceResult<Guest> {
        let now = self.now();
        let Some(mut room) = self.store.room_by_invite(token, now).await? else {
            return Err(ServiceError::NotFound("the invite link"));
        };
        let guest = Guest {
            id: self.ids.guest_id(),
            room_id: room.id,
            nickname,
            admission: if room.settings.lobby {
                Admission::Waiting
            } else {
                Admission::Admitted
            },
            created_at: now,
            last_used_at: now,
            expires_at: retention::history_expiry(now),
        };
        self.store.put_guest(&guest).await?;
        if now.minus(retention::TOUCH_EVERY) > room.last_used_at {
            room.touch(now);
            match self.store.update_room(&room, now).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(room = %room.id, guest = %guest.id, admission = guest.admission.as_str(), "guest joined");
        Ok(guest)
    }

    /// Turns a verified guest grant into a caller; a guest who was removed or whose
    /// record expired is refused.
    pub async fn authenticate_guest(
        &self,
        room: RoomId,
        guest: GuestId,
    ) -> ServiceResult<(Caller, Guest)> {
        let Some(g) = self.store.guest(room, guest, self.now()).await? else {
            return Err(ServiceError::Unauthenticated);
        };
        if g.admission == Admission::Denied {
            return Err(ServiceError::Denied);
        }
        Ok((Caller::Guest { id: guest, room }, g))
    }

    /// The guest's own record (their lobby status).
    pub async fn guest_status(&self, caller: &Caller) -> ServiceResult<Guest> {
        let Caller::Guest { id, room } = caller else {
            return Err(ServiceError::Unauthenticated);
        };
        self.store
            .guest(*room, *id, self.now())
            .await?
            .ok_or(ServiceError::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::ClientAddress;

    #[test]
    fn addresses_inside_one_ipv6_64_count_as_one_and_mapped_ipv4_as_ipv4() {
        let of = |s: &str| ClientAddress::of(s.parse().expect("ip"));
        assert_eq!(of("2001:db8:1:2::7"), of("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(of("2001:db8:1:2::7"), of("2001:db8:1:3::7"));
        assert_eq!(of("::ffff:198.51.100.7"), of("198.51.100.7"));
        assert_eq!(of("198.51.100.7").0, "198.51.100.7");
    }
}
