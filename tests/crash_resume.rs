//! Exactly-once after crashes, with real processes and real Milvus: the importer is killed with
//! SIGKILL at random steps of random batches (paused there by a failure point, so the step does not
//! depend on the machine's speed), and aborted at exact steps by failure points; every restart resumes
//! from the ledger, and in the end every row is in Milvus once, with its text, and the ledger says
//! imported with exact counts.
//!
//! Needs the `failpoints` feature (`make test` enables it).

mod support;

use std::path::Path;

use rand::{Rng, SeedableRng};
use support::{assert_exactly_once, import_through_failpoint, import_through_sigkills, unique_collection, TestConfig};

const WORDS: [&str; 16] = [
    "river", "database", "orange", "mountain", "violin", "engine", "garden", "planet", "coffee", "harbour", "winter", "pixel", "lantern",
    "meadow", "signal", "canyon",
];

/// A CSV of `rows` short texts (derived keys: the pipeline has no id_field).
fn write_csv(path: &Path, rows: usize, seed: u64) -> Vec<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut texts = Vec::with_capacity(rows);
    let mut content = String::from("text,category\n");
    for index in 0..rows {
        let words: Vec<&str> = (0..6).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect();
        let text = format!("row {index}: the {} near the {}, with a \"quoted\" {}", words[0..3].join(" "), words[3..5].join(" "), words[5]);
        content.push_str(&format!("\"{}\",c{}\n", text.replace('"', "\"\""), index % 7));
        texts.push(text);
    }
    std::fs::write(path, content).unwrap();
    texts
}

#[test]
fn failure_points_are_compiled_into_the_test_binary() {
    assert!(vecdrop::failpoint::enabled(), "the crash tests need failure points: run `cargo test --features failpoints` (make test does)");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_no_row_and_duplicates_none() {
    let config = TestConfig::new(
        &unique_collection("crash"),
        "batch_rows = 256\n[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 8 }\n",
    );
    let file = config.dir.path().join("big.csv");
    let texts = write_csv(&file, 20_000, 42);
    let kills = import_through_sigkills(&config, &file);
    assert!(kills >= 3, "the file should take long enough to be killed several times");
    assert_exactly_once(&config, &file, &texts).await;
}

async fn crash_at(failpoint: &str) {
    let config = TestConfig::new(
        &unique_collection("failpoint"),
        "batch_rows = 100\n[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 8 }\n",
    );
    let file = config.dir.path().join("rows.csv");
    let texts = write_csv(&file, 700, 7);
    import_through_failpoint(&config, &file, failpoint);
    assert_exactly_once(&config, &file, &texts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_milvus_acknowledged_before_the_ledger_commit() {
    crash_at("after_upsert@3").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_inside_the_ledger_commit_before_its_write() {
    crash_at("ledger_before_write@2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_inside_the_ledger_commit_before_its_flush() {
    crash_at("ledger_before_flush@4").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_last_commit_before_the_file_is_marked_imported() {
    crash_at("before_finish").await;
}
