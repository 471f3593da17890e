//! Whatever arrives at the edge, parsing answers with a value or a clear error — never a
//! panic — and what it accepts reads back the same when parsed again.

use aula_domain::*;
use proptest::prelude::*;

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,80}",
        "\\PC{0,5000}",
        "[a-z0-9.+-]{0,20}@[a-z0-9.-]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn text_newtypes_accept_or_refuse_any_input_without_panicking(s in any_text()) {
        if let Ok(v) = Nickname::parse(&s) {
            prop_assert_eq!(Nickname::parse(v.as_str()), Ok(v.clone()));
            prop_assert!(v.as_str().chars().count() <= Nickname::MAX_CHARS);
            prop_assert!(!v.as_str().chars().any(char::is_control));
        }
        if let Ok(v) = RoomName::parse(&s) {
            prop_assert_eq!(RoomName::parse(v.as_str()), Ok(v.clone()));
        }
        if let Ok(v) = PersonName::parse(&s) {
            prop_assert_eq!(PersonName::parse(v.as_str()), Ok(v.clone()));
        }
        if let Ok(v) = Organisation::parse(&s) {
            prop_assert_eq!(Organisation::parse(v.as_str()), Ok(v.clone()));
        }
        if let Ok(v) = ChatBody::parse(&s) {
            prop_assert_eq!(ChatBody::parse(v.as_str()), Ok(v.clone()));
        }
        if let Ok(v) = Email::parse(&s) {
            prop_assert_eq!(Email::parse(v.as_str()), Ok(v.clone()));
            prop_assert_eq!(v.as_str().matches('@').count() >= 1, true);
        }
        let _ = FederalState::parse(&s);
        let _ = IdempotencyKey::parse(&s);
        let _ = ObjectKey::parse(&s);
        let _ = PasswordHash::parse(&s);
    }

    #[test]
    fn ids_and_references_accept_or_refuse_any_input_without_panicking(s in any_text()) {
        if let Ok(id) = RoomId::parse(&s) {
            prop_assert_eq!(id.to_string(), s.clone());
        }
        if let Ok(id) = MessageId::parse(&s) {
            prop_assert_eq!(id.to_string(), s.clone());
        }
        if let Ok(t) = InviteToken::parse(&s) {
            prop_assert_eq!(t.as_str(), s.as_str());
        }
        if let Ok(p) = Participant::parse(&s) {
            prop_assert_eq!(p.to_string(), s.clone());
        }
        if let Ok(c) = Conversation::parse(&s) {
            prop_assert_eq!(c.to_string(), s.clone());
        }
    }

    #[test]
    fn errors_explain_themselves(s in any_text()) {
        if let Err(e) = Nickname::parse(&s) {
            prop_assert!(e.to_string().starts_with("nickname"));
        }
        if let Err(e) = Email::parse(&s) {
            prop_assert!(e.to_string().starts_with("email"));
        }
    }
}
