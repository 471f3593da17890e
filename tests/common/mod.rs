//! What the integration tests share: the portal's state on a private in-memory store, and
//! `aula serve` as a child process (`serve`).
// Each test crate compiles this module and uses only its part of it.
#![allow(dead_code)]

pub mod serve;

use aula::portal::{self, Parts};
use aula_api::crypto::random_bytes;
use aula_api::{ApiConfig, Keys};
use aula_domain::Clock;
use aula_domain::ports::Store;
use aula_domain::services::{Aula, LoginPolicy};
use aula_store::SqliteStore;
use aula_tokens::generate_ed25519_pkcs8;
use std::sync::Arc;

/// The portal's parts for a test: fresh keys, a local public URL, test contacts and no
/// TURN. A test changes what it needs with struct update syntax.
pub fn parts(store: Arc<dyn Store>, store_kind: &'static str, clock: Arc<dyn Clock>) -> Parts {
    Parts {
        store,
        store_kind,
        clock,
        keys: Keys {
            signing_pkcs8: generate_ed25519_pkcs8().expect("key"),
            hash_secret: random_bytes::<32>().expect("secret").to_vec(),
        },
        api: ApiConfig {
            turn: None,
            // Tests read the log right after a request: written before the response.
            log_after_response: false,
            forecast: aula_domain::services::ForecastPolicy::default(),
            public_url: "http://127.0.0.1".into(),
            host_id: "test".into(),
            media_node_url: None,
            processing: aula_api::Processing {
                location: "Testrechner".into(),
                backup_days: Some(7),
            },
            contacts: aula_api::PrivacyContacts {
                supervisory_authority: "Landesbeauftragte für Datenschutz (Test)".into(),
                data_protection_officer: "dsb@ministerium.example".into(),
            },
        },
        policy: LoginPolicy::default(),
    }
}

/// The services as the portal builds them, on a fresh in-memory SQLite store.
pub fn embedded_aula(clock: Arc<dyn Clock>, policy: LoginPolicy) -> Aula {
    let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let parts = Parts {
        policy,
        ..parts(store, "embedded", clock)
    };
    portal::state(&parts).expect("state").aula
}
