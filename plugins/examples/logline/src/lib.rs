//! Log lines: each line (LF or CRLF) is matched against a configurable regular expression; its
//! named groups are the columns. Blank lines are skipped; a line that does not match, or whose
//! group does not convert to its configured kind, is rejected (dead-lettered) with the reason.
//! Stateless: it resumes after any line.
//!
//! Config (`[[plugins]] config`): `pattern` (required; named groups `(?P<name>…)` become columns
//! in order), `kinds` (optional: group name → `integer` | `float` | `text`, default `text`).

use std::collections::BTreeMap;

use regex::bytes::Regex;
use serde::Deserialize;
use vecdrop_plugin_sdk::{Column, ColumnKind, FormatInfo, Plugin, PluginInfo, Step, Value};

/// A line longer than this fails the file (bounded memory).
const MAX_LINE_BYTES: usize = 16 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    pattern: String,
    #[serde(default)]
    kinds: BTreeMap<String, Kind>,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Text,
    Integer,
    Float,
}

/// The parser of one file.
pub struct LogLines {
    pattern: Regex,
    columns: Vec<(String, Kind)>,
}

impl Plugin for LogLines {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "log-lines".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            formats: vec![FormatInfo { name: "logline".to_owned(), extensions: vec!["log".to_owned()] }],
        }
    }

    fn open(_format: &str, config: &str, _state: Option<&[u8]>) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|error| format!("config: {error}"))?;
        let pattern = Regex::new(&config.pattern).map_err(|error| format!("config: pattern: {error}"))?;
        let columns: Vec<(String, Kind)> = pattern
            .capture_names()
            .flatten()
            .map(|name| (name.to_owned(), config.kinds.get(name).copied().unwrap_or(Kind::Text)))
            .collect();
        if columns.is_empty() {
            return Err("config: pattern has no named group (?P<name>…)".to_owned());
        }
        if let Some(unknown) = config.kinds.keys().find(|name| !columns.iter().any(|(column, _)| column == *name)) {
            return Err(format!("config: kinds names {unknown:?}, which is not a group of the pattern"));
        }
        Ok(Self { pattern, columns })
    }

    fn schema(&self) -> Vec<Column> {
        let kind = |kind: Kind| match kind {
            Kind::Text => ColumnKind::Text,
            Kind::Integer => ColumnKind::Integer,
            Kind::Float => ColumnKind::Float,
        };
        self.columns.iter().map(|(name, column_kind)| Column { name: name.clone(), kind: kind(*column_kind) }).collect()
    }

    fn step(&mut self, input: &[u8], eof: bool) -> Result<Step, String> {
        let (line, len) = match input.iter().position(|&b| b == b'\n') {
            Some(newline) => (&input[..newline], newline + 1),
            None if eof => (input, input.len()),
            None if input.len() > MAX_LINE_BYTES => return Err(format!("a line is longer than {} MiB", MAX_LINE_BYTES >> 20)),
            None => return Ok(Step::NeedInput),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Step::Skip(len));
        }
        Ok(Step::Record { len, fields: self.values(line) })
    }
}

impl LogLines {
    fn values(&self, line: &[u8]) -> Result<Vec<Value>, String> {
        let captures = self.pattern.captures(line).ok_or("the line does not match the pattern")?;
        self.columns
            .iter()
            .map(|(name, kind)| {
                let Some(matched) = captures.name(name) else { return Ok(Value::Null) };
                let text = std::str::from_utf8(matched.as_bytes()).map_err(|_| format!("{name}: not UTF-8"))?;
                match kind {
                    Kind::Text => Ok(Value::Text(text.to_owned())),
                    Kind::Integer => {
                        text.trim().parse().map(Value::Integer).map_err(|_| format!("{name}: expected an integer, found {text:?}"))
                    }
                    Kind::Float => text.trim().parse().map(Value::Float).map_err(|_| format!("{name}: expected a number, found {text:?}")),
                }
            })
            .collect()
    }
}

vecdrop_plugin_sdk::export_plugin!(LogLines);

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> LogLines {
        let config = r#"{"pattern": "^(?P<level>[A-Z]+) (?P<code>\\d+) (?P<text>.*)$", "kinds": {"code": "integer"}}"#;
        LogLines::open("logline", config, None).unwrap()
    }

    #[test]
    fn a_line_becomes_typed_values() {
        let step = parser().step(b"WARN 42 disk almost full\r\nnext", false).unwrap();
        let expected = vec![Value::Text("WARN".into()), Value::Integer(42), Value::Text("disk almost full".into())];
        assert_eq!(step, Step::Record { len: 26, fields: Ok(expected) });
    }

    #[test]
    fn partial_lines_wait_unless_the_file_ends() {
        assert_eq!(parser().step(b"INFO 1 no newline", false).unwrap(), Step::NeedInput);
        assert!(matches!(parser().step(b"INFO 1 no newline", true).unwrap(), Step::Record { len: 17, fields: Ok(_) }));
    }

    #[test]
    fn a_line_that_does_not_match_is_rejected_and_blank_lines_skipped() {
        let Step::Record { fields, .. } = parser().step(b"garbage\n", false).unwrap() else { panic!() };
        assert_eq!(fields.unwrap_err(), "the line does not match the pattern");
        assert_eq!(parser().step(b"  \n", false).unwrap(), Step::Skip(3));
    }
}
