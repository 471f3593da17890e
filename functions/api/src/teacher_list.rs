//! A list of teachers as a school's spreadsheet exports it (CSV), parsed line by line into
//! accounts to create, each line's problem named so the admin can fix just that line.

use crate::types::ImportProblem;
use aula_domain::services::NewModerator;
use aula_domain::*;

/// The most teachers one upload may hold: each costs an Argon2id hash (tens of ms), and
/// the request must finish within API Gateway's 29 s.
pub const MAX_TEACHERS: usize = 200;

/// One line of the list, parsed or with what is wrong with it.
pub struct ListLine {
    pub line: u64,
    pub email: Option<String>,
    pub parsed: Result<NewModerator, (ImportProblem, String)>,
}

/// Parses the list. Spreadsheets in Germany export with `;` (the comma is the decimal
/// separator), others with `,`: the first line decides. A first line naming the columns is
/// skipped. Too many lines, or text the CSV reader cannot read at all, refuse the whole
/// list (a `ParseError` naming it).
pub fn parse(text: &str) -> Result<Vec<ListLine>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.lines().next().unwrap_or("");
    let delimiter = if first.matches(';').count() >= first.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|_| ParseError::Invalid {
            field: "the list",
            reason: "not readable as CSV (a quote is not closed?)",
        })?;
        // The line the record starts on, counted from its byte offset (a quoted field may
        // span lines). After a CRLF the offset can point at the line break before the
        // record, so the breaks right there count too.
        let bytes = text.as_bytes();
        let mut start = record
            .position()
            .map_or(0, |p| p.byte() as usize)
            .min(bytes.len());
        while start < bytes.len() && matches!(bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        let line = 1 + bytes[..start].iter().filter(|&&b| b == b'\n').count() as u64;
        let fields: Vec<&str> = record.iter().collect();
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        if i == 0 && is_header(&fields) {
            continue;
        }
        if out.len() == MAX_TEACHERS {
            return Err(ParseError::Invalid {
                field: "the list",
                reason: "at most 200 teachers per upload",
            });
        }
        out.push(ListLine {
            line,
            email: fields.get(2).map(|e| e.to_string()),
            parsed: teacher(&fields),
        });
    }
    Ok(out)
}

fn is_header(fields: &[&str]) -> bool {
    let first = fields.first().map(|f| f.to_lowercase()).unwrap_or_default();
    let email = fields.get(2).map(|f| f.to_lowercase()).unwrap_or_default();
    ["nachname", "name", "familienname", "last name", "last_name"].contains(&first.as_str())
        || (email.contains("mail") && !email.contains('@'))
}

fn teacher(fields: &[&str]) -> Result<NewModerator, (ImportProblem, String)> {
    let [last, first, email, state, organisation] = fields else {
        return Err((
            ImportProblem::Columns,
            format!("{} fields instead of 5", fields.len()),
        ));
    };
    let at = |problem| move |e: ParseError| (problem, e.to_string());
    Ok(NewModerator {
        last_name: PersonName::parse(last).map_err(at(ImportProblem::LastName))?,
        first_name: PersonName::parse(first).map_err(at(ImportProblem::FirstName))?,
        email: Email::parse(email).map_err(at(ImportProblem::Email))?,
        federal_state: FederalState::parse(state).map_err(at(ImportProblem::FederalState))?,
        organisation: Organisation::parse(organisation).map_err(at(ImportProblem::Organisation))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(u64, Option<ImportProblem>)> {
        parse(text)
            .expect("a readable list")
            .into_iter()
            .map(|l| (l.line, l.parsed.err().map(|(p, _)| p)))
            .collect()
    }

    #[test]
    fn a_spreadsheet_export_with_semicolons_and_a_header_gives_one_teacher_per_line() {
        let list = "\u{feff}Nachname;Vorname;E-Mail;Bundesland;Schule\r\n\
                    Meier;Anna;anna.meier@schule.de;Bayern;Gymnasium Nord\r\n\
                    \"Schulz, Dr.\";Jörg;j.schulz@schule.de;DE-BE;\"Schule \"\"Am Park\"\"\"\r\n";
        let lines = parse(list).expect("readable");
        assert_eq!(lines.len(), 2);
        let second = lines[1].parsed.as_ref().expect("valid");
        assert_eq!(second.last_name.as_str(), "Schulz, Dr.");
        assert_eq!(second.organisation.as_str(), "Schule \"Am Park\"");
        assert_eq!(second.federal_state, FederalState::Berlin);
        assert_eq!(lines[1].line, 3);
    }

    #[test]
    fn each_bad_line_names_its_line_and_what_is_wrong_and_the_others_are_kept() {
        let list = "Meier,Anna,anna@schule.de,BY,Gymnasium\n\
                    Kurz,Ben,keine-adresse,BY,Gymnasium\n\
                    Lang,Eva,eva@schule.de,Atlantis,Gymnasium\n\
                    Nur,drei,felder\n\
                    Roth,Tim,tim@schule.de,Hessen,Realschule\n";
        assert_eq!(
            problems(list),
            [
                (1, None),
                (2, Some(ImportProblem::Email)),
                (3, Some(ImportProblem::FederalState)),
                (4, Some(ImportProblem::Columns)),
                (5, None),
            ]
        );
    }

    #[test]
    fn a_list_of_more_than_200_teachers_is_refused_as_a_whole() {
        let line = "Meier;Anna;anna@schule.de;BY;Gymnasium\n";
        assert_eq!(parse(&line.repeat(MAX_TEACHERS)).map(|l| l.len()), Ok(200));
        assert!(parse(&line.repeat(MAX_TEACHERS + 1)).is_err());
    }
}
