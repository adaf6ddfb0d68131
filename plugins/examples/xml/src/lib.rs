//! XML records: every `<record>` element (name configurable) becomes a row; its attributes and
//! child elements whose names are in `fields` become the row's values (text, entities decoded,
//! CDATA kept as is). Everything between records — the XML declaration, the root element,
//! comments, whitespace — is skipped, so the parser is stateless and resumes after any record.
//!
//! Config (`[[plugins]] config`): `record` (default `"record"`), `fields` (required: the column
//! names, in order), `vectors` (optional: fields among `fields` that hold float vectors, written
//! `[0.1, 0.2]` or `0.1 0.2`; they become vector values, so such rows skip the embedding model).
//! A field missing from a record is null; a record with a nested element in a field, a bad entity
//! or a vector that is not a list of numbers is rejected (dead-lettered) with the reason.

use serde::Deserialize;
use vecdrop_plugin_sdk::{Column, ColumnKind, FormatInfo, Plugin, PluginInfo, Step, Value};

/// A record longer than this fails the file (an unclosed element would buffer it all).
const MAX_RECORD_BYTES: usize = 16 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_record")]
    record: String,
    fields: Vec<String>,
    #[serde(default)]
    vectors: Vec<String>,
}

fn default_record() -> String {
    "record".to_owned()
}

/// The parser of one file.
pub struct XmlRecords {
    open_tag: Vec<u8>,
    close_tag: Vec<u8>,
    fields: Vec<String>,
    /// Per field: whether it holds a vector.
    is_vector: Vec<bool>,
}

impl Plugin for XmlRecords {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "xml-records".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            formats: vec![FormatInfo { name: "xml".to_owned(), extensions: vec!["xml".to_owned()] }],
        }
    }

    fn open(_format: &str, config: &str, _state: Option<&[u8]>) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|error| format!("config: {error}"))?;
        if config.fields.is_empty() {
            return Err("config: fields must name at least one column".to_owned());
        }
        let valid_name = |name: &str| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if let Some(bad) = std::iter::once(&config.record).chain(&config.fields).find(|name| !valid_name(name)) {
            return Err(format!("config: {bad:?} is not an XML name"));
        }
        if let Some(unknown) = config.vectors.iter().find(|name| !config.fields.contains(name)) {
            return Err(format!("config: vectors names {unknown:?}, which is not in fields"));
        }
        Ok(Self {
            open_tag: format!("<{}", config.record).into_bytes(),
            close_tag: format!("</{}>", config.record).into_bytes(),
            is_vector: config.fields.iter().map(|name| config.vectors.contains(name)).collect(),
            fields: config.fields,
        })
    }

    fn schema(&self) -> Vec<Column> {
        let kind = |is_vector: bool| if is_vector { ColumnKind::Vector } else { ColumnKind::Text };
        self.fields.iter().zip(&self.is_vector).map(|(name, is_vector)| Column { name: name.clone(), kind: kind(*is_vector) }).collect()
    }

    fn step(&mut self, input: &[u8], eof: bool) -> Result<Step, String> {
        if input[0] != b'<' {
            let text = input.iter().position(|&b| b == b'<').unwrap_or(input.len());
            return Ok(Step::Skip(text));
        }
        if input.starts_with(b"<!--") {
            return Ok(match find(input, b"-->") {
                Some(at) => Step::Skip(at + 3),
                None => Step::NeedInput,
            });
        }
        match self.starts_record(input) {
            None if !eof => Ok(Step::NeedInput),
            None | Some(false) => Ok(match find(input, b">") {
                Some(at) => Step::Skip(at + 1),
                None => Step::NeedInput,
            }),
            Some(true) => self.record(input),
        }
    }
}

impl XmlRecords {
    /// Whether `input` starts with the record's open tag; `None` when too short to tell.
    fn starts_record(&self, input: &[u8]) -> Option<bool> {
        let after = *input.get(self.open_tag.len())?;
        Some(input.starts_with(&self.open_tag) && (after == b'>' || after == b'/' || after.is_ascii_whitespace()))
    }

    fn record(&self, input: &[u8]) -> Result<Step, String> {
        let Some(tag_end) = find(input, b">") else { return self.need_more(input) };
        let attributes = &input[self.open_tag.len()..tag_end];
        if attributes.ends_with(b"/") {
            let values = self.values(&attributes[..attributes.len() - 1], b"");
            return Ok(Step::Record { len: tag_end + 1, fields: values });
        }
        let Some(close) = find(&input[tag_end..], &self.close_tag) else { return self.need_more(input) };
        let body = &input[tag_end + 1..tag_end + close];
        let len = tag_end + close + self.close_tag.len();
        Ok(Step::Record { len, fields: self.values(attributes, body) })
    }

    fn need_more(&self, input: &[u8]) -> Result<Step, String> {
        if input.len() > MAX_RECORD_BYTES {
            return Err(format!("a <{}> element is longer than {} MiB (not closed?)", self.record_name(), MAX_RECORD_BYTES >> 20));
        }
        Ok(Step::NeedInput)
    }

    fn record_name(&self) -> &str {
        std::str::from_utf8(&self.open_tag[1..]).unwrap_or("record")
    }

    /// The row's values: attributes of the record element, then child elements (which win).
    fn values(&self, attributes: &[u8], body: &[u8]) -> Result<Vec<Value>, String> {
        let mut values = vec![Value::Null; self.fields.len()];
        for (name, raw) in parse_attributes(attributes)?.into_iter().chain(parse_children(body)?) {
            if let Some(index) = self.fields.iter().position(|field| field == name) {
                let text = decode_text(raw)?;
                values[index] = if self.is_vector[index] { vector(name, &text)? } else { Value::Text(text) };
            }
        }
        Ok(values)
    }
}

/// `name="value"` pairs of a start tag (after its name).
fn parse_attributes(mut text: &[u8]) -> Result<Vec<(&str, &[u8])>, String> {
    let mut pairs = Vec::new();
    loop {
        text = trim_start(text);
        if text.is_empty() {
            return Ok(pairs);
        }
        let equals = text.iter().position(|&b| b == b'=').ok_or("an attribute without a value")?;
        let name = utf8(trim_end(&text[..equals]))?;
        let rest = trim_start(&text[equals + 1..]);
        let quote = *rest.first().ok_or("an attribute without a value")?;
        if quote != b'"' && quote != b'\'' {
            return Err(format!("attribute {name} is not quoted"));
        }
        let close = rest[1..].iter().position(|&b| b == quote).ok_or_else(|| format!("attribute {name} is not closed"))?;
        pairs.push((name, &rest[1..1 + close]));
        text = &rest[close + 2..];
    }
}

/// `(name, content)` of each child element of a record's body.
fn parse_children(mut body: &[u8]) -> Result<Vec<(&str, &[u8])>, String> {
    let mut children = Vec::new();
    loop {
        body = trim_start(body);
        if body.is_empty() {
            return Ok(children);
        }
        if body.starts_with(b"<!--") {
            let end = find(body, b"-->").ok_or("a comment is not closed")?;
            body = &body[end + 3..];
            continue;
        }
        if body[0] != b'<' {
            return Err("text outside of a field element".to_owned());
        }
        let tag_end = find(body, b">").ok_or("a tag is not closed")?;
        let tag = &body[1..tag_end];
        let name_end = tag.iter().position(|b| b.is_ascii_whitespace() || *b == b'/').unwrap_or(tag.len());
        let name = utf8(&tag[..name_end])?;
        if tag.ends_with(b"/") {
            children.push((name, &b""[..]));
            body = &body[tag_end + 1..];
            continue;
        }
        let close_tag = format!("</{name}>");
        let content_end = find(&body[tag_end..], close_tag.as_bytes()).ok_or_else(|| format!("element <{name}> is not closed"))?;
        children.push((name, &body[tag_end + 1..tag_end + content_end]));
        body = &body[tag_end + content_end + close_tag.len()..];
    }
}

/// Element or attribute text with entities decoded and CDATA sections kept verbatim.
fn decode_text(raw: &[u8]) -> Result<String, String> {
    let text = utf8(raw)?;
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<']) {
        decoded.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            let end = cdata.find("]]>").ok_or("a CDATA section is not closed")?;
            decoded.push_str(&cdata[..end]);
            rest = &cdata[end + 3..];
        } else if rest.starts_with('<') {
            return Err("a field holds a nested element".to_owned());
        } else {
            let end = rest.find(';').ok_or("an entity without ';'")?;
            decoded.push(entity(&rest[1..end])?);
            rest = &rest[end + 1..];
        }
    }
    decoded.push_str(rest);
    Ok(decoded)
}

/// `[0.1, 0.2]` or `0.1 0.2` as a vector; empty text is null.
fn vector(name: &str, text: &str) -> Result<Value, String> {
    let numbers = text.trim().trim_start_matches('[').trim_end_matches(']');
    if numbers.trim().is_empty() {
        return Ok(Value::Null);
    }
    let parsed: Result<Vec<f32>, _> =
        numbers.split(|c: char| c == ',' || c.is_whitespace()).filter(|part| !part.is_empty()).map(str::parse).collect();
    parsed.map(Value::Vector).map_err(|_| format!("{name}: expected a list of numbers"))
}

fn entity(name: &str) -> Result<char, String> {
    let code = match name {
        "amp" => return Ok('&'),
        "lt" => return Ok('<'),
        "gt" => return Ok('>'),
        "quot" => return Ok('"'),
        "apos" => return Ok('\''),
        _ if name.starts_with("#x") => u32::from_str_radix(&name[2..], 16).ok(),
        _ if name.starts_with('#') => name[1..].parse().ok(),
        _ => None,
    };
    code.and_then(char::from_u32).ok_or_else(|| format!("unknown entity &{name};"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|error| format!("invalid UTF-8 at byte {} of a value", error.valid_up_to()))
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    &bytes[start..]
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |at| at + 1);
    &bytes[..end]
}

vecdrop_plugin_sdk::export_plugin!(XmlRecords);

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> XmlRecords {
        XmlRecords::open("xml", r#"{"fields": ["id", "text"]}"#, None).unwrap()
    }

    #[test]
    fn a_record_with_attributes_children_entities_and_cdata() {
        let input = br#"<record id="7"><text>a &amp; b <![CDATA[<raw>]]></text><other>x</other></record> tail"#;
        let Step::Record { len, fields } = parser().step(input, false).unwrap() else { panic!("expected a record") };
        assert_eq!(&input[..len], &input[..input.len() - 5]);
        assert_eq!(fields.unwrap(), vec![Value::Text("7".into()), Value::Text("a & b <raw>".into())]);
    }

    #[test]
    fn prologue_and_root_are_skipped_and_partial_records_wait() {
        let mut parser = parser();
        assert_eq!(parser.step(b"<?xml version=\"1.0\"?>\n<records>", false).unwrap(), Step::Skip(21));
        assert_eq!(parser.step(b"<rec", false).unwrap(), Step::NeedInput);
        assert_eq!(parser.step(b"<record><text>x</te", false).unwrap(), Step::NeedInput);
        assert_eq!(parser.step(b"<records>", false).unwrap(), Step::Skip(9));
    }

    #[test]
    fn vector_fields_become_vectors() {
        let mut parser = XmlRecords::open("xml", r#"{"fields": ["text", "v"], "vectors": ["v"]}"#, None).unwrap();
        let Step::Record { fields, .. } = parser.step(b"<record><v>[0.5, 1]</v><text>t</text></record>", false).unwrap() else { panic!() };
        assert_eq!(fields.unwrap(), vec![Value::Text("t".into()), Value::Vector(vec![0.5, 1.0])]);
        let Step::Record { fields, .. } = parser.step(b"<record><v>a b</v></record>", false).unwrap() else { panic!() };
        assert_eq!(fields.unwrap_err(), "v: expected a list of numbers");
    }

    #[test]
    fn nested_elements_reject_the_record_only() {
        let Step::Record { fields, .. } = parser().step(b"<record><text><b>x</b></text></record>", false).unwrap() else { panic!() };
        assert!(fields.unwrap_err().contains("nested"));
    }
}
