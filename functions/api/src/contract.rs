//! The input contract as the OpenAPI document states it: for every request field, path and
//! query parameter the lengths, formats, patterns and ranges the handlers enforce, and the
//! error answers. The numbers come from the domain's own constants, and the tests below
//! hold each schema against the parser it describes, so the document and the code cannot
//! drift apart. A client or a generated test that keeps to these schemas is refused only
//! for what a schema cannot say (a taken email, an unknown id, an invisible name).

use aula_domain::services::{MAX_PAGE, Password};
use aula_domain::{
    AuditReason, ChatBody, FederalState, IdempotencyKey, InviteToken, Nickname, Organisation,
    PersonName, RoomName,
};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, header::HeaderBuilder};

/// The longest email address `Email::parse` accepts (RFC 5321's path limit, in bytes).
const EMAIL_MAX: usize = 254;

/// A one-line name refuses control characters and the text-direction overrides.
const ONE_LINE: &str = r"^[^\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]*$";
/// A chat message may also hold line breaks and tabs.
const MESSAGE: &str = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$";
/// An id: a UUID in its canonical lower-case hyphenated form, the only spelling accepted.
const UUID: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn line(what: &str, max: usize) -> Object {
    string()
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(ONE_LINE))
        .description(Some(format!(
            "{what}: 1 to {max} characters after trimming the ends, not blank; no control or \
             text-direction characters"
        )))
        .build()
}

fn id(what: &str) -> Object {
    string()
        .pattern(Some(format!("^{UUID}$")))
        .min_length(Some(36))
        .max_length(Some(36))
        .description(Some(format!("{what} (a lower-case UUID)")))
        .build()
}

pub fn nickname() -> Object {
    line("the nickname others see", Nickname::MAX_CHARS)
}

pub fn room_name() -> Object {
    line("the room's name", RoomName::MAX_CHARS)
}

pub fn person_name() -> Object {
    line("a first or last name", PersonName::MAX_CHARS)
}

pub fn organisation() -> Object {
    line("a school, institute or authority", Organisation::MAX_CHARS)
}

pub fn reason() -> Object {
    line(
        "why the admin acts, e.g. a case number; written to the audit log",
        AuditReason::MAX_CHARS,
    )
}

pub fn chat_body() -> Object {
    string()
        .min_length(Some(1))
        .max_length(Some(ChatBody::MAX_CHARS))
        .pattern(Some(MESSAGE))
        .description(Some(format!(
            "the message: 1 to {} characters, not blank; line breaks and tabs are kept, other \
             control characters refused",
            ChatBody::MAX_CHARS
        )))
        .build()
}

pub fn email() -> Object {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
        .min_length(Some(3))
        .max_length(Some(EMAIL_MAX))
        .description(Some(
            "an email address (trimmed, compared in lower case): one account per address",
        ))
        .build()
}

pub fn new_password() -> Object {
    string()
        .min_length(Some(Password::MIN_CHARS))
        .max_length(Some(Password::MAX_CHARS))
        .description(Some(format!(
            "a new password: {} to {} characters",
            Password::MIN_CHARS,
            Password::MAX_CHARS
        )))
        .build()
}

pub fn password() -> Object {
    string()
        .min_length(Some(1))
        .max_length(Some(Password::MAX_CHARS))
        .description(Some(format!(
            "the account's password as set (a new one has {} to {} characters)",
            Password::MIN_CHARS,
            Password::MAX_CHARS
        )))
        .build()
}

pub fn federal_state() -> Object {
    string()
        .enum_values(Some(FederalState::ALL.map(FederalState::code)))
        .description(Some(
            "one of the 16 German federal states by ISO 3166-2 code (the short code, e.g. `BY`, \
             and the German name are accepted too); answers always give the ISO code",
        ))
        .build()
}

pub fn moderator_id() -> Object {
    id("an account's id")
}

pub fn room_id() -> Object {
    id("a room's id")
}

pub fn guest_id() -> Object {
    id("a guest's id")
}

pub fn schedule_id() -> Object {
    id("a scheduled meeting's id")
}

pub fn participant() -> Object {
    string()
        .pattern(Some(format!("^[mg]:{UUID}$")))
        .description(Some(
            "a participant: `m:<account id>` for the room's moderator, `g:<guest id>` for a guest",
        ))
        .build()
}

pub fn message_id() -> Object {
    string()
        .pattern(Some("^[0-9]{15}-[0-9a-f]{32}$"))
        .description(Some(
            "a message id: its posting time (15 digits of milliseconds), '-', 32 hex digits",
        ))
        .build()
}

pub fn invite_token() -> Object {
    string()
        .pattern(Some(format!("^[A-Za-z0-9_-]{{{}}}$", InviteToken::LEN)))
        .description(Some("the invite token from the link `/j/<token>`"))
        .build()
}

pub fn idempotency_key() -> Object {
    let (min, max) = (IdempotencyKey::MIN_LEN, IdempotencyKey::MAX_LEN);
    string()
        .pattern(Some(format!("^[A-Za-z0-9_-]{{{min},{max}}}$")))
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(
            "chosen by the client, the same on every retry of one post: letters, digits, '-', '_'",
        ))
        .build()
}

pub fn page_limit() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_PAGE))
        .default(Some(50.into()))
        .description(Some(format!("messages per page, 1 to {MAX_PAGE}")))
        .build()
}

pub fn millis() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some("an instant: milliseconds since the epoch (UTC)"))
        .build()
}

/// The same schema that also admits `null`: an optional body field may be sent as `null`,
/// which means the same as leaving it out.
fn or_null(mut o: Object) -> Object {
    if let SchemaType::Type(t) = o.schema_type {
        o.schema_type = SchemaType::from_iter([t, Type::Null]);
    }
    if let Some(values) = o.enum_values.as_mut() {
        values.push(serde_json::Value::Null);
    }
    o
}

macro_rules! or_null {
    ($($nullable:ident = $schema:ident),* $(,)?) => {
        $(
            pub fn $nullable() -> Object {
                or_null($schema())
            }
        )*
    };
}

or_null!(
    person_name_or_null = person_name,
    email_or_null = email,
    federal_state_or_null = federal_state,
    organisation_or_null = organisation,
    room_name_or_null = room_name,
    participant_or_null = participant,
    moderator_id_or_null = moderator_id,
    room_id_or_null = room_id,
    millis_or_null = millis,
);

/// What every operation of the document has in common, written once here rather than on
/// each handler: its path parameters are required (OpenAPI demands it; utoipa leaves it
/// unset for a parameter whose schema comes from `schema_with`), and after its successes it
/// lists every error answer of the one mapping (`error.rs`), all of the `ErrorBody` shape.
pub fn complete(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::Required;
    use utoipa::openapi::path::ParameterIn;
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            for p in op.parameters.iter_mut().flatten() {
                if p.parameter_in == ParameterIn::Path {
                    p.required = Required::True;
                }
            }
            for (status, refusal) in refusals() {
                op.responses.responses.entry(status).or_insert(refusal);
            }
        }
    }
}

/// The error answers of the API's one mapping (`error.rs`), all of the `ErrorBody` shape.
const REFUSALS: [(u16, &str); 10] = [
    (
        400,
        "`invalid_input` (a field or parameter breaks its rule: `message` says which) or `invalid_json` (not JSON)",
    ),
    (
        401,
        "`unauthenticated` (no valid session or guest grant) or `bad_credentials`",
    ),
    (
        403,
        "`forbidden`, `account_restricted`, `password_change_required` (the session's password was handed over: only `POST /api/me/password`, `GET /api/me`, `GET /api/me/export`, `DELETE /api/me` and logging out are allowed until it is changed), `registration_closed`, `in_lobby` or `denied`",
    ),
    (
        404,
        "`not_found`: no such thing, or not visible to the caller",
    ),
    (409, "`conflict`, e.g. the email already has an account"),
    (413, "`invalid_json`: the body is too large"),
    (
        415,
        "`invalid_json`: the body is not sent as `application/json`",
    ),
    (
        422,
        "`invalid_json`: JSON of the wrong shape (a missing field, a wrong type)",
    ),
    (
        429,
        "`rate_limited`: too many failed attempts; try again after `Retry-After` seconds",
    ),
    (
        503,
        "`unavailable` (the store failed; try again) or `no_capacity` (every media node is full; try again after `Retry-After` seconds)",
    ),
];

fn refusal(description: &str, retry_after: bool) -> Response {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/json", body);
    if retry_after {
        let seconds = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .build();
        response
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(seconds)
                    .description(Some("seconds to wait before trying again"))
                    .build(),
            )
            .build()
    } else {
        response.build()
    }
}

/// Every error answer, by status.
fn refusals() -> impl Iterator<Item = (String, RefOr<Response>)> {
    REFUSALS.iter().map(|&(status, description)| {
        let retry_after = matches!(status, 429 | 503);
        (
            status.to_string(),
            RefOr::T(refusal(description, retry_after)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aula_domain::{Email, GuestId, MessageId, ModeratorId, Participant, RoomId};
    use regex::Regex;

    fn limits(o: &Object) -> (Option<usize>, Option<usize>) {
        (o.min_length, o.max_length)
    }

    fn pattern(o: &Object) -> Regex {
        Regex::new(o.pattern.as_deref().unwrap_or("")).expect("a valid pattern")
    }

    fn matches(o: &Object, s: &str) -> bool {
        pattern(o).is_match(s)
    }

    /// The schema and the parser agree at both ends of the length range.
    fn holds(o: &Object, parse: impl Fn(&str) -> bool) {
        let (min, max) = limits(o);
        let (min, max) = (min.unwrap_or(1), max.expect("a maximum length"));
        let at = |n: usize| "ä".repeat(n);
        assert!(parse(&at(max)) && matches(o, &at(max)), "{max} is allowed");
        assert!(!parse(&at(max + 1)), "{} is refused", max + 1);
        assert!(parse(&at(min)), "{min} is allowed");
        if min > 1 {
            assert!(!parse(&at(min - 1)), "{} is refused", min - 1);
        }
    }

    #[test]
    fn every_documented_text_length_is_the_one_its_parser_enforces() {
        holds(&nickname(), |s| Nickname::parse(s).is_ok());
        holds(&room_name(), |s| RoomName::parse(s).is_ok());
        holds(&person_name(), |s| PersonName::parse(s).is_ok());
        holds(&organisation(), |s| Organisation::parse(s).is_ok());
        holds(&reason(), |s| AuditReason::parse(s).is_ok());
        holds(&chat_body(), |s| ChatBody::parse(s).is_ok());
        holds(&new_password(), |s| Password::new_password(s).is_ok());
    }

    #[test]
    fn what_a_text_pattern_refuses_its_parser_refuses_too() {
        let (name, chat) = (pattern(&nickname()), pattern(&chat_body()));
        let all = (0..0x3000u32)
            .chain(0xFE00..0x10000)
            .filter_map(char::from_u32);
        for c in all {
            let s = format!("a{c}b");
            if !name.is_match(&s) {
                assert!(Nickname::parse(&s).is_err(), "{c:?} is accepted in names");
            }
            if !chat.is_match(&s) {
                assert!(ChatBody::parse(&s).is_err(), "{c:?} is accepted in chat");
            }
        }
        for ok in ["Lena", "Klasse 7b <Mathe> & Co.", "Jürgen Groß"] {
            assert!(matches(&nickname(), ok), "{ok:?} fits the schema");
        }
        assert!(matches(&chat_body(), "Hallo\nzusammen\t!"));
    }

    #[test]
    fn the_longest_documented_email_is_accepted_and_one_more_byte_is_not() {
        let (_, max) = limits(&email());
        // 64 before the @ (the most a local part may have), labels of at most 63.
        let (a, b) = ("a".repeat(64), "b".repeat(63));
        let longest = format!("{a}@{b}.{b}.{}.de", "b".repeat(58));
        assert_eq!(Some(longest.len()), max);
        assert!(Email::parse(&longest).is_ok());
        assert!(Email::parse(&format!("{longest}c")).is_err());
    }

    #[test]
    fn id_token_and_key_patterns_accept_exactly_what_the_parsers_accept() {
        let id = "0b7e4a0c-58a4-4c4f-9d55-2f1c7e0a9b11";
        for schema in [moderator_id(), room_id(), guest_id()] {
            assert!(matches(&schema, id));
            assert!(!matches(&schema, &id.to_uppercase()));
            assert!(!matches(&schema, &id.replace('-', "")));
        }
        assert!(RoomId::parse(id).is_ok() && ModeratorId::parse(id).is_ok());
        assert!(GuestId::parse(id).is_ok());
        for p in [format!("m:{id}"), format!("g:{id}")] {
            assert!(matches(&participant(), &p) && Participant::parse(&p).is_ok());
        }
        assert!(!matches(&participant(), &format!("x:{id}")));
        let message = "001700000000000-0b7e4a0c58a44c4f9d552f1c7e0a9b11";
        assert!(matches(&message_id(), message) && MessageId::parse(message).is_ok());
        assert!(!matches(&message_id(), &message.to_uppercase()));
        let token = InviteToken::from_random([0xfb; 16]);
        assert!(matches(&invite_token(), token.as_str()));
        assert!(!matches(&invite_token(), &format!("{}a", token.as_str())));
        for (key, ok) in [
            ("abcd-123", true),
            ("abcd-12", false),
            (&"k".repeat(64), true),
            (&"k".repeat(65), false),
            ("abcd 1234", false),
        ] {
            assert_eq!(matches(&idempotency_key(), key), ok, "{key}");
            assert_eq!(IdempotencyKey::parse(key).is_ok(), ok, "{key}");
        }
    }

    #[test]
    fn the_federal_states_are_the_sixteen_codes_the_parser_accepts() {
        let codes = federal_state().enum_values.expect("an enum");
        assert_eq!(codes.len(), 16);
        for code in codes {
            let code = code.as_str().expect("a code");
            assert_eq!(FederalState::parse(code).map(FederalState::code), Ok(code));
        }
    }
}
