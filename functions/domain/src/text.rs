//! Text that people type, parsed once at the edge. Limits are counted in characters
//! (Unicode scalar values). HTML is kept as typed: it is data, and the frontend renders it
//! as text, never as markup.

use crate::ParseError;
use serde::{Deserialize, Serialize};
use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// Characters that reorder the text around them (bidirectional embeddings, overrides and
/// isolates): "\u{202E}txt.exe" displays as "exe.txt". Never allowed, not even in chat.
fn reorders_text(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that render as nothing in a name: letters and symbols that are blank by
/// design (Hangul fillers, the blank Braille pattern), the combining grapheme joiner and
/// invisible Khmer vowels, line and paragraph separators.
fn renders_blank(c: char) -> bool {
    matches!(
        c,
        '\u{115F}'
            | '\u{1160}'
            | '\u{3164}'
            | '\u{FFA0}'
            | '\u{2800}'
            | '\u{034F}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

fn is_mark(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Mark
}

/// A joiner (ZWJ, ZWNJ) has a visible effect only between the characters it joins: ZWJ
/// inside emoji sequences (👩‍🚀: after a pictograph, a skin tone or a variation selector,
/// before a pictograph), ZWNJ between letters of scripts that use it (Persian, Indic). Anywhere
/// else it only makes a look-alike of another name.
fn joiner_is_visible(c: char, before: Option<char>, after: Option<char>) -> bool {
    let (Some(b), Some(a)) = (before, after) else {
        return false;
    };
    match c {
        '\u{200D}' => {
            let symbol = |x: char| x.general_category() == GeneralCategory::OtherSymbol;
            (symbol(b) || b == '\u{FE0F}' || ('\u{1F3FB}'..='\u{1F3FF}').contains(&b)) && symbol(a)
        }
        '\u{200C}' => {
            let joining_letter = |x: char| x.is_alphabetic() && x >= '\u{0600}';
            (joining_letter(b) || is_mark(b)) && joining_letter(a)
        }
        _ => false,
    }
}

/// The most combining marks one character may carry ("Zalgo" text stacks dozens to spill
/// over the lines around it); Vietnamese needs two after NFC.
const MAX_MARKS_IN_A_ROW: usize = 4;

/// Normalises a one-line name (NFC, every kind of space becomes one plain space, trimmed)
/// and refuses what would display as something else or as nothing: control and format
/// characters (zero-width spaces, byte-order marks, tag characters, direction marks) except
/// joiners that join, blank letters, combining marks with nothing to combine with.
fn parse_line(field: &'static str, raw: &str, max: usize) -> Result<String, ParseError> {
    let mut s = String::with_capacity(raw.len());
    for c in raw.trim().nfc() {
        if c.general_category() == GeneralCategory::SpaceSeparator {
            if !s.is_empty() && !s.ends_with(' ') {
                s.push(' ');
            }
        } else {
            s.push(c);
        }
    }
    let s = s.trim_end();
    if s.is_empty() {
        return Err(ParseError::Empty { field });
    }
    if s.chars().count() > max {
        return Err(ParseError::TooLong { field, max });
    }
    let chars: Vec<char> = s.chars().collect();
    let mut marks_in_a_row = 0;
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        if c.is_control() {
            return Err(ParseError::ControlCharacter { field });
        }
        let category = c.general_category();
        let format = category == GeneralCategory::Format;
        // Private-use and unassigned code points show as an empty box, or as nothing.
        let undefined = matches!(
            category,
            GeneralCategory::PrivateUse | GeneralCategory::Unassigned
        );
        if reorders_text(c)
            || renders_blank(c)
            || undefined
            || format && !joiner_is_visible(c, before, after)
        {
            return Err(ParseError::Invisible { field });
        }
        if is_mark(c) {
            marks_in_a_row += 1;
            let base = before.filter(|b| *b != ' ');
            if base.is_none() || marks_in_a_row > MAX_MARKS_IN_A_ROW {
                return Err(ParseError::Invisible { field });
            }
        } else {
            marks_in_a_row = 0;
        }
    }
    Ok(s.to_owned())
}

macro_rules! line_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;
            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                parse_line($field, raw, $max).map($name)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, ParseError> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

line_type!(
    /// A guest's self-chosen nickname: the only thing Aula stores about a guest.
    Nickname,
    "nickname",
    32
);
line_type!(
    /// A room's name, e.g. "Klasse 7b Mathe".
    RoomName,
    "room name",
    80
);
line_type!(
    /// A moderator's first or last name.
    PersonName,
    "name",
    100
);
line_type!(
    /// A moderator's organisation: a school, an institute, an authority.
    Organisation,
    "organisation",
    200
);

line_type!(
    /// Why an admin acts on someone's data (written to the audit log), e.g. a case number.
    AuditReason,
    "reason",
    500
);

/// The text of a chat message: up to 4000 characters; line breaks and tabs are allowed,
/// other control characters are not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String))]
pub struct ChatBody(String);

impl ChatBody {
    pub const MAX_CHARS: usize = 4000;
    /// Normalised to NFC; line breaks and tabs are kept, other control characters and
    /// characters that reorder the text are refused, and so is a message that would show
    /// nothing.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        const FIELD: &str = "message";
        let text: String = raw.nfc().collect();
        let shows_something = text.chars().any(|c| {
            !c.is_whitespace()
                && c.general_category() != GeneralCategory::Format
                && !renders_blank(c)
        });
        if !shows_something {
            return Err(ParseError::Empty { field: FIELD });
        }
        if text.chars().count() > Self::MAX_CHARS {
            return Err(ParseError::TooLong {
                field: FIELD,
                max: Self::MAX_CHARS,
            });
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ParseError::ControlCharacter { field: FIELD });
        }
        if text.chars().any(reorders_text) {
            return Err(ParseError::Invisible { field: FIELD });
        }
        Ok(ChatBody(text))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for ChatBody {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}
impl From<ChatBody> for String {
    fn from(v: ChatBody) -> String {
        v.0
    }
}

/// An email address, trimmed and lower-cased so that one address is one account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String))]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        const FIELD: &str = "email";
        let normalised: String = raw.nfc().collect();
        let s = normalised.trim();
        if s.is_empty() {
            return Err(ParseError::Empty { field: FIELD });
        }
        if s.len() > 254 {
            return Err(ParseError::TooLong {
                field: FIELD,
                max: 254,
            });
        }
        let invalid = |reason| ParseError::Invalid {
            field: FIELD,
            reason,
        };
        let (local, domain) = s
            .rsplit_once('@')
            .ok_or(invalid("an email address has an @"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(invalid("the part before the @ is empty or too long"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(invalid("the part before the @ has misplaced dots"));
        }
        let local_ok = local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        if !local_ok {
            return Err(invalid(
                "the part before the @ has characters an address cannot have",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !domain_ok {
            return Err(invalid("the domain after the @ is not valid"));
        }
        Ok(Email(s.to_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for Email {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}
impl From<Email> for String {
    fn from(v: Email) -> String {
        v.0
    }
}

/// One of Germany's 16 federal states (Bundesländer), by ISO 3166-2 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FederalState {
    BadenWuerttemberg,
    Bayern,
    Berlin,
    Brandenburg,
    Bremen,
    Hamburg,
    Hessen,
    MecklenburgVorpommern,
    Niedersachsen,
    NordrheinWestfalen,
    RheinlandPfalz,
    Saarland,
    Sachsen,
    SachsenAnhalt,
    SchleswigHolstein,
    Thueringen,
}

impl FederalState {
    pub const ALL: [FederalState; 16] = [
        Self::BadenWuerttemberg,
        Self::Bayern,
        Self::Berlin,
        Self::Brandenburg,
        Self::Bremen,
        Self::Hamburg,
        Self::Hessen,
        Self::MecklenburgVorpommern,
        Self::Niedersachsen,
        Self::NordrheinWestfalen,
        Self::RheinlandPfalz,
        Self::Saarland,
        Self::Sachsen,
        Self::SachsenAnhalt,
        Self::SchleswigHolstein,
        Self::Thueringen,
    ];

    /// The ISO 3166-2 code, e.g. `DE-BY`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::BadenWuerttemberg => "DE-BW",
            Self::Bayern => "DE-BY",
            Self::Berlin => "DE-BE",
            Self::Brandenburg => "DE-BB",
            Self::Bremen => "DE-HB",
            Self::Hamburg => "DE-HH",
            Self::Hessen => "DE-HE",
            Self::MecklenburgVorpommern => "DE-MV",
            Self::Niedersachsen => "DE-NI",
            Self::NordrheinWestfalen => "DE-NW",
            Self::RheinlandPfalz => "DE-RP",
            Self::Saarland => "DE-SL",
            Self::Sachsen => "DE-SN",
            Self::SachsenAnhalt => "DE-ST",
            Self::SchleswigHolstein => "DE-SH",
            Self::Thueringen => "DE-TH",
        }
    }

    /// The German name, as the frontend shows it.
    pub const fn name_de(self) -> &'static str {
        match self {
            Self::BadenWuerttemberg => "Baden-Württemberg",
            Self::Bayern => "Bayern",
            Self::Berlin => "Berlin",
            Self::Brandenburg => "Brandenburg",
            Self::Bremen => "Bremen",
            Self::Hamburg => "Hamburg",
            Self::Hessen => "Hessen",
            Self::MecklenburgVorpommern => "Mecklenburg-Vorpommern",
            Self::Niedersachsen => "Niedersachsen",
            Self::NordrheinWestfalen => "Nordrhein-Westfalen",
            Self::RheinlandPfalz => "Rheinland-Pfalz",
            Self::Saarland => "Saarland",
            Self::Sachsen => "Sachsen",
            Self::SachsenAnhalt => "Sachsen-Anhalt",
            Self::SchleswigHolstein => "Schleswig-Holstein",
            Self::Thueringen => "Thüringen",
        }
    }

    /// Accepts the ISO code (`DE-BY`), the short code (`BY`) or the German name.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        Self::ALL
            .into_iter()
            .find(|st| {
                st.code().eq_ignore_ascii_case(s)
                    || st.code()[3..].eq_ignore_ascii_case(s)
                    || st.name_de().to_lowercase() == s.to_lowercase()
            })
            .ok_or(ParseError::Invalid {
                field: "federal state",
                reason: "not one of the 16 German federal states",
            })
    }
}
impl TryFrom<String> for FederalState {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}
impl From<FederalState> for String {
    fn from(v: FederalState) -> String {
        v.code().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nickname_is_trimmed_and_keeps_html_as_plain_text() {
        assert_eq!(
            Nickname::parse("  Lena  ").map(String::from),
            Ok("Lena".into())
        );
        let html = Nickname::parse("<b>Max</b>").map(String::from);
        assert_eq!(html, Ok("<b>Max</b>".into()));
    }

    #[test]
    fn a_nickname_refuses_empty_long_and_control_or_bidi_characters() {
        assert_eq!(
            Nickname::parse("   "),
            Err(ParseError::Empty { field: "nickname" })
        );
        assert!(matches!(
            Nickname::parse(&"ä".repeat(33)),
            Err(ParseError::TooLong { .. })
        ));
        assert!(Nickname::parse(&"ä".repeat(32)).is_ok());
        for bad in ["Lena\u{0}", "Le\nna", "Lena\u{7}"] {
            assert!(
                matches!(
                    Nickname::parse(bad),
                    Err(ParseError::ControlCharacter { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn names_that_would_show_blank_look_alike_or_reversed_are_refused() {
        let invisible = [
            "abc\u{202E}fdp.exe", // right-to-left override
            "\u{061C}Lena",       // Arabic letter mark
            "Le\u{200B}na",       // zero-width space
            "Le\u{200D}na",       // zero-width joiner between letters
            "\u{FEFF}Lena",       // byte-order mark
            "Lena\u{2028}Marie",  // line separator inside
            "Le\u{2029}na",       // paragraph separator
            "Lena\u{E0041}",      // tag character
            "\u{3164}",           // Hangul filler: blank
            "\u{3164}\u{3164}",
            "\u{2800}",     // blank Braille pattern
            "\u{0301}Lena", // a combining mark with nothing to combine with
            "Lena \u{0301}",
            "Z\u{0300}\u{0301}\u{0302}\u{0303}\u{0304}", // five stacked marks
            "Le\u{00AD}na",                              // soft hyphen
            "\u{E000}",                                  // private use: a box or nothing
        ];
        for bad in invisible {
            assert_eq!(
                Nickname::parse(bad),
                Err(ParseError::Invisible { field: "nickname" }),
                "{bad:?}"
            );
        }
        assert!(matches!(
            ChatBody::parse("Siehe datei \u{202E}fdp.exe"),
            Err(ParseError::Invisible { .. })
        ));
        assert!(matches!(
            ChatBody::parse("\u{200B}\u{FEFF} \u{3164}"),
            Err(ParseError::Empty { .. })
        ));
    }

    #[test]
    fn names_are_normalised_so_one_name_has_one_spelling() {
        // "é" typed as e + combining acute is stored as the one character é (NFC).
        assert_eq!(
            Nickname::parse("Rene\u{0301}").map(String::from),
            Ok("René".into())
        );
        // Every kind of space is one plain space; runs collapse.
        assert_eq!(
            PersonName::parse("Anna\u{00A0}\u{2003} Lena").map(String::from),
            Ok("Anna Lena".into())
        );
        assert_eq!(
            Email::parse("Rene\u{0301}@schule.example").map(String::from),
            Ok("rené@schule.example".into())
        );
    }

    #[test]
    fn names_in_every_script_and_with_emoji_are_welcome() {
        for good in [
            "Zoë",
            "Łukasz",
            "Ayşe",
            "Nguyễn Thị Minh Khai",
            "Мария",
            "محمد",
            "שרה",
            "می\u{200C}خواهم", // Persian with a zero-width non-joiner between letters
            "李小龍",
            "अनुष्का",
            "🦊 Fuchs",
            "👩\u{200D}🚀 Astronautin",
            "🏃\u{200D}♀\u{FE0F}",
            "❤\u{FE0F} Mia",
            "O'Brien-Smith",
        ] {
            let parsed = Nickname::parse(good);
            assert!(parsed.is_ok(), "{good:?}: {parsed:?}");
        }
    }

    #[test]
    fn room_names_person_names_and_organisations_have_limits() {
        assert!(RoomName::parse("Klasse 7b Mathe").is_ok());
        assert!(RoomName::parse(&"x".repeat(81)).is_err());
        assert!(PersonName::parse("").is_err());
        assert!(Organisation::parse("Gymnasium am Rosenberg").is_ok());
        assert!(Organisation::parse(&"o".repeat(201)).is_err());
    }

    #[test]
    fn chat_bodies_keep_line_breaks_but_refuse_other_control_characters() {
        assert!(ChatBody::parse("Hallo\nzusammen\t!").is_ok());
        assert!(ChatBody::parse("\n \n").is_err());
        assert!(ChatBody::parse("bell\u{7}").is_err());
        assert!(ChatBody::parse(&"x".repeat(4001)).is_err());
    }

    #[test]
    fn emails_are_normalised_and_bad_ones_refused_with_a_reason() {
        assert_eq!(
            Email::parse(" Anna.Schmidt@Schule.Bayern.DE ").map(String::from),
            Ok("anna.schmidt@schule.bayern.de".into())
        );
        for bad in [
            "",
            "anna",
            "@schule.de",
            "anna@",
            "anna@schule",
            "an na@schule.de",
            "anna..s@schule.de",
            "anna@-schule.de",
            "anna@schule..de",
            "anna@schu\u{0}le.de",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Email::parse(&format!("{}@x.de", "a".repeat(300))).is_err());
    }

    #[test]
    fn federal_states_parse_from_code_short_code_or_german_name() {
        assert_eq!(FederalState::parse("DE-BY"), Ok(FederalState::Bayern));
        assert_eq!(
            FederalState::parse("nw"),
            Ok(FederalState::NordrheinWestfalen)
        );
        assert_eq!(
            FederalState::parse("Thüringen"),
            Ok(FederalState::Thueringen)
        );
        assert!(FederalState::parse("Tirol").is_err());
        assert!(FederalState::parse("").is_err());
        let codes: std::collections::HashSet<_> =
            FederalState::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes.len(), 16);
    }
}
