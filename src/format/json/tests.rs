//! Tests of the JSON Lines and JSON array readers (kept beside `json.rs` to keep it short).

use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};

use super::*;
use crate::format::{Format, JsonPointer};

fn file_with(bytes: &[u8], suffix: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    file
}

fn gzip_file_with(bytes: &[u8], suffix: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(file.path()).unwrap(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap();
    file
}

fn jsonl_items(path: &Path, resume: &Checkpoint) -> Vec<ReadItem> {
    let mut reader = JsonlReader::open_at(path, resume).unwrap();
    std::iter::from_fn(|| reader.next_item().unwrap()).collect()
}

fn pointer(text: &str) -> ReadOptions {
    ReadOptions { json_pointer: Some(JsonPointer::parse(text).unwrap()) }
}

/// Items up to the first error, and the error.
fn json_items(path: &Path, options: &ReadOptions, resume: &Checkpoint) -> (Vec<ReadItem>, Option<ReadError>) {
    let mut reader = JsonReader::open_at(path, options, resume).unwrap();
    let mut items = Vec::new();
    loop {
        match reader.next_item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(error) => return (items, Some(error)),
        }
    }
}

fn json_records(path: &Path, options: &ReadOptions) -> Vec<ReadItem> {
    let (items, error) = json_items(path, options, &Checkpoint::Start);
    assert!(error.is_none(), "{error:?}");
    items
}

fn record(item: &ReadItem) -> &Record {
    match item {
        ReadItem::Record(record) => record,
        ReadItem::Rejected(rejected) => panic!("rejected: {rejected:?}"),
    }
}

fn rejected(item: &ReadItem) -> &RejectedRecord {
    match item {
        ReadItem::Rejected(rejected) => rejected,
        ReadItem::Record(record) => panic!("not rejected: {record:?}"),
    }
}

fn corrupt_offset(error: Option<ReadError>) -> (u64, String) {
    match error {
        Some(ReadError::Corrupt { byte_offset, message, .. }) => (byte_offset, message),
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// Every resume point of a full read yields exactly the items after it.
fn assert_jsonl_resumes_everywhere(path: &Path, cuts: impl Iterator<Item = usize>) {
    let all = jsonl_items(path, &Checkpoint::Start);
    for cut in cuts {
        let rest = jsonl_items(path, all[cut - 1].next());
        assert_eq!(rest, all[cut..], "resumed after item {cut}");
    }
}

fn assert_json_resumes_everywhere(path: &Path, options: &ReadOptions, cuts: impl Iterator<Item = usize>) {
    let (all, error) = json_items(path, options, &Checkpoint::Start);
    assert!(error.is_none(), "{error:?}");
    for cut in cuts {
        let (rest, error) = json_items(path, options, all[cut - 1].next());
        assert!(error.is_none(), "resumed after item {cut}: {error:?}");
        assert_eq!(rest, all[cut..], "resumed after item {cut}");
    }
}

/// A record line of every value kind, with strings that look like structure.
fn tricky_object(index: usize) -> String {
    format!(
        r#"{{"id":{index},"text":"row {index}: [{{\"q\": \"]}}\\\\\"}}","nested":{{"a":[1,{{"b":"}}"}}],"c":null}},"v":[0.5,{index}],"u":"\u00e9\ud83d\ude00"}}"#
    )
}

#[test]
fn values_keep_member_order_and_map_by_kind() {
    let line = br#"{"z":1,"a":-2.5,"s":"t","n":null,"b":true,"v":[1,2.5e1],"e":[],"m":[1,"x"],"o":{"k":[1]},"big":18446744073709551615,"min":-9223372036854775808}"#;
    let file = file_with(line, ".jsonl");
    let items = jsonl_items(file.path(), &Checkpoint::Start);
    let values = &record(&items[0]).values;
    let keys: Vec<&str> = values.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["z", "a", "s", "n", "b", "v", "e", "m", "o", "big", "min"]);
    let expected = [
        FieldValue::Int(1),
        FieldValue::Float(-2.5),
        FieldValue::Text("t".into()),
        FieldValue::Null,
        FieldValue::Bool(true),
        FieldValue::Vector(vec![1.0, 25.0]),
        FieldValue::Json(serde_json::json!([])),
        FieldValue::Json(serde_json::json!([1, "x"])),
        FieldValue::Json(serde_json::json!({"k": [1]})),
        FieldValue::Float(18446744073709551615.0),
        FieldValue::Int(i64::MIN),
    ];
    let found: Vec<&FieldValue> = values.iter().map(|(_, value)| value).collect();
    assert_eq!(found, expected.iter().collect::<Vec<_>>());
}

#[test]
fn jsonl_skips_blank_lines_handles_bom_crlf_and_a_last_line_without_newline() {
    let file = file_with(b"\xEF\xBB\xBF{\"a\":1}\r\n\r\n  \t\n{\"a\":2}\n\r\n{\"a\":3}", ".jsonl");
    let items = jsonl_items(file.path(), &Checkpoint::Start);
    assert_eq!(items.len(), 3);
    let positions: Vec<RecordPosition> = items.iter().map(|item| record(item).position).collect();
    assert_eq!(positions[0], RecordPosition { ordinal: 0, line: Some(1), byte_offset: 0 });
    assert_eq!(positions[1], RecordPosition { ordinal: 1, line: Some(4), byte_offset: 18 });
    assert_eq!(positions[2], RecordPosition { ordinal: 2, line: Some(6), byte_offset: 28 });
    assert_eq!(items[2].next(), &Checkpoint::Text { byte_offset: 35, line: 7, ordinal: 3 });
    assert_eq!(record(&items[2]).get("a"), Some(&FieldValue::Int(3)));
}

#[test]
fn jsonl_rejects_bad_lines_with_their_line_and_goes_on() {
    let content = b"{\"a\":1}\n[1,2]\n{\"a\":\n\"text\"\n{\"a\":1,\"a\":2}\nnot json\n{\"a\":\"\xFF\"}\n{\"a\":4}\n";
    let file = file_with(content, ".jsonl");
    let items = jsonl_items(file.path(), &Checkpoint::Start);
    assert_eq!(items.len(), 8);
    let expectations = [
        (1, "expected a JSON object, found an array"),
        (2, "found invalid JSON: EOF while parsing a value at line 3, column 5"),
        (3, "expected a JSON object, found a string"),
        (4, "the key \"a\" more than once"),
        (5, "found invalid JSON: expected ident at line 6, column 2"),
        (6, "expected UTF-8 text, found an invalid byte at byte 6"),
    ];
    for (index, reason) in expectations {
        let rejection = rejected(&items[index]);
        assert_eq!(rejection.position.line, Some(index as u64 + 1));
        assert_eq!(rejection.position.ordinal, index as u64);
        assert!(rejection.reason.contains(reason), "line {}: {}", index + 1, rejection.reason);
    }
    assert_eq!(rejected(&items[4]).field.as_deref(), Some("a"));
    assert_eq!(rejected(&items[1]).raw, "[1,2]");
    assert_eq!(record(&items[7]).get("a"), Some(&FieldValue::Int(4)));
}

#[test]
fn jsonl_over_long_line_is_rejected_without_being_buffered() {
    let cap = 100;
    let mut content = b"{\"a\":1}\n{\"long\":\"".to_vec();
    content.resize(content.len() + 10_000, b'x');
    content.extend_from_slice(b"\"}\r\n{\"a\":3}\n");
    let file = file_with(&content, ".jsonl");
    let mut reader = JsonlReader::open_capped(file.path(), &Checkpoint::Start, cap).unwrap();
    let items: Vec<ReadItem> = std::iter::from_fn(|| reader.next_item().unwrap()).collect();
    assert!(reader.line_buffer.capacity() < 4 * cap, "the line buffer grew to {}", reader.line_buffer.capacity());
    let rejection = rejected(&items[1]);
    assert_eq!(rejection.position.line, Some(2));
    assert!(rejection.reason.contains("at most 100 bytes") && rejection.reason.contains("found 10013 bytes"), "{}", rejection.reason);
    assert_eq!(record(&items[2]).position.line, Some(3));
    // Spaces past the cap do not make a line blank.
    let spaces = file_with(format!("{}{{\"a\":1}}\n", " ".repeat(cap * 3)).as_bytes(), ".jsonl");
    let mut reader = JsonlReader::open_capped(spaces.path(), &Checkpoint::Start, cap).unwrap();
    assert!(rejected(&reader.next_item().unwrap().unwrap()).reason.contains("record size cap"));
    // Exactly at the cap is fine.
    let exact = file_with(format!("{{\"a\":\"{}\"}}\r\n", "y".repeat(cap - 8)).as_bytes(), ".jsonl");
    let mut reader = JsonlReader::open_capped(exact.path(), &Checkpoint::Start, cap).unwrap();
    assert!(matches!(reader.next_item(), Ok(Some(ReadItem::Record(_)))));
}

#[test]
fn jsonl_line_over_the_real_cap_is_rejected() {
    let mut content = b"{\"text\":\"".to_vec();
    content.resize(MAX_RECORD_BYTES + 100, b'x');
    content.extend_from_slice(b"\"}\n{\"a\":2}\n");
    let file = file_with(&content, ".jsonl");
    let mut reader = JsonlReader::open(file.path()).unwrap();
    assert!(rejected(&reader.next_item().unwrap().unwrap()).reason.contains("record size cap"));
    assert_eq!(record(&reader.next_item().unwrap().unwrap()).position.line, Some(2));
    assert!(reader.line_buffer.capacity() <= 2 * MAX_RECORD_BYTES + 4);
}

fn mixed_jsonl(lines: usize, random: &mut impl Rng) -> Vec<u8> {
    let mut content = b"\xEF\xBB\xBF".to_vec();
    for index in 0..lines {
        let line = match random.random_range(0..7) {
            0 => format!("{}\r\n", tricky_object(index)),
            1 => format!("{{\"id\":{index}}}\n"),
            2 => "\n \r\n".to_owned(),
            3 => format!("[{index}]\n"),
            4 => format!("{{\"id\":{index},\"broken\":\n"),
            5 => format!("{{\"id\":{index},\"id\":{index}}}\n"),
            _ => format!("{}\n", tricky_object(index)),
        };
        content.extend_from_slice(line.as_bytes());
    }
    content.extend_from_slice(b"{\"last\":\"no newline\"}");
    content
}

#[test]
fn jsonl_resuming_after_any_item_yields_exactly_the_rest() {
    let mut random = rand::rngs::StdRng::seed_from_u64(7);
    let small = file_with(&mixed_jsonl(40, &mut random), ".jsonl");
    let count = jsonl_items(small.path(), &Checkpoint::Start).len();
    assert!(count > 30);
    assert_jsonl_resumes_everywhere(small.path(), 1..=count);
    let big = file_with(&mixed_jsonl(5_000, &mut random), ".jsonl");
    let count = jsonl_items(big.path(), &Checkpoint::Start).len();
    let cuts: Vec<usize> = (0..25).map(|_| random.random_range(1..=count)).chain([1, count]).collect();
    assert_jsonl_resumes_everywhere(big.path(), cuts.into_iter());
}

#[test]
fn jsonl_gzip_reads_and_resumes_like_plain() {
    let content = mixed_jsonl(50, &mut rand::rngs::StdRng::seed_from_u64(3));
    let plain = file_with(&content, ".jsonl");
    let gzip = gzip_file_with(&content, ".jsonl.gz");
    let all = jsonl_items(plain.path(), &Checkpoint::Start);
    assert_eq!(jsonl_items(gzip.path(), &Checkpoint::Start), all);
    assert_jsonl_resumes_everywhere(gzip.path(), [1, all.len() / 2, all.len()].into_iter());
    assert_eq!(JsonlReader::open(gzip.path()).unwrap().total_bytes(), 0);
    assert_eq!(JsonlReader::open(plain.path()).unwrap().total_bytes(), content.len() as u64);
}

#[test]
fn json_array_of_tricky_objects_with_positions() {
    let content = format!("\u{FEFF}[\n  {},\n  {{\"second\": \"\\\"]\\\\\"}}\n]\n", tricky_object(0));
    let file = file_with(content.as_bytes(), ".json");
    let items = json_records(file.path(), &ReadOptions::default());
    assert_eq!(items.len(), 2);
    let first = record(&items[0]);
    assert_eq!(first.position, RecordPosition { ordinal: 0, line: Some(2), byte_offset: 7 });
    assert_eq!(first.get("text"), Some(&FieldValue::Text(r#"row 0: [{"q": "]}\\"}"#.to_owned())));
    assert_eq!(first.get("u"), Some(&FieldValue::Text("é😀".to_owned())));
    assert_eq!(first.get("nested"), Some(&FieldValue::Json(serde_json::json!({"a": [1, {"b": "}"}], "c": null}))));
    assert_eq!(record(&items[1]).get("second"), Some(&FieldValue::Text("\"]\\".to_owned())));
    assert_eq!(record(&items[1]).position.line, Some(3));
}

#[test]
fn json_rejects_elements_that_are_not_objects_and_goes_on() {
    let content = b"[\n{\"a\":1},\n2,\n\"s\",\n[{\"a\":1}],\n{\"a\":tru},\n{\"a\":1,\"a\":1},\n{\"b\":\n 2}\n]";
    let file = file_with(content, ".json");
    let items = json_records(file.path(), &ReadOptions::default());
    assert_eq!(items.len(), 7);
    let expectations = [
        (1, 3, "found a number"),
        (2, 4, "found a string"),
        (3, 5, "found an array"),
        (4, 6, "invalid JSON: expected ident at line 6, column 9"),
        (5, 7, "more than once"),
    ];
    for (index, line, reason) in expectations {
        let rejection = rejected(&items[index]);
        assert_eq!(rejection.position.line, Some(line));
        assert!(rejection.reason.contains(reason), "{}", rejection.reason);
    }
    assert_eq!(record(&items[6]).get("b"), Some(&FieldValue::Int(2)));
}

#[test]
fn json_structural_errors_stop_with_an_offset_after_the_good_records() {
    let cases: [(&[u8], u64, &str); 6] = [
        (br#"[{"a":1} {"b":2}]"#, 9, "expected `,` or `]`"),
        (br#"[{"a":1},{"b":"#, 14, "the content ends inside the value that starts at byte 9"),
        (br#"[{"a":1}] ["#, 10, "expected the end of the content"),
        (br#"[{"a":1},]"#, 9, "expected a value, found `]`"),
        (br#"{"a":1}"#, 0, "expected a JSON array of records at the top level"),
        (b"", 0, "found the end of the content"),
    ];
    for (content, offset, message) in cases {
        let file = file_with(content, ".json");
        let (items, error) = json_items(file.path(), &ReadOptions::default(), &Checkpoint::Start);
        assert_eq!(items.len(), usize::from(offset > 0), "{}", String::from_utf8_lossy(content));
        let (found_offset, found_message) = corrupt_offset(error);
        assert_eq!(found_offset, offset, "{found_message}");
        assert!(found_message.contains(message), "{found_message}");
    }
}

#[test]
fn json_empty_array_is_no_records() {
    for content in [&b"[]"[..], b"\xEF\xBB\xBF \n[ \n ] \n", br#"{"records":[]}"#] {
        let file = file_with(content, ".json");
        let options = if content.starts_with(b"{") { pointer("/records") } else { ReadOptions::default() };
        assert!(json_records(file.path(), &options).is_empty());
    }
}

#[test]
fn json_pointer_walks_past_other_keys_and_checks_what_follows() {
    let content = br#"{"meta":{"items":[{"not":"these"}],"s":"]}"},"data":{"x":[[]],"it~em/s":[{"a":1},{"a":2},{"a":3}],"after":{"k":"["}},"tail":1}"#;
    let file = file_with(content, ".json");
    let options = pointer("/data/it~0em~1s");
    let items = json_records(file.path(), &options);
    assert_eq!(items.len(), 3);
    assert_eq!(record(&items[2]).get("a"), Some(&FieldValue::Int(3)));
    assert_json_resumes_everywhere(file.path(), &options, 1..=3);

    let (_, error) = json_items(file.path(), &pointer("/data/missing"), &Checkpoint::Start);
    assert!(corrupt_offset(error).1.contains("has no key \"missing\""));
    let (_, error) = json_items(file.path(), &pointer("/tail"), &Checkpoint::Start);
    assert!(corrupt_offset(error).1.contains("expected an array of records at /tail"));
    assert!(JsonPointer::parse("data").is_err(), "a pointer must start with /");

    let trailing_garbage = file_with(br#"{"records":[{"a":1}],"b":2} x"#, ".json");
    let (items, error) = json_items(trailing_garbage.path(), &pointer("/records"), &Checkpoint::Start);
    assert_eq!(items.len(), 1);
    assert!(corrupt_offset(error).1.contains("expected the end of the content"));
}

#[test]
fn json_over_long_element_is_rejected_and_skipped_in_bounded_memory() {
    let cap = 64;
    let content = format!(r#"[{{"a":1}},{{"long":"{}","n":[[["]"]]]}},{{"a":3}}]"#, "z".repeat(100_000));
    let file = file_with(content.as_bytes(), ".json");
    let mut reader = JsonReader::open_capped(file.path(), &ReadOptions::default(), &Checkpoint::Start, cap).unwrap();
    let items: Vec<ReadItem> = std::iter::from_fn(|| reader.next_item().unwrap()).collect();
    assert_eq!(items.len(), 3);
    let rejection = rejected(&items[1]);
    assert!(rejection.reason.contains("at most 64 bytes"), "{}", rejection.reason);
    assert!(rejection.raw.starts_with(r#"{"long":"zzz"#));
    assert_eq!(record(&items[2]).get("a"), Some(&FieldValue::Int(3)));
}

#[test]
fn json_element_over_the_real_cap_is_rejected() {
    let mut content = br#"[{"text":""#.to_vec();
    content.resize(MAX_RECORD_BYTES + 100, b'x');
    content.extend_from_slice(br#""},{"a":2}]"#);
    let file = file_with(&content, ".json");
    let items = json_records(file.path(), &ReadOptions::default());
    assert!(rejected(&items[0]).reason.contains("record size cap"));
    assert!(rejected(&items[0]).raw.len() <= crate::format::RAW_EXCERPT_BYTES);
    assert_eq!(record(&items[1]).get("a"), Some(&FieldValue::Int(2)));
}

fn mixed_json_array(elements: usize, random: &mut impl Rng) -> Vec<u8> {
    let mut content = b"\xEF\xBB\xBF [".to_vec();
    for index in 0..elements {
        let separator = match random.random_range(0..3) {
            0 => ",",
            1 => "\r\n  ,\n\t",
            _ => " , ",
        };
        let element = match random.random_range(0..6) {
            0 => format!("{{\"id\":{index}}}"),
            1 => format!("[{index}, \"]\"]"),
            2 => format!("{{\"id\":{index},\"bad\":nul}}"),
            3 => format!("\n{}\n", tricky_object(index)),
            _ => tricky_object(index),
        };
        if index > 0 {
            content.extend_from_slice(separator.as_bytes());
        }
        content.extend_from_slice(element.as_bytes());
    }
    content.extend_from_slice(b"\n]\n");
    content
}

#[test]
fn json_resuming_after_any_item_yields_exactly_the_rest() {
    let mut random = rand::rngs::StdRng::seed_from_u64(11);
    let small = file_with(&mixed_json_array(40, &mut random), ".json");
    assert_json_resumes_everywhere(small.path(), &ReadOptions::default(), 1..=40);
    let big = file_with(&mixed_json_array(5_000, &mut random), ".json");
    let cuts: Vec<usize> = (0..25).map(|_| random.random_range(1..=5_000)).chain([1, 5_000]).collect();
    assert_json_resumes_everywhere(big.path(), &ReadOptions::default(), cuts.into_iter());
}

#[test]
fn json_gzip_reads_and_resumes_like_plain() {
    let content = mixed_json_array(60, &mut rand::rngs::StdRng::seed_from_u64(5));
    let plain = file_with(&content, ".json");
    let gzip = gzip_file_with(&content, ".json.gz");
    let all = json_records(plain.path(), &ReadOptions::default());
    assert_eq!(json_records(gzip.path(), &ReadOptions::default()), all);
    assert_json_resumes_everywhere(gzip.path(), &ReadOptions::default(), [1, 30, 60].into_iter());
}

#[test]
fn formats_resolve_by_name_and_extension() {
    let resolve = |configured: &str, path: &str| Format::resolve(&configured.parse().unwrap(), Path::new(path)).ok();
    assert_eq!(resolve("auto", "a/b.jsonl"), Some(Format::Jsonl));
    assert_eq!(resolve("auto", "b.NDJSON.gz"), Some(Format::Jsonl));
    assert_eq!(resolve("auto", "b.json.zst"), Some(Format::Json));
    assert_eq!(resolve("ndjson", "whatever.txt"), Some(Format::Jsonl));
    assert_eq!(resolve("json", "whatever.txt"), Some(Format::Json));
    assert_eq!(resolve("auto", "b.txt"), None);
}

#[test]
fn documents_are_validated_by_the_reader_machinery() {
    for valid in [&b"[]"[..], b" [1, {\"a\": [\"]\"]}] ", b"\"x\"", b"-0.5e3", b"{}", b"\xEF\xBB\xBF[null]\n"] {
        assert_eq!(validate_json_document(valid), Ok(()), "{}", String::from_utf8_lossy(valid));
    }
    for invalid in [&b""[..], b"[1,]", b"[1 2]", b"[\"a\\x\"]", b"1 2", b"{\"a\":1}}", b"[\x0c]", b"tru", b"[", b"\"\x01\""] {
        assert!(validate_json_document(invalid).is_err(), "{}", String::from_utf8_lossy(invalid));
    }
}
