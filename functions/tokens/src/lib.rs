//! Signed tokens (JWT, EdDSA/Ed25519): the moderator's session cookie, a guest's grant for
//! one room, the short join grant and the chat relay token a media node checks with the
//! public key alone ([`JoinVerifier`]).
//!
//! A crate of its own so that a media node links the verifier without the HTTP API (axum
//! routers, Argon2id, the OpenAPI schemas): it depends on the domain's types and the JWT
//! library only.

pub use aula_domain::RelayedMessage;
use aula_domain::services::{GrantRole, JoinGrant};
use aula_domain::{
    GuestId, ModeratorId, Participant, RoomId, RoomSettings, SessionId, Span, Timestamp,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "aula";
pub const SESSION_AUDIENCE: &str = "aula:session";
pub const GUEST_AUDIENCE: &str = "aula:guest";

/// The audience of a join grant: the one room it admits to.
pub fn room_audience(room: RoomId) -> String {
    format!("aula:room:{room}")
}

/// The audience of a chat relay token: the room whose meeting may relay the message.
pub fn chat_audience(room: RoomId) -> String {
    format!("aula:chat:{room}")
}

/// How long tokens live. A session's cookie is rotated (and the session renewed) once it
/// is older than `session_rotate_after`, so an active moderator never sees it expire.
#[derive(Debug, Clone, Copy)]
pub struct TokenLifetimes {
    pub session: Span,
    pub session_rotate_after: Span,
    pub guest: Span,
    pub join: Span,
    pub chat_relay: Span,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        TokenLifetimes {
            session: aula_domain::retention::SESSION,
            session_rotate_after: Span::seconds(15 * 60),
            guest: aula_domain::retention::GUEST_GRANT,
            join: Span::seconds(120),
            chat_relay: Span::seconds(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    pub iss: String,
    pub aud: String,
    pub sub: ModeratorId,
    pub sid: SessionId,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestClaims {
    pub iss: String,
    pub aud: String,
    pub sub: GuestId,
    pub room: RoomId,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRelayClaims {
    pub iss: String,
    pub aud: String,
    /// The author: only they may hand the token to the node.
    pub sub: Participant,
    pub room: RoomId,
    pub message: RelayedMessage,
    pub iat: i64,
    pub exp: i64,
}

/// What a media node learns from a join grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinClaims {
    pub iss: String,
    pub aud: String,
    pub sub: Participant,
    pub room: RoomId,
    pub role: GrantRole,
    pub name: String,
    pub settings: RoomSettings,
    /// A knocking guest: the node holds them in the lobby.
    #[serde(default)]
    pub lobby: bool,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the signing key is not a valid Ed25519 PKCS#8 key")]
    BadKey,
    #[error("generating a signing key failed")]
    KeyGeneration,
    #[error("signing failed")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("the token is not valid")]
    Invalid(#[source] jsonwebtoken::errors::Error),
}

/// The signing key (functions only) and the verifying key (functions and media nodes).
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_key: Vec<u8>,
    pub lifetimes: TokenLifetimes,
}

impl Tokens {
    /// From an Ed25519 private key in PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8], lifetimes: TokenLifetimes) -> Result<Self, TokenError> {
        use aws_lc_rs::signature::KeyPair as _;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(der)
            .map_err(|_| TokenError::BadKey)?;
        let public_key = pair.public_key().as_ref().to_vec();
        Ok(Tokens {
            encoding: EncodingKey::from_ed_der(der),
            decoding: DecodingKey::from_ed_der(&public_key),
            public_key,
            lifetimes,
        })
    }

    /// The raw 32-byte Ed25519 public key, for media nodes.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.encoding)
            .map_err(TokenError::Sign)
    }

    /// Only EdDSA, only our issuer, only the given audience, and never expired (no leeway).
    fn validation(audience: &str) -> Validation {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 0;
        v
    }

    fn verify<T: for<'de> Deserialize<'de>>(
        &self,
        token: &str,
        audience: &str,
        now: Timestamp,
    ) -> Result<T, TokenError> {
        // The library checks `exp` against the system clock; we also check it against the
        // injected clock so tests (and a skewed host) agree with the domain's time.
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &self.decoding,
            &Self::validation(audience),
        )
        .map_err(TokenError::Invalid)?;
        let exp = data.claims.get("exp").and_then(serde_json::Value::as_i64);
        if exp.is_none_or(|exp| exp <= now.epoch_secs()) {
            return Err(TokenError::Invalid(
                jsonwebtoken::errors::ErrorKind::ExpiredSignature.into(),
            ));
        }
        serde_json::from_value(data.claims).map_err(|e| {
            TokenError::Invalid(jsonwebtoken::errors::ErrorKind::Json(e.into()).into())
        })
    }

    pub fn session(
        &self,
        moderator: ModeratorId,
        session: SessionId,
        now: Timestamp,
    ) -> Result<String, TokenError> {
        self.sign(&SessionClaims {
            iss: ISSUER.into(),
            aud: SESSION_AUDIENCE.into(),
            sub: moderator,
            sid: session,
            iat: now.epoch_secs(),
            exp: now.plus(self.lifetimes.session).epoch_secs(),
        })
    }

    pub fn verify_session(&self, token: &str, now: Timestamp) -> Result<SessionClaims, TokenError> {
        self.verify(token, SESSION_AUDIENCE, now)
    }

    pub fn guest(
        &self,
        guest: GuestId,
        room: RoomId,
        now: Timestamp,
    ) -> Result<String, TokenError> {
        self.sign(&GuestClaims {
            iss: ISSUER.into(),
            aud: GUEST_AUDIENCE.into(),
            sub: guest,
            room,
            iat: now.epoch_secs(),
            exp: now.plus(self.lifetimes.guest).epoch_secs(),
        })
    }

    pub fn verify_guest(&self, token: &str, now: Timestamp) -> Result<GuestClaims, TokenError> {
        self.verify(token, GUEST_AUDIENCE, now)
    }

    pub fn join(
        &self,
        grant: &JoinGrant,
        now: Timestamp,
    ) -> Result<(String, Timestamp), TokenError> {
        let exp = now.plus(self.lifetimes.join);
        let token = self.sign(&JoinClaims {
            iss: ISSUER.into(),
            aud: room_audience(grant.room),
            sub: grant.participant,
            room: grant.room,
            role: grant.role,
            name: grant.display_name.clone(),
            settings: grant.settings,
            lobby: grant.lobby,
            iat: now.epoch_secs(),
            exp: exp.epoch_secs(),
        })?;
        Ok((token, exp))
    }

    /// Signs a stored message for live delivery through the room's media node.
    pub fn chat_relay(
        &self,
        room: RoomId,
        message: RelayedMessage,
        now: Timestamp,
    ) -> Result<String, TokenError> {
        self.sign(&ChatRelayClaims {
            iss: ISSUER.into(),
            aud: chat_audience(room),
            sub: message.author,
            room,
            message,
            iat: now.epoch_secs(),
            exp: now.plus(self.lifetimes.chat_relay).epoch_secs(),
        })
    }
}

/// A new Ed25519 key pair as PKCS#8 DER (the local portal makes one on first start; tests
/// and the load generator make their own deployment's key).
pub fn generate_ed25519_pkcs8() -> Result<Vec<u8>, TokenError> {
    aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| TokenError::KeyGeneration)
}

/// Checks join grants and chat relay tokens with the public key alone: what media nodes hold.
#[derive(Clone)]
pub struct JoinVerifier {
    decoding: DecodingKey,
}

impl JoinVerifier {
    /// From the raw 32-byte Ed25519 public key.
    pub fn from_public_key(raw: &[u8]) -> Result<Self, TokenError> {
        if raw.len() != 32 {
            return Err(TokenError::BadKey);
        }
        Ok(JoinVerifier {
            decoding: DecodingKey::from_ed_der(raw),
        })
    }

    /// Only EdDSA, our issuer, audience = this room, not expired at `now`.
    pub fn verify(
        &self,
        token: &str,
        room: RoomId,
        now: Timestamp,
    ) -> Result<JoinClaims, TokenError> {
        let claims: JoinClaims = self.decode(token, &room_audience(room))?;
        Self::unexpired(claims.exp, now)?;
        Ok(claims)
    }

    /// A chat relay token for this room, signed by the functions and not expired.
    pub fn verify_chat(
        &self,
        token: &str,
        room: RoomId,
        now: Timestamp,
    ) -> Result<ChatRelayClaims, TokenError> {
        let claims: ChatRelayClaims = self.decode(token, &chat_audience(room))?;
        Self::unexpired(claims.exp, now)?;
        Ok(claims)
    }

    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<T, TokenError> {
        jsonwebtoken::decode::<T>(token, &self.decoding, &Tokens::validation(audience))
            .map(|data| data.claims)
            .map_err(TokenError::Invalid)
    }

    fn unexpired(exp: i64, now: Timestamp) -> Result<(), TokenError> {
        if exp <= now.epoch_secs() {
            return Err(TokenError::Invalid(
                jsonwebtoken::errors::ErrorKind::ExpiredSignature.into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aula_domain::services::{GrantRole, JoinGrant};
    use aula_domain::{ChatBody, Conversation, GuestId, MessageId, Participant};

    fn tokens() -> Tokens {
        Tokens::from_pkcs8(
            &generate_ed25519_pkcs8().expect("key"),
            TokenLifetimes::default(),
        )
        .expect("tokens")
    }

    fn grant(room: RoomId) -> JoinGrant {
        JoinGrant {
            room,
            participant: Participant::Guest(GuestId::from_uuid(uuid_of(7))),
            role: GrantRole::Guest,
            display_name: "Lena".into(),
            settings: RoomSettings::default(),
            lobby: false,
        }
    }

    fn uuid_of(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    #[test]
    fn a_media_node_verifies_a_join_grant_with_the_public_key_alone() {
        let t = tokens();
        let room = RoomId::from_uuid(uuid_of(1));
        let now = Timestamp::from_secs(1_800_000_000);
        let (token, _) = t.join(&grant(room), now).expect("signed");
        let node = JoinVerifier::from_public_key(t.public_key()).expect("public key");
        let claims = node.verify(&token, room, now).expect("valid");
        assert_eq!(claims.name, "Lena");
        assert_eq!(claims.role, GrantRole::Guest);
        assert!(
            node.verify(&token, RoomId::from_uuid(uuid_of(2)), now)
                .is_err(),
            "another room"
        );
        assert!(
            node.verify(&token, room, now.plus(Span::seconds(121)))
                .is_err(),
            "expired"
        );
        let stranger = JoinVerifier::from_public_key(tokens().public_key()).expect("public key");
        assert!(
            stranger.verify(&token, room, now).is_err(),
            "another deployment's key"
        );
        assert!(JoinVerifier::from_public_key(&[0; 31]).is_err());
    }

    #[test]
    fn a_media_node_relays_only_chat_messages_the_functions_signed_for_its_room() {
        let t = tokens();
        let room = RoomId::from_uuid(uuid_of(1));
        let now = Timestamp::from_secs(1_800_000_000);
        let author = Participant::Guest(GuestId::from_uuid(uuid_of(7)));
        let message = RelayedMessage {
            id: MessageId::new(now, uuid_of(9)),
            conversation: Conversation::Room,
            author,
            body: ChatBody::parse("Hallo").expect("a message"),
            posted_at: now,
        };
        let token = t.chat_relay(room, message.clone(), now).expect("signed");
        let node = JoinVerifier::from_public_key(t.public_key()).expect("public key");
        let claims = node.verify_chat(&token, room, now).expect("valid");
        assert_eq!((claims.sub, claims.message), (author, message));
        assert!(
            node.verify_chat(&token, RoomId::from_uuid(uuid_of(2)), now)
                .is_err(),
            "another room"
        );
        assert!(
            node.verify_chat(&token, room, now.plus(Span::seconds(61)))
                .is_err(),
            "expired"
        );
        let (grant, _) = t.join(&grant(room), now).expect("signed");
        assert!(
            node.verify_chat(&grant, room, now).is_err(),
            "a join grant is not a chat message"
        );
        assert!(
            node.verify(&token, room, now).is_err(),
            "a chat message is not a join grant"
        );
    }
}
