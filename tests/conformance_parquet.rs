//! Every file of the Apache parquet-testing corpus copied into
//! `tests/fixtures/conformance/parquet-testing/` (see its README.md) goes through the Parquet
//! reader, each on its own thread with a deadline:
//!
//! - `data/` files are read to the end with exactly the footer's row count, or refused with a
//!   [`ReadError`] that says why;
//! - `bad_data/` files are refused with a [`ReadError`], except the ones listed in
//!   [`READABLE_BAD_DATA`];
//! - no file panics or hangs;
//! - every file's outcome is the one pinned in `expected.tsv` next to the corpus: read with that
//!   many records, or refused with an error that starts so. A reader that refused everything, or
//!   read a file it used to refuse, fails here; a new file must be pinned.
//!
//! The summary (read / refused, with reasons) is printed; run with `--nocapture` to see it. Set
//! `VECDROP_PARQUET_CONFORMANCE_DIR` to run against a full parquet-testing checkout instead.
//! No Milvus is needed.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vecdrop::format::{Checkpoint, Format, ReadError, ReadItem, ReadOptions, RecordReader};

/// A file that takes longer than this is taken to hang.
const DEADLINE: Duration = Duration::from_secs(120);

/// `bad_data/` files arrow-rs reads correctly, with why.
const READABLE_BAD_DATA: &[(&str, &str)] = &[(
    "ARROW-GH-43605.parquet",
    "its dictionary index page uses RLE with a bit width of 0 (named after apache/arrow issue 43605); \
     every index then decodes as 0, which lies inside the dictionary, so arrow-rs reads all 21186 rows",
)];

/// What reading one file came to.
#[derive(Debug)]
enum Outcome {
    /// Read to the end.
    Read { records: u64, rejected: u64, footer_rows: u64 },
    /// A clean error, after `records_before` items.
    Refused { records_before: u64, error: String },
}

/// The pinned outcome of one file.
#[derive(Debug, PartialEq)]
enum Pinned {
    Read { records: u64, rejected: u64 },
    Refused { records_before: u64, error_start: String },
}

/// `expected.tsv`: relative path → pinned outcome.
fn pinned_outcomes(corpus: &Path) -> std::collections::BTreeMap<String, Pinned> {
    let table =
        std::fs::read_to_string(corpus.join("expected.tsv")).unwrap_or_else(|error| panic!("{}/expected.tsv: {error}", corpus.display()));
    table
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let pinned = match fields.as_slice() {
                [_, "read", counts] => {
                    let (records, rejected) = counts.split_once(' ').expect("read: records and rejected");
                    Pinned::Read { records: records.parse().unwrap(), rejected: rejected.parse().unwrap() }
                }
                [_, "refused", before, error_start] => {
                    Pinned::Refused { records_before: before.parse().unwrap(), error_start: (*error_start).to_owned() }
                }
                _ => panic!("expected.tsv: cannot parse {line:?}"),
            };
            (fields[0].to_owned(), pinned)
        })
        .collect()
}

/// Whether `outcome` of the file at `relative` is what `pinned` says; the difference otherwise.
fn check_pinned(relative: &str, outcome: &Outcome, pinned: Option<&Pinned>) -> Result<(), String> {
    match (outcome, pinned) {
        (_, None) => Err(format!("{relative}: not pinned in expected.tsv (got {outcome:?})")),
        (Outcome::Read { records, rejected, .. }, Some(Pinned::Read { records: want_records, rejected: want_rejected }))
            if records == want_records && rejected == want_rejected =>
        {
            Ok(())
        }
        (Outcome::Refused { records_before, error }, Some(Pinned::Refused { records_before: want_before, error_start })) => {
            let message = error.split_once(&format!("{relative}: ")).map_or(error.as_str(), |(_, rest)| rest);
            if records_before == want_before && message.starts_with(error_start.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "{relative}: refused after {records_before} items with {message:?}, pinned: {want_before} items, {error_start:?}"
                ))
            }
        }
        (outcome, Some(pinned)) => Err(format!("{relative}: {outcome:?}, pinned: {pinned:?}")),
    }
}

fn corpus_dir() -> PathBuf {
    match std::env::var_os("VECDROP_PARQUET_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance/parquet-testing"),
    }
}

/// The Parquet files under `dir`, recursively, sorted.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap_or_else(|error| panic!("{}: {error}", folder.display())) {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".parquet") || name.ends_with(".parquet.encrypted") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn read_file(path: &Path) -> Outcome {
    let refused = |records_before, error: ReadError| Outcome::Refused { records_before, error: error.to_string() };
    let mut reader = match RecordReader::open(Format::Parquet, path, &ReadOptions::default(), &Checkpoint::Start) {
        Ok(reader) => reader,
        Err(error) => return refused(0, error),
    };
    let (mut records, mut rejected) = (0, 0);
    loop {
        match reader.next_item() {
            Ok(Some(ReadItem::Record(_))) => records += 1,
            Ok(Some(ReadItem::Rejected(_))) => rejected += 1,
            Ok(None) => return Outcome::Read { records, rejected, footer_rows: reader.total_units() },
            Err(error) => return refused(records + rejected, error),
        }
    }
}

/// Reads `path` on its own thread; `Err` when it panics or misses the deadline.
fn read_with_deadline(path: &Path) -> Result<Outcome, String> {
    let (sender, receiver) = mpsc::channel();
    let owned = path.to_owned();
    std::thread::spawn(move || {
        let _ = sender.send(read_file(&owned));
    });
    match receiver.recv_timeout(DEADLINE) {
        Ok(outcome) => Ok(outcome),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the reader panicked".to_owned()),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("no result within {DEADLINE:?} (a hang?)")),
    }
}

#[test]
fn every_conformance_file_is_read_fully_or_refused_cleanly() {
    let corpus = corpus_dir();
    let files = parquet_files(&corpus);
    assert!(files.len() > 50, "expected the parquet-testing files in {}; run scripts/import-parquet-conformance.sh", corpus.display());
    // A full checkout (VECDROP_PARQUET_CONFORMANCE_DIR) has no pinned table: it is checked for
    // clean reads and refusals only.
    let pinned = std::env::var_os("VECDROP_PARQUET_CONFORMANCE_DIR").is_none().then(|| pinned_outcomes(&corpus));
    let mut failures = Vec::new();
    let (mut read, mut refused) = (0, 0);
    println!("parquet conformance: {} files under {}", files.len(), corpus.display());
    for path in &files {
        let relative = path.strip_prefix(&corpus).unwrap().display().to_string();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bad_data = relative.starts_with("bad_data");
        let started = Instant::now();
        let outcome = match read_with_deadline(path) {
            Ok(outcome) => outcome,
            Err(failure) => {
                failures.push(format!("{relative}: {failure}"));
                continue;
            }
        };
        let elapsed = started.elapsed();
        if let Some(pinned) = &pinned {
            if let Err(difference) = check_pinned(&relative, &outcome, pinned.get(&relative)) {
                failures.push(difference);
            }
        }
        match &outcome {
            Outcome::Read { records, rejected, footer_rows } => {
                read += 1;
                println!("  READ    {relative}: {records} records, {rejected} rejected ({elapsed:.1?})");
                if records + rejected != *footer_rows {
                    failures.push(format!("{relative}: read {} rows, the footer says {footer_rows}", records + rejected));
                }
                if bad_data && !READABLE_BAD_DATA.iter().any(|(readable, _)| *readable == name) {
                    failures.push(format!("{relative}: a bad_data file was read without an error; document it in READABLE_BAD_DATA"));
                }
            }
            Outcome::Refused { records_before, error } => {
                refused += 1;
                println!("  REFUSED {relative} after {records_before} items: {error}");
                if error.trim().is_empty() {
                    failures.push(format!("{relative}: refused without a message"));
                }
            }
        }
    }
    for relative in pinned.iter().flat_map(|pinned| pinned.keys()) {
        if !files.iter().any(|path| path.strip_prefix(&corpus).unwrap().display().to_string() == *relative) {
            failures.push(format!("{relative}: pinned in expected.tsv but not in the corpus"));
        }
    }
    println!("parquet conformance: {read} read, {refused} refused, {} failures", failures.len());
    for (name, why) in READABLE_BAD_DATA {
        println!("  note: bad_data/{name} is readable: {why}");
    }
    assert!(failures.is_empty(), "conformance failures:\n{}", failures.join("\n"));
}
