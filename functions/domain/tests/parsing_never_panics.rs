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

/// Bidirectional embeddings, overrides and isolates.
fn reorders(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// At least one letter, digit, punctuation mark or symbol (Unicode's categories L, N, P, S)
/// that is not blank by design.
fn shows_something(s: &str) -> bool {
    use unicode_properties::{GeneralCategoryGroup as G, UnicodeGeneralCategory};
    s.chars().any(|c| {
        matches!(
            c.general_category_group(),
            G::Letter | G::Number | G::Punctuation | G::Symbol
        ) && !matches!(
            c,
            '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}'
        )
    })
}

/// Characters that hide or reorder text, as an attacker would mix them into a name.
fn hiding_char() -> impl Strategy<Value = char> {
    prop::sample::select(vec![
        '\u{061C}',
        '\u{200B}',
        '\u{200D}',
        '\u{200E}',
        '\u{200F}',
        '\u{202A}',
        '\u{202E}',
        '\u{2066}',
        '\u{2069}',
        '\u{FEFF}',
        '\u{2028}',
        '\u{2029}',
        '\u{E0041}',
        '\u{E007F}',
        '\u{3164}',
        '\u{2800}',
        '\u{115F}',
        '\u{00AD}',
        '\u{2060}',
        '\u{180E}',
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_name_with_a_hidden_or_reordering_character_is_refused(
        name in "[A-Za-zäöüß]{1,12}( [A-Za-zäöüß]{1,12})?",
        hidden in hiding_char(),
        at in 0usize..30,
    ) {
        let chars: Vec<char> = name.chars().collect();
        let at = at % (chars.len() + 1);
        let mut with: String = chars[..at].iter().collect();
        with.push(hidden);
        with.extend(&chars[at..]);
        // Refused — or, for a separator at either end, trimmed away like any space.
        let accepted = [
            Nickname::parse(&with).map(String::from),
            PersonName::parse(&with).map(String::from),
            RoomName::parse(&with).map(String::from),
        ];
        for v in accepted.into_iter().flatten() {
            prop_assert_eq!(&v, &name, "{:?} was accepted", with);
        }
        prop_assert!(Nickname::parse(&name).is_ok());
    }

    #[test]
    fn a_name_is_stored_in_one_normal_form_whatever_way_it_was_typed(s in "\\PC{1,40}") {
        if let Ok(v) = PersonName::parse(&s) {
            let nfc: String = unicode_normalization::UnicodeNormalization::nfc(v.as_str()).collect();
            prop_assert_eq!(v.as_str(), nfc.as_str());
            prop_assert!(!v.as_str().contains("  "));
            prop_assert_eq!(v.as_str().trim(), v.as_str());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn text_newtypes_accept_or_refuse_any_input_without_panicking(s in any_text()) {
        if let Ok(v) = Nickname::parse(&s) {
            prop_assert_eq!(Nickname::parse(v.as_str()), Ok(v.clone()));
            prop_assert!(v.as_str().chars().count() <= Nickname::MAX_CHARS);
            prop_assert!(!v.as_str().chars().any(char::is_control));
            prop_assert!(shows_something(v.as_str()), "{:?} shows nothing", v.as_str());
            prop_assert!(!v.as_str().chars().any(reorders), "{:?} reorders text", v.as_str());
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
