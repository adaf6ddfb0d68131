//! Many small files through the daemon: they share flushes (group commit) and model batches, and
//! the invariant still holds for each one — no file leaves the drop folder before its rows were
//! acknowledged by Milvus and flushed — also across `kill -9` and next to a file that fails.
//!
//! The first group flush of each run pauses at the `group_flush` failure point, before it closes
//! its group, until the test has seen what it needs (every file upserted and waiting for that
//! flush), so no assertion depends on how fast the machine, the model or Milvus is.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::daemon::{daemon_sections_settling, done_files, failed_files, free_address, Daemon};
use support::{connect_sink, milvus_uri, texts_in_milvus, unique_collection, TestConfig};

const ROWS_PER_FILE: usize = 10;
const PIPELINE: &str = "id_field = \"id\"\nwatch = [\"drop\"]\nafter_import = \"move\"";

/// A drop folder and a staging folder beside it: files are written in staging and renamed in,
/// the way careful writers hand files over (ready at once; the settle is an hour, so a file is
/// never taken half-written and nothing here waits for a clock).
struct Drop {
    config: TestConfig,
    collection: String,
    drop: PathBuf,
    staging: PathBuf,
    pause: PathBuf,
}

impl Drop {
    fn new(prefix: &str) -> Self {
        assert!(
            vecdrop::failpoint::enabled(),
            "these tests pause the flush at a failure point: run `cargo test --features failpoints` (make test does)"
        );
        let collection = unique_collection(prefix);
        let config = TestConfig::with_sections(&collection, PIPELINE, &daemon_sections_settling(&free_address(), "1h", ""));
        let (drop, staging, pause) = (config.dir.path().join("drop"), config.dir.path().join("staging"), config.dir.path().join("pause"));
        for dir in [&drop, &staging, &pause] {
            std::fs::create_dir_all(dir).unwrap();
        }
        Self { config, collection, drop, staging, pause }
    }

    /// Starts the daemon with its first group flush paused; returns once it watches the folder
    /// (files renamed in from then on are seen arriving).
    fn start_paused(&self) -> Daemon {
        let daemon = Daemon::start_with_env(
            &self.config,
            &free_address(),
            &[("VECDROP_FAILPOINT", "group_flush@1"), ("VECDROP_FAILPOINT_PAUSE", self.pause.to_str().unwrap())],
        );
        daemon.wait_for("the daemon to watch its folder", Duration::from_secs(120), |daemon| daemon.log().contains("vecdrop is running"));
        daemon
    }

    /// Lets files that sit in the drop folder at start-up (found by the first scan, not seen
    /// arriving) be taken after a short settle: they are complete, nobody writes them.
    fn settle_quickly(&self) {
        let toml = std::fs::read_to_string(&self.config.path).unwrap();
        std::fs::write(&self.config.path, toml.replace("settle = \"1h\"", "settle = \"200ms\"")).unwrap();
    }

    /// Writes `files` JSONL files of [`ROWS_PER_FILE`] rows into staging; returns their names and
    /// every key with its text.
    fn stage(&self, files: usize) -> (Vec<String>, Vec<(String, String)>) {
        let mut names = Vec::new();
        let mut rows = Vec::new();
        for file in 0..files {
            let name = format!("event-{file:03}.jsonl");
            let mut content = String::new();
            for row in 0..ROWS_PER_FILE {
                let (key, text) = (format!("f{file}-r{row}"), format!("event {row} of file {file} about harbours and ships"));
                content.push_str(&serde_json::json!({ "id": key, "text": text }).to_string());
                content.push('\n');
                rows.push((key, text));
            }
            std::fs::write(self.staging.join(&name), content).unwrap();
            names.push(name);
        }
        (names, rows)
    }

    /// Renames staged files into the drop folder.
    fn hand_over(&self, names: &[String]) {
        for name in names {
            std::fs::rename(self.staging.join(name), self.drop.join(name)).unwrap();
        }
    }

    /// Waits until the paused first flush is reached and `files` files wait for a flush.
    fn wait_until_all_wait_for_flush(&self, daemon: &Daemon, files: usize) {
        daemon.wait_for("the first group flush to pause", Duration::from_secs(300), |_| self.pause.join("reached").exists());
        daemon.wait_for(&format!("{files} files upserted and waiting for a flush"), Duration::from_secs(300), |daemon| {
            daemon.metric_opt("vecdrop_files_awaiting_flush") == Some(files as f64)
        });
    }

    /// Stages `files` files, starts the daemon paused at its first flush, hands them over and
    /// returns once every one waits for a flush — none of them moved yet.
    fn all_waiting_for_a_flush(&self, files: usize) -> (Daemon, Vec<String>, Vec<(String, String)>) {
        let (names, rows) = self.stage(files);
        let daemon = self.start_paused();
        self.hand_over(&names);
        self.wait_until_all_wait_for_flush(&daemon, files);
        assert!(done_files(&self.drop).is_empty(), "no file is moved before its flush");
        (daemon, names, rows)
    }

    fn resume(&self) {
        std::fs::write(self.pause.join("resume"), "").unwrap();
    }

    fn flushes(&self, daemon: &Daemon) -> f64 {
        daemon.metric(&format!("vecdrop_flushes_total{{collection=\"{}\"}}", self.collection))
    }
}

/// Files of the pipeline that ended with `outcome` (`imported`, `failed`).
fn files_ended(daemon: &Daemon, outcome: &str) -> f64 {
    daemon.metric(&format!("vecdrop_files_total{{pipeline=\"test\",outcome=\"{outcome}\"}}"))
}

/// The pipeline's `vecdrop_rows_<counter>_total` (`embedded`, `imported`).
fn rows_counted(daemon: &Daemon, counter: &str) -> f64 {
    daemon.metric(&format!("vecdrop_rows_{counter}_total{{pipeline=\"test\"}}"))
}

fn names(list: &[String]) -> BTreeSet<String> {
    list.iter().cloned().collect()
}

/// The collection holds exactly `rows`: each key once, with its text.
async fn assert_rows_exactly(drop: &Drop, rows: &[(String, String)]) {
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(&drop.collection).await.unwrap(), rows.len() as u64, "every row once");
    assert_rows_present(drop, rows).await;
}

/// Every one of `rows` is stored with its text.
async fn assert_rows_present(drop: &Drop, rows: &[(String, String)]) {
    let keys: Vec<&str> = rows.iter().map(|(key, _)| key.as_str()).collect();
    let stored = texts_in_milvus(&drop.config, &keys).await;
    for (key, text) in rows {
        assert_eq!(stored.get(key), Some(text), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_files_share_flushes_and_none_is_moved_before_its_rows_are_flushed() {
    let drop = Drop::new("small_files");
    let (daemon, files, rows) = drop.all_waiting_for_a_flush(30);
    assert_eq!(std::fs::read_dir(&drop.drop).unwrap().flatten().filter(|entry| entry.path().is_file()).count(), files.len());
    // Upserted (a strong read sees them) before anything was flushed or moved.
    assert_rows_exactly(&drop, &rows).await;
    assert_eq!(drop.flushes(&daemon), 0.0);

    drop.resume();
    daemon.wait_for("every file in .done", Duration::from_secs(300), |_| done_files(&drop.drop).len() == files.len());
    assert_eq!(done_files(&drop.drop), names(&files));
    // The first flush paused before closing its group: every file joined it, one flush for all.
    assert_eq!(drop.flushes(&daemon), 1.0, "{}", daemon.diagnosis());
    assert_eq!(daemon.metric(&format!("vecdrop_flushed_files_total{{collection=\"{}\"}}", drop.collection)), files.len() as f64);
    assert_eq!(rows_counted(&daemon, "embedded"), rows.len() as f64, "each text embedded once");
    assert_eq!(files_ended(&daemon, "imported"), files.len() as f64);
    let log = daemon.log();
    let first_flush = log.find("collection flushed").expect("flushes are logged");
    let first_move = log.find("file moved").expect("moves are logged");
    assert!(first_flush < first_move, "a file was moved before the first flush returned:\n{log}");
    assert_rows_exactly(&drop, &rows).await;
    daemon.terminate(Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_a_group_flush_is_pending_then_every_file_is_imported_exactly_once() {
    let drop = Drop::new("small_files_kill");
    let (daemon, files, rows) = drop.all_waiting_for_a_flush(20);
    daemon.kill();
    drop.settle_quickly();

    let daemon = Daemon::start(&drop.config, &free_address());
    daemon.wait_for("every file in .done after the restart", Duration::from_secs(300), |_| done_files(&drop.drop).len() == files.len());
    assert_eq!(done_files(&drop.drop), names(&files));
    // Every row was committed before the kill: the restart only flushes and finishes.
    assert_eq!(rows_counted(&daemon, "embedded"), 0.0, "no row embedded again");
    assert_eq!(rows_counted(&daemon, "imported"), 0.0, "no row written again");
    assert_eq!(files_ended(&daemon, "imported"), files.len() as f64);
    assert_rows_exactly(&drop, &rows).await;
    daemon.terminate(Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_fails_in_a_shared_flush_window_does_not_hold_back_or_fail_the_others() {
    let drop = Drop::new("small_files_fail");
    let (files, rows) = drop.stage(8);
    // A file without the text column fails before its upsert; one that changes while it waits
    // for the flush fails after it.
    std::fs::write(drop.staging.join("bad.csv"), "id,title\nx1,no text column\n").unwrap();
    let changed = "changing.jsonl";
    std::fs::write(drop.staging.join(changed), "{\"id\": \"c1\", \"text\": \"a row whose file changes after its upsert\"}\n").unwrap();
    let daemon = drop.start_paused();
    let mut handed = files.clone();
    handed.extend(["bad.csv".to_owned(), changed.to_owned()]);
    drop.hand_over(&handed);
    drop.wait_until_all_wait_for_flush(&daemon, files.len() + 1);
    append(&drop.drop.join(changed), "{\"id\": \"c2\", \"text\": \"appended while waiting\"}\n");
    drop.resume();

    daemon.wait_for("the good files done and both failures set aside", Duration::from_secs(300), |_| {
        done_files(&drop.drop).len() == files.len() && failed_files(&drop.drop).contains(changed)
    });
    assert_eq!(done_files(&drop.drop), names(&files));
    let failed = failed_files(&drop.drop);
    assert!(failed.contains("bad.csv") && failed.contains(changed), "{failed:?}");
    let reason = std::fs::read_to_string(drop.drop.join(format!(".failed/{changed}.error.txt"))).unwrap();
    assert!(reason.contains("changed while it was being imported"), "{reason}");
    assert_eq!(files_ended(&daemon, "imported"), files.len() as f64);
    assert_eq!(files_ended(&daemon, "failed"), 2.0);
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    // The good files' rows, and the changed file's row upserted before it changed.
    assert_eq!(sink.count(&drop.collection).await.unwrap(), rows.len() as u64 + 1);
    assert_rows_present(&drop, &rows).await;
    daemon.terminate(Duration::from_secs(60));
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
}
