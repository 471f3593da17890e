//! TURN credentials for the join answer: browsers behind a firewall that lets no UDP to the
//! media node through (many schools allow only TCP to port 443) relay their media through a
//! TURN server next to the node. The credentials follow the TURN REST API convention that
//! coturn checks with `use-auth-secret`/`static-auth-secret`: the username is
//! `<expiry in epoch seconds>:<label>`, the password base64(HMAC-SHA1(secret, username)).
//! They expire with the join grant they come with: a TURN server refuses new allocations
//! with them after that (running ones go on), and the page asks for a new grant, and so new
//! credentials, whenever it connects again.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use utoipa::ToSchema;

/// Where the TURN servers are and the secret they share with the API.
#[derive(Clone)]
pub struct TurnConfig {
    /// TURN URLs as browsers take them (`turn:host:3478?transport=udp`,
    /// `turns:host:443?transport=tcp`). `{host}` stands for the host of the media node the
    /// room is placed on, `{node}` for the first label of that host (a TURN server beside
    /// each node).
    pub urls: Vec<String>,
    key: hmac::Key,
}

impl std::fmt::Debug for TurnConfig {
    // Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

/// Why a TURN setting is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TurnConfigError {
    #[error("no TURN URL given")]
    NoUrls,
    #[error("{0:?} is not a TURN URL (turn: or turns:)")]
    NotTurn(String),
    #[error("the TURN secret is empty")]
    EmptySecret,
}

impl TurnConfig {
    pub fn new(urls: Vec<String>, secret: &[u8]) -> Result<Self, TurnConfigError> {
        if urls.is_empty() {
            return Err(TurnConfigError::NoUrls);
        }
        if let Some(bad) = urls
            .iter()
            .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")) || u.contains(' '))
        {
            return Err(TurnConfigError::NotTurn(bad.clone()));
        }
        if secret.is_empty() {
            return Err(TurnConfigError::EmptySecret);
        }
        Ok(TurnConfig {
            urls,
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret),
        })
    }

    /// The ICE servers for one join answer: valid until `expires` (epoch seconds), for the
    /// node at `node_url`. The label is random, so a TURN server's log links no participant
    /// to an address.
    pub fn ice_servers(&self, node_url: &str, expires_epoch_secs: u64) -> Vec<IceServer> {
        let mut label = [0u8; 9];
        // The label only tells sessions apart in the TURN server's log: without randomness
        // it is the same for everyone, which is still valid.
        let _ = SystemRandom::new().fill(&mut label);
        let label = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(label);
        self.ice_servers_with_label(node_url, expires_epoch_secs, &label)
    }

    fn ice_servers_with_label(
        &self,
        node_url: &str,
        expires_epoch_secs: u64,
        label: &str,
    ) -> Vec<IceServer> {
        let username = format!("{expires_epoch_secs}:{label}");
        let credential = STANDARD.encode(hmac::sign(&self.key, username.as_bytes()));
        let host = node_host(node_url);
        let node = host.split('.').next().unwrap_or(host);
        let urls = self
            .urls
            .iter()
            .map(|u| u.replace("{host}", host).replace("{node}", node))
            .collect();
        vec![IceServer {
            urls,
            username,
            credential,
        }]
    }
}

/// The host of a node URL (`wss://host:port/path` → `host`), brackets kept for IPv6.
fn node_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if authority.starts_with('[') {
        return authority
            .split_once(']')
            .map_or(authority, |(h, _)| &authority[..=h.len()]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct IceServer {
    /// TURN URLs (`turn:` over UDP or TCP, `turns:` over TLS).
    pub urls: Vec<String>,
    /// `<expiry in epoch seconds>:<random label>`.
    pub username: String,
    /// base64(HMAC-SHA1(shared secret, username)).
    pub credential: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_is_what_coturn_computes_from_its_static_auth_secret() {
        let turn =
            TurnConfig::new(vec!["turn:10.0.0.1:3478?transport=tcp".into()], b"s3cret").unwrap();
        let servers = turn.ice_servers_with_label("ws://10.0.0.1:8080/media", 1_700_000_000, "abc");
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].username, "1700000000:abc");
        // printf '1700000000:abc' | openssl dgst -sha1 -hmac s3cret -binary | base64
        assert_eq!(servers[0].credential, "7fjbb9kXxh7Rto8MZNnWJnSP8uE=");
        assert_eq!(servers[0].urls, ["turn:10.0.0.1:3478?transport=tcp"]);
    }

    #[test]
    fn turn_urls_name_the_host_of_the_node_the_room_is_placed_on() {
        let turn = TurnConfig::new(
            vec![
                "turn:{host}:3478?transport=udp".into(),
                "turns:{node}-turn.media.example:443?transport=tcp".into(),
            ],
            b"k",
        )
        .unwrap();
        let s = turn.ice_servers("wss://i-0abc.media.example/media", 1);
        assert_eq!(
            s[0].urls,
            [
                "turn:i-0abc.media.example:3478?transport=udp",
                "turns:i-0abc-turn.media.example:443?transport=tcp"
            ]
        );
        assert_eq!(node_host("ws://127.0.0.1:8080/media"), "127.0.0.1");
        assert_eq!(node_host("ws://[::1]:8080/media"), "[::1]");
    }

    #[test]
    fn two_answers_get_different_usernames_so_the_turn_log_links_nobody() {
        let turn = TurnConfig::new(vec!["turn:h".into()], b"k").unwrap();
        let a = turn.ice_servers("wss://n/media", 5);
        let b = turn.ice_servers("wss://n/media", 5);
        assert!(a[0].username.starts_with("5:"));
        assert_ne!(a[0].username, b[0].username);
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        assert_eq!(
            TurnConfig::new(vec![], b"k").unwrap_err(),
            TurnConfigError::NoUrls
        );
        assert!(matches!(
            TurnConfig::new(vec!["stun:h:3478".into()], b"k").unwrap_err(),
            TurnConfigError::NotTurn(_)
        ));
        assert_eq!(
            TurnConfig::new(vec!["turn:h".into()], b"").unwrap_err(),
            TurnConfigError::EmptySecret
        );
    }
}
