//! Without self-registration (the default), only admins create accounts.

use aula::portal::{self, Keys, Parts};
use aula_api::ApiConfig;
use aula_api::crypto::{generate_ed25519_pkcs8, random_bytes};
use aula_domain::services::{LoginPolicy, NewModerator, Password, ServiceError};
use aula_domain::*;
use aula_store::{SqliteStore, SystemClock};
use std::sync::Arc;

#[tokio::test]
async fn nobody_registers_themselves_unless_the_deployment_allows_it() {
    let parts = Parts {
        store: Arc::new(SqliteStore::open_in_memory().expect("store")),
        store_kind: "embedded",
        clock: Arc::new(SystemClock),
        keys: Keys {
            signing_pkcs8: generate_ed25519_pkcs8().expect("key"),
            hash_secret: random_bytes::<32>().expect("secret").to_vec(),
        },
        api: ApiConfig {
            public_url: "http://127.0.0.1".into(),
            host_id: "test".into(),
            media_node_url: None,
        },
        policy: LoginPolicy::default(),
    };
    let aula = portal::state(&parts).expect("state").aula;
    let input = NewModerator {
        last_name: PersonName::parse("Yilmaz").expect("name"),
        first_name: PersonName::parse("Deniz").expect("name"),
        email: Email::parse("deniz@schule.example.de").expect("email"),
        federal_state: FederalState::NordrheinWestfalen,
        organisation: Organisation::parse("Gesamtschule Ost").expect("organisation"),
    };
    let password = Password::new_password("lang-genug-und-geheim").expect("password");
    let refused = aula.register(input, &password).await;
    assert!(
        matches!(refused, Err(ServiceError::RegistrationClosed)),
        "{refused:?}"
    );
    let stored = aula.store.list_moderators().await.expect("list");
    assert!(stored.is_empty(), "nothing was stored");
}
