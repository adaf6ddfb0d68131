//! JSONTestSuite (nst/JSONTestSuite, `test_parsing/`) against the JSON reader. The files are
//! committed copies in `tests/fixtures/conformance/JSONTestSuite/` (made by
//! `scripts/import-conformance.sh`); no Milvus is needed: `cargo test --test conformance_json`.
//!
//! # Method
//! Most of these documents are not arrays of objects, so they cannot all be judged by what the
//! reader yields. Each file is therefore checked three ways, all on the reader's own code:
//! 1. [`validate_json_document`]: a document starting with `[` goes through the element scanner
//!    that [`JsonReader`] uses, with every element parsed by `serde_json` exactly as the reader
//!    parses a record; any other document is one value cut by the same scanner, parsed by
//!    `serde_json`, and followed by nothing but whitespace. `y_` must give `Ok`, `n_` must give
//!    `Err` with a message, `i_` either.
//! 2. The file as a `.json` input of [`JsonReader`]: never a panic; a `y_` array yields no
//!    [`ReadError::Corrupt`] and no rejection for invalid JSON (elements that are not objects are
//!    rejected as such, and so are objects that repeat a key: that is the reader's record contract,
//!    not a JSON error); an `n_` file yields a `Corrupt` or a rejection for invalid JSON, never a
//!    clean read.
//! 3. A `y_` document `X` wrapped as `[X]`: exactly one item, no `Corrupt` and no rejection for
//!    invalid JSON: a valid value is a valid element, whatever it is.
//!
//! `i_` files only have to finish without a panic. Every file is small, so a plain loop suffices;
//! a hang would show as a test that never ends.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use vecdrop::format::{validate_json_document, Checkpoint, JsonReader, ReadError, ReadItem, ReadOptions};

fn suite_files() -> Vec<PathBuf> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance/JSONTestSuite/test_parsing");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error} (run scripts/import-conformance.sh)", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    files.sort();
    assert!(files.len() > 300, "expected the whole test_parsing folder, found {} files", files.len());
    files
}

/// What [`JsonReader`] made of a file.
struct ReaderOutcome {
    items: Vec<ReadItem>,
    error: Option<ReadError>,
}

impl ReaderOutcome {
    /// Whether an element was rejected because it is not valid JSON (as opposed to a valid value
    /// that breaks the record contract: not an object, or an object repeating a key).
    fn rejected_for_invalid_json(&self) -> bool {
        self.items.iter().any(|item| match item {
            ReadItem::Rejected(rejected) => {
                rejected.reason.contains("found invalid JSON") || rejected.reason.starts_with("expected UTF-8 text")
            }
            ReadItem::Record(_) => false,
        })
    }

    fn corrupt(&self) -> bool {
        matches!(self.error, Some(ReadError::Corrupt { .. }))
    }
}

fn read_as_json_file(content: &[u8]) -> ReaderOutcome {
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), content).unwrap();
    let mut reader = JsonReader::open_at(file.path(), &ReadOptions::default(), &Checkpoint::Start).unwrap();
    let mut items = Vec::new();
    loop {
        match reader.next_item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return ReaderOutcome { items, error: None },
            Err(error) => return ReaderOutcome { items, error: Some(error) },
        }
    }
}

/// The problems with one file, per the module doc; empty when it passes.
fn check(name: &str, content: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    let verdict = validate_json_document(content);
    let as_file = read_as_json_file(content);
    let starts_as_array = content.iter().copied().find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r')) == Some(b'[');
    match name.as_bytes().first() {
        Some(b'y') => {
            if let Err(message) = &verdict {
                problems.push(format!("valid document refused: {message}"));
            }
            if starts_as_array && (as_file.corrupt() || as_file.rejected_for_invalid_json()) {
                problems.push(format!("the reader found an error in a valid array: {:?} {:?}", as_file.error, as_file.items));
            }
            let mut wrapped = b"[".to_vec();
            wrapped.extend_from_slice(content);
            wrapped.push(b']');
            let wrapped_outcome = read_as_json_file(&wrapped);
            if wrapped_outcome.corrupt() || wrapped_outcome.items.len() != 1 || wrapped_outcome.rejected_for_invalid_json() {
                problems.push(format!("[X] is not one element: {:?} {:?}", wrapped_outcome.error, wrapped_outcome.items));
            }
        }
        Some(b'n') => {
            match &verdict {
                Ok(()) => problems.push("invalid document accepted".to_owned()),
                Err(message) if message.trim().is_empty() => problems.push("refused without a message".to_owned()),
                Err(_) => {}
            }
            if !as_file.corrupt() && !as_file.rejected_for_invalid_json() {
                problems.push(format!("the reader read an invalid document cleanly: {:?}", as_file.items));
            }
        }
        _ => {}
    }
    problems
}

#[test]
fn json_test_suite_parsing() {
    let mut failures = Vec::new();
    let mut counts = [0usize; 3];
    for path in suite_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let content = std::fs::read(&path).unwrap();
        match name.as_bytes().first() {
            Some(b'y') => counts[0] += 1,
            Some(b'n') => counts[1] += 1,
            _ => counts[2] += 1,
        }
        match catch_unwind(AssertUnwindSafe(|| check(&name, &content))) {
            Ok(problems) => failures.extend(problems.into_iter().map(|problem| format!("{name}: {problem}"))),
            Err(_) => failures.push(format!("{name}: panicked")),
        }
    }
    assert!(failures.is_empty(), "{} of the suite's files fail:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(counts, [95, 188, 35], "y_, n_ and i_ files");
}
