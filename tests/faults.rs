//! Faults, end to end (issue 9): what vecdrop does when the world misbehaves, proved with real
//! `vecdrop` processes against a real Milvus 2.3.5 server (and Milvus Lite where the two differ).
//!
//! - **Milvus going away is transient**: a dropped file stays in its drop folder (never
//!   `.failed/`), the pipeline reports `waiting` on `/healthz`, `/status` and `/metrics` and backs
//!   off, and the import resumes when Milvus is back; the daemon even starts while Milvus is away.
//!   Outages are made with a TCP forwarder in front of the shared server, so no test restarts it.
//! - **A one-off import gives up** after `import.retry_deadline` with exit 1, and a later run
//!   completes.
//! - **A file that keeps killing the process** is set aside after `max_crashes` starts, and the
//!   files after it still land.
//! - **Repeated primary keys**: the last occurrence wins, within a batch and across batches, also
//!   after a crash and replay; **dead letters** are written once even when their batch is
//!   replayed; 400,000 bad records stream through in bounded memory without flooding stderr.
//! - **Mirrors**: A → B → A of one path ends holding A; a truncated upload is held back.
//! - **Two workers creating one collection** both succeed.
//!
//! Crash points are chosen with failure points (the `failpoints` feature), never with sleeps; every
//! wait is for an observable state, with generous timeouts, so machine speed does not matter.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::daemon::{daemon_sections, done_files, failed_files, free_address, Daemon};
use support::forwarder::Forwarder;
use support::{
    collection_spec, connect_sink, csv_rows_with_vectors, csv_with_vectors, import_through_failpoint, import_through_failpoint_exiting,
    lite_command, milvus_uri, stored_texts, unique_collection, LiteReaper, TestConfig,
};

/// Where a test's Milvus is: the shared server (directly or through a forwarder) or an embedded
/// Milvus Lite in the config's directory.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Server,
    Lite,
}

impl Backend {
    /// The `[milvus]` table.
    fn milvus_table(self) -> String {
        match self {
            Backend::Server => format!("[milvus]\nuri = \"{}\"\n", milvus_uri()),
            Backend::Lite => format!("[milvus]\nuri = \"milvus-data\"\nlite_command = \"{}\"\n", lite_command().display()),
        }
    }
}

/// `[milvus]` for a server at `uri`, impatient enough that an outage shows within seconds: start-up
/// gives up connecting after 2 s, one operation retries for 2 s.
fn server_milvus(uri: &str) -> String {
    format!("[milvus]\nuri = \"{uri}\"\nconnect_timeout = \"2s\"\nretry_deadline = \"2s\"\n")
}

/// `[status]` and `[daemon]` with quick scans and a short, capped backoff after transient faults;
/// `extra` goes into `[daemon]`.
fn daemon_tables(status: &str, extra: &str) -> String {
    daemon_sections(status, &format!("retry_backoff = \"500ms\"\nretry_backoff_max = \"2s\"\n{extra}"))
}

/// A drop-folder pipeline keyed by `id`, moving imported files to `.done/`.
const DROP_PIPELINE: &str = "id_field = \"id\"\nwatch = [\"drop\"]\nafter_import = \"move\"\nbatch_rows = 10\n";

/// Writes `content` as `dir/name` the way tools hand files over: complete, then renamed in.
fn place(dir: &Path, name: &str, content: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, content).unwrap();
    let path = dir.join(name);
    std::fs::rename(&temporary, &path).unwrap();
    path
}

/// stdout and stderr together, lower-cased, for "the output mentions …" checks.
fn output_text(output: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)).to_lowercase()
}

/// `/healthz` says 503 and names the waiting pipeline.
fn healthz_waiting(daemon: &Daemon) -> bool {
    daemon.get_any("/healthz").is_some_and(|(status, body)| status == 503 && body.contains("waiting") && body.contains("test"))
}

fn healthz_ok(daemon: &Daemon) -> bool {
    daemon.get_any("/healthz").is_some_and(|(status, body)| status == 200 && body == "ok\n")
}

/// Every key of `expected` is stored once with its text, and nothing else is in the collection.
async fn assert_holds_exactly(config: &TestConfig, collection: &str, expected: &HashMap<String, String>) {
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(collection).await.unwrap(), expected.len() as u64, "count(*) of {collection}");
    let keys: Vec<String> = expected.keys().cloned().collect();
    let stored = stored_texts(&sink, &collection_spec(config), &keys).await;
    for (key, text) in expected {
        assert_eq!(stored.get(key), Some(text), "stored text of {key}");
    }
}

/// The rows of a `csv_with_vectors(prefix, rows)` file, as `assert_holds_exactly` expects them.
fn vector_rows(prefix: &str, rows: usize) -> HashMap<String, String> {
    (0..rows).map(|row| (format!("{prefix}-{row}"), format!("row {row} of {prefix}"))).collect()
}

/// The pipeline's dead letters, one JSON object per line.
fn dead_letters(config: &TestConfig) -> Vec<serde_json::Value> {
    let path = vecdrop::dead_letter::path_for(&config.state_dir(), "test");
    let file = std::fs::File::open(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    std::io::BufReader::new(file)
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).expect("a dead letter is one JSON object"))
        .collect()
}

fn assert_failpoints() {
    assert!(vecdrop::failpoint::enabled(), "this test needs failure points: run `cargo test --features failpoints` (make test does)");
}

// ─── Milvus going away ───────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_during_drop_keeps_the_file_waits_and_resumes_when_milvus_is_back() {
    let collection = unique_collection("fault_outage");
    let status = free_address();
    let mut forwarder = Forwarder::start(Forwarder::free_address(), &milvus_uri());
    let config = TestConfig::with_milvus(&server_milvus(&forwarder.uri()), &daemon_tables(&status, ""), &collection, DROP_PIPELINE);
    let drop = config.dir.path().join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    let mut daemon = Daemon::start(&config, &status);
    daemon.wait_for("a healthy daemon", Duration::from_secs(120), healthz_ok);
    // A first file lands while Milvus is there, so the outage cuts an established connection.
    place(&drop, "before.csv", &csv_with_vectors("b", 20).0);
    daemon.wait_for("the first file to land", Duration::from_secs(180), |_| done_files(&drop).contains("before.csv"));

    forwarder.stop();
    let outage_began = Instant::now();
    let (content, _) = csv_with_vectors("o", 50);
    place(&drop, "outage.csv", &content);

    daemon.wait_for("the pipeline to wait on Milvus with retries", Duration::from_secs(180), |daemon| {
        healthz_waiting(daemon)
            && daemon.metric("vecdrop_retries_total{pipeline=\"test\"}") >= 2.0
            && daemon.metric_opt("vecdrop_milvus_reachable") == Some(0.0)
    });
    let report = daemon.wait_for_value("/status to show the pipeline waiting", Duration::from_secs(60), |daemon| {
        let report = daemon.status();
        (report["pipelines"][0]["health"]["state"] == "waiting").then_some(report)
    });
    let health = &report["pipelines"][0]["health"];
    assert_eq!(health["fault"], "transient", "{report:#}");
    assert!(health["retries"].as_u64() >= Some(1), "{report:#}");
    assert!(health["since"].is_string() && health["reason"].is_string(), "{report:#}");
    assert_eq!(report["milvus"]["reachable"], false, "{report:#}");
    assert!(drop.join("outage.csv").is_file(), "a file that met a transient fault stays in the drop folder");
    assert!(failed_files(&drop).is_empty(), "nothing is quarantined for a transient fault: {:?}", failed_files(&drop));

    eprintln!("milvus was away for {:.1} s; the file waited in the drop folder", outage_began.elapsed().as_secs_f64());
    forwarder.restart();
    daemon.wait_for("the file to land once Milvus is back", Duration::from_secs(300), |_| done_files(&drop).contains("outage.csv"));
    let mut expected = vector_rows("b", 20);
    expected.extend(vector_rows("o", 50));
    assert_holds_exactly(&config, &collection, &expected).await;
    daemon.wait_for("/healthz to be ok again", Duration::from_secs(120), healthz_ok);
    daemon.wait_for("Milvus reported reachable", Duration::from_secs(60), |daemon| {
        daemon.metric_opt("vecdrop_milvus_reachable") == Some(1.0)
    });
    assert_eq!(daemon.status()["milvus"]["reachable"], true);
    assert_eq!(daemon.metric("vecdrop_rows_imported_total{pipeline=\"test\"}"), 70.0);
    assert_eq!(daemon.metric("vecdrop_files_total{pipeline=\"test\",outcome=\"failed\"}"), 0.0);
    assert!(failed_files(&drop).is_empty());
    assert!(daemon.is_running(), "a transient fault never stops the daemon");
    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_started_while_milvus_away_serves_health_and_imports_once_it_is_back() {
    let collection = unique_collection("fault_away");
    let status = free_address();
    let mut forwarder = Forwarder::stopped(Forwarder::free_address(), &milvus_uri());
    let config = TestConfig::with_milvus(&server_milvus(&forwarder.uri()), &daemon_tables(&status, ""), &collection, DROP_PIPELINE);
    let drop = config.dir.path().join("drop");
    std::fs::create_dir_all(&drop).unwrap();

    let mut daemon = Daemon::start(&config, &status);
    let (code, body) = daemon.get_any("/healthz").expect("/healthz answers while Milvus is away");
    assert!(code == 200 || code == 503, "/healthz answered {code}: {body}");
    assert!(daemon.is_running(), "the daemon does not exit when Milvus is away at start-up");

    let (content, _) = csv_with_vectors("a", 30);
    place(&drop, "away.csv", &content);
    daemon.wait_for("retries while Milvus is away", Duration::from_secs(180), |daemon| {
        daemon.metric("vecdrop_retries_total{pipeline=\"test\"}") >= 1.0 && daemon.metric_opt("vecdrop_milvus_reachable") == Some(0.0)
    });
    assert_eq!(daemon.status()["milvus"]["reachable"], false);
    assert!(drop.join("away.csv").is_file(), "the file waits in the drop folder");
    assert!(failed_files(&drop).is_empty(), "{:?}", failed_files(&drop));

    forwarder.restart();
    daemon.wait_for("the file to land", Duration::from_secs(300), |_| done_files(&drop).contains("away.csv"));
    assert_holds_exactly(&config, &collection, &vector_rows("a", 30)).await;
    assert_eq!(daemon.metric("vecdrop_files_total{pipeline=\"test\",outcome=\"imported\"}"), 1.0, "imported exactly once");
    assert_eq!(daemon.metric("vecdrop_rows_imported_total{pipeline=\"test\"}"), 30.0);
    assert!(failed_files(&drop).is_empty());
    daemon.wait_for("/healthz to be ok", Duration::from_secs(120), healthz_ok);
    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}

#[test]
fn one_off_import_gives_up_after_its_deadline_and_a_later_run_completes() {
    let collection = unique_collection("fault_oneoff");
    let mut forwarder = Forwarder::stopped(Forwarder::free_address(), &milvus_uri());
    let config = TestConfig::with_milvus(
        &server_milvus(&forwarder.uri()),
        "[import]\nretry_deadline = \"3s\"\n",
        &collection,
        "id_field = \"id\"\nbatch_rows = 10",
    );
    let (content, _) = csv_with_vectors("d", 20);
    let file = place(config.dir.path(), "rows.csv", &content);
    let file_arg = file.to_str().unwrap();

    let check = config.run("check", &[]);
    assert_eq!(check.status.code(), Some(1), "`vecdrop check` fails while Milvus is unreachable");
    assert!(String::from_utf8_lossy(&check.stdout).contains("FAIL  milvus"), "check names Milvus");

    let started = Instant::now();
    let away = config.run("import", &[file_arg]);
    eprintln!("the import gave up after {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(away.status.code(), Some(1), "Milvus away past import.retry_deadline exits 1");
    assert!(output_text(&away).contains("milvus"), "the error names Milvus");

    forwarder.restart();
    let back = config.run("import", &[file_arg]);
    assert_eq!(back.status.code(), Some(0));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(assert_holds_exactly(&config, &collection, &vector_rows("d", 20)));
}

// ─── Concurrency ─────────────────────────────────────────────────────────────────────────────

/// Two files waiting when the daemon starts, two workers, and a collection neither has created:
/// both workers race to create it, and both files must land.
async fn two_workers_two_files_new_collection(backend: Backend) {
    let collection = unique_collection("fault_two_workers");
    let status = free_address();
    let config =
        TestConfig::with_milvus(&backend.milvus_table(), &daemon_tables(&status, "max_parallel_files = 2\n"), &collection, DROP_PIPELINE);
    let _reaper = LiteReaper { data_dir: config.dir.path().join("milvus-data") };
    let drop = config.dir.path().join("drop");
    for name in ["one", "two"] {
        place(&drop, &format!("{name}.csv"), &csv_with_vectors(name, 40).0);
    }
    let daemon = Daemon::start(&config, &status);
    daemon.wait_for("both files to leave the drop folder", Duration::from_secs(300), |_| {
        done_files(&drop).len() == 2 || !failed_files(&drop).is_empty()
    });
    let failures: Vec<String> = failed_files(&drop)
        .iter()
        .filter(|name| name.ends_with(".error.txt"))
        .map(|name| std::fs::read_to_string(drop.join(".failed").join(name)).unwrap_or_default())
        .collect();
    assert!(failed_files(&drop).is_empty(), "a worker failed: {failures:?}\nlog:\n{}", daemon.log());
    assert_eq!(done_files(&drop), BTreeSet::from(["one.csv".to_owned(), "two.csv".to_owned()]));

    let mut expected = vector_rows("one", 40);
    expected.extend(vector_rows("two", 40));
    match backend {
        Backend::Server => assert_holds_exactly(&config, &collection, &expected).await,
        Backend::Lite => {
            // The daemon's Milvus Lite serves while the daemon runs; its address is in the data
            // directory.
            let endpoint = std::fs::read_to_string(config.dir.path().join("milvus-data/vecdrop-lite.endpoint")).unwrap();
            let sink = connect_sink(endpoint.trim()).await.unwrap();
            assert_eq!(sink.count(&collection).await.unwrap(), 80);
            let keys: Vec<String> = expected.keys().cloned().collect();
            assert_eq!(stored_texts(&sink, &collection_spec(&config), &keys).await, expected);
        }
    }
    let report = daemon.status();
    assert_eq!(report["pipelines"][0]["rows_imported"], 80, "{report:#}");
    assert_eq!(report["pipelines"][0]["files"]["imported"], 2, "{report:#}");
    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_two_files_new_collection_on_the_server() {
    two_workers_two_files_new_collection(Backend::Server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_two_files_new_collection_on_milvus_lite() {
    two_workers_two_files_new_collection(Backend::Lite).await;
}

// ─── Mirrors ─────────────────────────────────────────────────────────────────────────────────

/// Version A of a mirrored export: 100 keyed rows.
fn export_a() -> Vec<(String, String)> {
    (0..100).map(|row| (format!("m{row:03}"), format!("first version of row {row}"))).collect()
}

fn as_map(rows: &[(String, String)]) -> HashMap<String, String> {
    rows.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_a_b_a_ends_holding_exactly_a() {
    let collection = unique_collection("fault_mirror_aba");
    // B deletes half of A's rows; the hold-back share is raised so that this test is about
    // A → B → A, not about the hold-back.
    let config = TestConfig::new(&collection, "id_field = \"id\"\nmirror = true\nmirror_max_delete_share = 0.75\nbatch_rows = 32");
    let a = export_a();
    let b: Vec<(String, String)> = a[..50]
        .iter()
        .enumerate()
        .map(|(row, (key, text))| (key.clone(), if row % 5 == 0 { format!("second version of row {row}") } else { text.clone() }))
        .collect();
    let path = config.dir.path().join("export.csv");
    let path_arg = path.to_str().unwrap();

    place(config.dir.path(), "export.csv", &csv_rows_with_vectors(&a));
    assert_eq!(config.run("import", &[path_arg]).status.code(), Some(0));
    assert_holds_exactly(&config, &collection, &as_map(&a)).await;

    place(config.dir.path(), "export.csv", &csv_rows_with_vectors(&b));
    assert_eq!(config.run("import", &[path_arg]).status.code(), Some(0));
    assert_holds_exactly(&config, &collection, &as_map(&b)).await;

    // The same content as the first import, at the same path: "already imported" by content would
    // leave B's rows; the mirror must restore A.
    place(config.dir.path(), "export.csv", &csv_rows_with_vectors(&a));
    assert_eq!(config.run("import", &[path_arg]).status.code(), Some(0));
    assert_holds_exactly(&config, &collection, &as_map(&a)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_truncated_upload_is_held_back() {
    let collection = unique_collection("fault_mirror_truncated");
    let config = TestConfig::new(&collection, "id_field = \"id\"\nmirror = true\nmirror_max_delete_share = 0.5\nbatch_rows = 32");
    let a = export_a();
    let path = config.dir.path().join("export.csv");
    let path_arg = path.to_str().unwrap();
    place(config.dir.path(), "export.csv", &csv_rows_with_vectors(&a));
    assert_eq!(config.run("import", &[path_arg]).status.code(), Some(0));
    assert_holds_exactly(&config, &collection, &as_map(&a)).await;

    // An upload cut short: 1 % of the rows. Mirroring it would delete 99 % of the collection.
    place(config.dir.path(), "export.csv", &csv_rows_with_vectors(&a[..1]));
    let truncated = config.run("import", &[path_arg]);
    assert!(truncated.status.code().is_some(), "the import exits rather than crashing");
    assert!(output_text(&truncated).contains("held back"), "the output says the deletions were held back");
    assert_holds_exactly(&config, &collection, &as_map(&a)).await;
}

// ─── Repeated keys, dead letters, crashes ────────────────────────────────────────────────────

/// Keys of 30 rows read in batches of 10: repeats inside each batch and across batches.
const REPEATED_IDS: [&str; 30] = [
    "a", "b", "a", "c", "b", "a", "d", "e", "f", "c", // batch 1: a ×3, b ×2, c ×2
    "g", "a", "h", "g", "i", "b", "j", "k", "g", "l", // batch 2: g ×3; a, b again
    "a", "m", "c", "n", "m", "d", "o", "p", "q", "m", // batch 3: m ×3; a, c, d again
];

/// Imports the repeated-key file through a crash after the second batch's upsert (so that batch is
/// replayed) and returns the row each key must end with: its last occurrence.
fn import_repeated_ids(config: &TestConfig) -> HashMap<String, String> {
    assert_failpoints();
    let mut content = String::from("id,text\n");
    let mut last = HashMap::new();
    for (row, id) in REPEATED_IDS.iter().enumerate() {
        let text = format!("version {row} of key {id}");
        content.push_str(&format!("{id},{text}\n"));
        last.insert(id.to_string(), text);
    }
    let file = place(config.dir.path(), "repeated.csv", &content);
    import_through_failpoint(config, &file, "after_upsert@2");
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_ids_last_wins_on_the_server() {
    let collection = unique_collection("fault_repeated");
    let config = TestConfig::with_milvus(&Backend::Server.milvus_table(), "", &collection, "id_field = \"id\"\nbatch_rows = 10");
    let expected = import_repeated_ids(&config);
    assert_holds_exactly(&config, &collection, &expected).await;
}

#[test]
fn repeated_ids_last_wins_on_milvus_lite() {
    let collection = unique_collection("fault_repeated_lite");
    let config = TestConfig::with_milvus(&Backend::Lite.milvus_table(), "", &collection, "id_field = \"id\"\nbatch_rows = 10");
    let _reaper = LiteReaper { data_dir: config.dir.path().join("milvus-data") };
    let expected = import_repeated_ids(&config);
    // Milvus Lite runs only while a vecdrop process does, so the rows are read back through a
    // search wide enough to return all of them.
    let search = config.run("search", &["--json", "-k", "50", "version of key"]);
    assert_eq!(search.status.code(), Some(0));
    let hits: Vec<serde_json::Value> =
        String::from_utf8_lossy(&search.stdout).lines().map(|line| serde_json::from_str(line).expect("one JSON hit per line")).collect();
    let ids: Vec<String> = hits.iter().map(|hit| hit["id"].as_str().unwrap().to_owned()).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "one row per key: {ids:?}");
    let stored: HashMap<String, String> =
        hits.iter().map(|hit| (hit["id"].as_str().unwrap().to_owned(), hit["text"].as_str().unwrap().to_owned())).collect();
    assert_eq!(stored, expected, "each key holds its last version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_written_once_after_a_replay() {
    assert_failpoints();
    let collection = unique_collection("fault_letters_once");
    let config = TestConfig::new(&collection, "id_field = \"id\"\nbatch_rows = 10\n[pipelines.fields]\ncount = { type = \"int64\" }\n");
    let mut content = String::from("id,text,count\n");
    let mut good = HashMap::new();
    for row in 0..100 {
        let text = format!("note {row} about the harbour");
        if row % 10 == 0 {
            content.push_str(&format!("r{row},{text},many\n"));
        } else {
            content.push_str(&format!("r{row},{text},{row}\n"));
            good.insert(format!("r{row}"), text);
        }
    }
    let file = place(config.dir.path(), "letters.csv", &content);
    // The crash falls between a batch's dead letters being appended and its ledger commit being
    // flushed: the restart replays that batch, letters included.
    import_through_failpoint_exiting(&config, &file, "ledger_before_flush@2", 3);

    let letters = dead_letters(&config);
    let mut ordinals: Vec<u64> = letters.iter().map(|letter| letter["ordinal"].as_u64().expect("ordinal")).collect();
    ordinals.sort_unstable();
    assert_eq!(ordinals, (0..100).step_by(10).collect::<Vec<u64>>(), "each bad record once");
    for letter in &letters {
        assert_eq!(letter["field"], "count", "{letter}");
    }
    assert_holds_exactly(&config, &collection, &good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_stream_in_bounded_memory() {
    const BAD: u64 = 400_000;
    const GOOD: [u64; 4] = [0, 123_457, 250_001, BAD + 3];
    let collection = unique_collection("fault_bad_records");
    let config = TestConfig::new(&collection, "batch_rows = 256\n[pipelines.fields]\ncount = { type = \"int64\" }\n");
    let file = config.dir.path().join("records.jsonl.gz");
    {
        let output = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let mut gzip = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
        for ordinal in 0..BAD + GOOD.len() as u64 {
            if GOOD.contains(&ordinal) {
                writeln!(gzip, "{{\"text\": \"good record {ordinal} about a lighthouse\", \"count\": {ordinal}}}").unwrap();
            } else {
                writeln!(gzip, "{{\"text\": \"bad record {ordinal}\", \"count\": \"not a number\"}}").unwrap();
            }
        }
        gzip.finish().unwrap().flush().unwrap();
    }

    let stdout_path = config.dir.path().join("import.stdout");
    let stderr_path = config.dir.path().join("import.stderr");
    // Reaped below with wait4 rather than Child::wait: it also returns the child's resource usage
    // (peak RSS).
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_vecdrop"))
        .args(["import", "--config"])
        .arg(&config.path)
        .arg(&file)
        .current_dir(config.dir.path())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    loop {
        // SAFETY: waiting for our own child, with valid pointers to locals.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if waited == pid {
            break;
        }
        assert_eq!(std::io::Error::last_os_error().kind(), std::io::ErrorKind::Interrupted, "wait4 failed");
    }
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let peak_mib = usage.ru_maxrss as f64 / 1024.0;
    eprintln!("vecdrop import: peak RSS {peak_mib:.0} MiB\nstdout:\n{stdout}\nstderr ({} lines):\n{stderr}", stderr.lines().count());
    assert!(libc::WIFEXITED(status), "the import must exit, not die (wait status {status})");
    assert_eq!(libc::WEXITSTATUS(status), 3, "dead-lettered records exit 3");

    let path = vecdrop::dead_letter::path_for(&config.state_dir(), "test");
    let mut seen = vec![false; (BAD + GOOD.len() as u64) as usize];
    let mut lines = 0u64;
    for line in std::io::BufReader::new(std::fs::File::open(&path).unwrap()).lines() {
        let letter: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let ordinal = letter["ordinal"].as_u64().expect("ordinal");
        assert!(!GOOD.contains(&ordinal), "good record {ordinal} dead-lettered: {letter}");
        assert!(!std::mem::replace(&mut seen[ordinal as usize], true), "ordinal {ordinal} dead-lettered twice");
        lines += 1;
    }
    assert_eq!(lines, BAD, "every bad record is dead-lettered once");
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(&collection).await.unwrap(), GOOD.len() as u64, "the good records landed");
    assert!(stderr.lines().count() < 100, "bad records are counted, not logged one by one ({} lines)", stderr.lines().count());
    assert!(peak_mib < 400.0, "peak RSS {peak_mib:.0} MiB: rejected records must stream, not pile up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_keeps_killing_the_process_is_set_aside() {
    assert_failpoints();
    let collection = unique_collection("fault_poison");
    let status = free_address();
    let config = TestConfig::with_milvus(
        &Backend::Server.milvus_table(),
        &daemon_tables(&status, "max_parallel_files = 1\nmax_crashes = 3\n"),
        &collection,
        DROP_PIPELINE,
    );
    let drop = config.dir.path().join("drop");
    place(&drop, "poison.csv", &csv_with_vectors("poison", 30).0);
    place(&drop, "good.csv", &csv_with_vectors("good", 30).0);
    // Armed on every start: the process aborts whenever it has upserted a batch of poison.csv.
    let failpoint = [("VECDROP_FAILPOINT", "after_upsert:poison")];

    for crash in 1..=3 {
        let mut daemon = Daemon::start_with_env(&config, &status, &failpoint);
        let deadline = Instant::now() + Duration::from_secs(300);
        let exit = loop {
            if let Some(exit) = daemon.child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                !drop.join(".failed/poison.csv").exists(),
                "poison.csv was set aside after only {} crash(es); log:\n{}",
                crash - 1,
                daemon.log()
            );
            assert!(Instant::now() < deadline, "start {crash}: the daemon did not reach poison.csv; log:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(exit.code(), None, "start {crash}: the failure point aborts the process; log:\n{}", daemon.log());
        assert!(drop.join("poison.csv").is_file(), "start {crash}: a crash leaves the file in place");
    }

    let mut daemon = Daemon::start_with_env(&config, &status, &failpoint);
    daemon.wait_for("poison.csv set aside and good.csv imported", Duration::from_secs(300), |_| {
        drop.join(".failed/poison.csv").is_file() && done_files(&drop).contains("good.csv")
    });
    let error = std::fs::read_to_string(drop.join(".failed/poison.csv.error.txt")).unwrap();
    assert!(error.contains("stopped the process 3 times"), "{error}");
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    let good = vector_rows("good", 30);
    let keys: Vec<String> = good.keys().cloned().collect();
    assert_eq!(stored_texts(&sink, &collection_spec(&config), &keys).await, good);
    assert!(daemon.is_running(), "the fourth start survives: poison.csv was not imported again");
    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}
