//! Without self-registration (the default), only admins create accounts.

mod common;

use aula_domain::services::{LoginPolicy, NewModerator, Password, ServiceError};
use aula_domain::*;
use aula_store::SystemClock;
use std::sync::Arc;

#[tokio::test]
async fn nobody_registers_themselves_unless_the_deployment_allows_it() {
    let aula = common::embedded_aula(Arc::new(SystemClock), LoginPolicy::default());
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
