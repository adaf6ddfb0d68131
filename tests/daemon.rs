//! The daemon as people run it: a real `vecdrop run` process, real Milvus, files dropped the way
//! tools write them, schedules, SIGKILL and SIGTERM, and the status endpoint.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::daemon::{concrete_free_address, daemon_sections, daemon_sections_settling, done_files, free_address, today, Daemon};
use support::{collection_spec, connect_sink, csv_with_vectors, milvus_uri, stored_texts, unique_collection, TestConfig};

fn write_parquet(path: &Path, keys: &[&str]) {
    use arrow_array::{ArrayRef, StringArray};
    support::write_parquet(
        path,
        vec![
            ("id", Arc::new(StringArray::from_iter_values(keys.iter().copied())) as ArrayRef),
            ("text", Arc::new(StringArray::from_iter_values(keys.iter().map(|key| format!("parquet row {key} about lighthouses"))))),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_files_are_imported_once_moved_to_done_and_reported() {
    let collection = unique_collection("daemon_drop");
    let status = concrete_free_address();
    let config = TestConfig::with_sections(
        &collection,
        "id_field = \"id\"\nwatch = [\"drop\"]\nafter_import = \"move\"\nbatch_rows = 8",
        // A settle no test run reaches: a file written in place is never ready here by holding
        // still, so the test cannot depend on how fast the writer or the machine is. (When a file
        // that held still becomes ready is the scanner's model-tested logic, `discover::watch`.)
        &daemon_sections_settling(&status, "1h", ""),
    );
    let drop = config.dir.path().join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    let outside = config.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let daemon = Daemon::start(&config, &status);

    // CSV written in place, row by row: the daemon must not take it while it may still grow.
    let csv_path = drop.join("slow.csv");
    let mut csv = std::fs::File::create(&csv_path).unwrap();
    writeln!(csv, "id,text").unwrap();
    for row in 0..12 {
        writeln!(csv, "c{row},a slowly written row number {row} about rivers").unwrap();
        csv.flush().unwrap();
    }
    drop_file(csv);
    // JSONL written as .part, then renamed in.
    let part = drop.join("events.jsonl.part");
    let lines: String = (0..9).map(|row| format!("{{\"id\": \"j{row}\", \"text\": \"json line {row} about mountains\"}}\n")).collect();
    std::fs::write(&part, lines).unwrap();
    std::fs::rename(&part, drop.join("events.jsonl")).unwrap();
    // Parquet written elsewhere and renamed in.
    write_parquet(&outside.join("table.parquet"), &["p0", "p1", "p2", "p3", "p4"]);
    std::fs::rename(outside.join("table.parquet"), drop.join("table.parquet")).unwrap();
    // A file that cannot be imported: its header lacks the text column.
    std::fs::write(outside.join("bad.csv"), "id,title\nx1,no text column\n").unwrap();
    std::fs::rename(outside.join("bad.csv"), drop.join("bad.csv")).unwrap();

    daemon.wait_for("the renamed-in files to leave the drop folder", Duration::from_secs(180), |_| {
        done_files(&drop).len() == 2 && drop.join(".failed/bad.csv").is_file()
    });
    assert!(csv_path.is_file(), "a file written in place waits for its settle");
    assert_eq!(daemon.metric("vecdrop_files_total{pipeline=\"test\",outcome=\"imported\"}"), 2.0);
    // Its writer hands it over the way the others did: a rename.
    std::fs::rename(&csv_path, outside.join("slow.csv")).unwrap();
    std::fs::rename(outside.join("slow.csv"), &csv_path).unwrap();
    daemon.wait_for("the handed-over file", Duration::from_secs(180), |_| done_files(&drop).len() == 3);
    assert_eq!(done_files(&drop), BTreeSet::from(["events.jsonl".to_owned(), "slow.csv".to_owned(), "table.parquet".to_owned()]));
    let error = std::fs::read_to_string(drop.join(".failed/bad.csv.error.txt")).unwrap();
    assert!(error.contains("text") && error.contains("what to do"), "{error}");

    let sink = connect_sink(&milvus_uri()).await.unwrap();
    let spec = collection_spec(&config);
    assert_eq!(sink.count(&collection).await.unwrap(), 12 + 9 + 5);
    let keys: Vec<String> = (0..12)
        .map(|row| format!("c{row}"))
        .chain((0..9).map(|row| format!("j{row}")))
        .chain((0..5).map(|row| format!("p{row}")))
        .collect();
    let texts = stored_texts(&sink, &spec, &keys).await;
    assert_eq!(texts.len(), keys.len(), "every key is stored");
    assert_eq!(texts["c11"], "a slowly written row number 11 about rivers", "the whole slowly written file was read");

    // The status endpoint agrees with Milvus.
    assert_eq!(daemon.metric("vecdrop_rows_imported_total{pipeline=\"test\"}"), 26.0);
    assert_eq!(daemon.metric("vecdrop_files_total{pipeline=\"test\",outcome=\"imported\"}"), 3.0);
    assert_eq!(daemon.metric("vecdrop_files_total{pipeline=\"test\",outcome=\"failed\"}"), 1.0);
    assert!(daemon.metric("vecdrop_batch_upsert_seconds_count{pipeline=\"test\"}") >= 4.0);
    let report = daemon.status();
    let pipeline = &report["pipelines"][0];
    assert_eq!(pipeline["rows_imported"], 26);
    assert_eq!(pipeline["files"]["imported"], 3);
    assert_eq!(pipeline["files"]["failed"], 1);
    assert!(report["in_flight"].as_array().unwrap().is_empty());
    assert_eq!(report["recent_failures"].as_array().unwrap().len(), 1);

    // The same content dropped again is recognised, not imported twice.
    std::fs::copy(drop.join(format!(".done/{}/events.jsonl", today())), outside.join("again.jsonl")).unwrap();
    std::fs::rename(outside.join("again.jsonl"), drop.join("again.jsonl")).unwrap();
    daemon.wait_for("the copy to be handled", Duration::from_secs(60), |_| done_files(&drop).contains("again.jsonl"));
    assert_eq!(daemon.metric("vecdrop_files_total{pipeline=\"test\",outcome=\"already_imported\"}"), 1.0);
    assert_eq!(daemon.metric("vecdrop_rows_imported_total{pipeline=\"test\"}"), 26.0);

    // `vecdrop status` cannot open the ledger the daemon holds: it asks the daemon.
    let cli = config.run("status", &[]);
    assert_eq!(cli.status.code(), Some(0));
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(cli["pipelines"][0]["rows_imported"], 26);

    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}

fn drop_file(file: std::fs::File) {
    file.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_files_in_flight_then_restart_imports_every_file_exactly_once() {
    assert!(vecdrop::failpoint::enabled(), "the kills land at failure points: run `cargo test --features failpoints` (make test does)");
    let collection = unique_collection("daemon_kill");
    let status = free_address();
    let config = TestConfig::with_sections(
        &collection,
        "id_field = \"id\"\nwatch = [\"drop\"]\nafter_import = \"move\"\nbatch_rows = 100",
        // Kills land wherever the rounds happen to be; a file killed before its first commit in
        // several rounds is this test's doing, not a crash loop (`max_crashes`).
        &daemon_sections(&status, "max_parallel_files = 2\nmax_crashes = 100\n"),
    );
    let drop = config.dir.path().join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    let mut all_keys = Vec::new();
    let mut files = Vec::new();
    for name in ["a", "b", "c"] {
        let (content, keys) = csv_with_vectors(name, 3000);
        std::fs::write(drop.join(format!("{name}.csv")), content).unwrap();
        files.push((format!("{name}.csv"), keys.clone()));
        all_keys.extend(keys);
    }
    let sink = connect_sink(&milvus_uri()).await.unwrap();

    let mut kills = 0;
    for round in 0..3u64 {
        // Each run pauses at its (round + 2)-th commit, with two files in flight, and is killed there:
        // the kill lands mid-import whatever the machine's speed.
        let pause = config.dir.path().join(format!("pause-{round}"));
        std::fs::create_dir(&pause).unwrap();
        let failpoint = format!("after_commit@{}", round + 2);
        let envs = [("VECDROP_FAILPOINT", failpoint.as_str()), ("VECDROP_FAILPOINT_PAUSE", pause.to_str().unwrap())];
        let daemon = Daemon::start_with_env(&config, &status, &envs);
        daemon.wait_for("a paused import", Duration::from_secs(300), |_| pause.join("reached").exists());
        daemon.kill();
        kills += 1;
        // Nothing was moved before its rows were in Milvus.
        let spec = collection_spec(&config);
        for (name, keys) in &files {
            if done_files(&drop).contains(name) {
                assert_eq!(stored_texts(&sink, &spec, keys).await.len(), keys.len(), "{name} was moved before all its rows were stored");
            }
        }
    }
    assert_eq!(kills, 3, "the daemon was killed mid-import in every round");

    let daemon = Daemon::start(&config, &status);
    daemon.wait_for("every file to be done", Duration::from_secs(300), |_| done_files(&drop).len() == 3);
    let spec = collection_spec(&config);
    assert_eq!(sink.count(&collection).await.unwrap(), all_keys.len() as u64, "no row lost, none twice");
    assert_eq!(stored_texts(&sink, &spec, &all_keys).await.len(), all_keys.len());
    let report = daemon.status();
    assert_eq!(report["pipelines"][0]["files"]["imported"], 3);
    assert_eq!(report["model"]["batch"]["source"], "cached", "the first start measured the batch shape, restarts reuse it: {report:#}");
    // Batches Milvus acknowledged but the ledger had not committed when the daemon was killed are
    // replayed; their rows are found unchanged in Milvus and counted as such, not written again.
    let (imported, unchanged) =
        (report["pipelines"][0]["rows_imported"].as_u64().unwrap(), report["pipelines"][0]["rows_unchanged"].as_u64().unwrap());
    assert_eq!(imported + unchanged, all_keys.len() as u64, "ledger counts are exact ({imported} imported, {unchanged} unchanged)");
    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_reimports_only_changed_rows_and_mirrors_deletions() {
    let collection = unique_collection("daemon_schedule");
    let status = free_address();
    let config = TestConfig::with_sections(
        &collection,
        "id_field = \"id\"\npaths = [\"exports/*.csv\"]\nschedule = \"*/2 * * * * *\"\nmirror = true\nbatch_rows = 64",
        &daemon_sections(&status, ""),
    );
    let exports = config.dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    let export = exports.join("faq.csv");
    let mut rows: Vec<(String, String)> =
        (0..200).map(|row| (format!("k{row:03}"), format!("answer number {row} about the harbour"))).collect();
    let write_export = |rows: &[(String, String)]| {
        let content: String =
            std::iter::once("id,text\n".to_owned()).chain(rows.iter().map(|(key, text)| format!("{key},{text}\n"))).collect();
        let temporary = exports.join("faq.csv.tmp");
        std::fs::write(&temporary, content).unwrap();
        std::fs::rename(&temporary, &export).unwrap();
    };
    write_export(&rows);
    let daemon = Daemon::start(&config, &status);
    daemon.wait_for("the first scheduled import", Duration::from_secs(180), |daemon| {
        daemon.metric("vecdrop_rows_imported_total{pipeline=\"test\"}") == 200.0 && last_outcome(daemon).starts_with("ok")
    });
    assert_eq!(daemon.metric("vecdrop_rows_embedded_total{pipeline=\"test\"}"), 200.0);

    // 1% of the rows change, three disappear.
    rows[10].1 = "a rewritten answer about lighthouses".to_owned();
    rows[150].1 = "another rewritten answer about canals".to_owned();
    let removed: Vec<String> = [20, 21, 199].iter().map(|&index| rows[index].0.clone()).collect();
    rows.retain(|(key, _)| !removed.contains(key));
    write_export(&rows);
    daemon.wait_for("the changed export to be mirrored", Duration::from_secs(120), |daemon| {
        daemon.metric("vecdrop_rows_deleted_total{pipeline=\"test\"}") == 3.0
    });
    assert_eq!(daemon.metric("vecdrop_rows_embedded_total{pipeline=\"test\"}"), 202.0, "only the two changed rows were embedded again");
    assert_eq!(daemon.metric("vecdrop_rows_unchanged_total{pipeline=\"test\"}"), 195.0);

    let sink = connect_sink(&milvus_uri()).await.unwrap();
    let spec = collection_spec(&config);
    assert_eq!(sink.count(&collection).await.unwrap(), 197);
    let texts = stored_texts(&sink, &spec, &[rows[10].0.clone(), "k150".to_owned(), "k000".to_owned()]).await;
    assert_eq!(texts["k010"], "a rewritten answer about lighthouses");
    assert_eq!(texts["k150"], "another rewritten answer about canals");
    assert!(stored_texts(&sink, &spec, &removed).await.is_empty(), "removed keys are deleted");
    let schedule = &daemon.status()["schedules"][0];
    assert_eq!(schedule["schedule"], "*/2 * * * * *");
    assert!(schedule["next_run"].is_string() && schedule["last_run"].is_string(), "{schedule}");
    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}

fn last_outcome(daemon: &Daemon) -> String {
    daemon.status()["schedules"][0]["last_outcome"].as_str().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_import_exits_cleanly_and_the_next_start_resumes() {
    assert!(
        vecdrop::failpoint::enabled(),
        "this test pauses the import at a failure point: run `cargo test --features failpoints` (make test does)"
    );
    let collection = unique_collection("daemon_term");
    let status = free_address();
    let config = TestConfig::with_sections(
        &collection,
        "id_field = \"id\"\nwatch = [\"drop\"]\nafter_import = \"move\"\nbatch_rows = 32",
        &daemon_sections(&status, ""),
    );
    let drop = config.dir.path().join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    let rows = 600;
    let content: String = std::iter::once("id,text\n".to_owned())
        .chain((0..rows).map(|row| format!("t{row},sentence {row} about a quiet library with tall shelves\n")))
        .collect();
    std::fs::write(drop.join("big.csv"), content).unwrap();

    // The import pauses after its second commit; SIGTERM comes while it waits there, so it is
    // interrupted mid-file however fast the machine embeds.
    let pause = config.dir.path().join("pause");
    std::fs::create_dir(&pause).unwrap();
    let pause_dir = pause.to_str().unwrap();
    let mut daemon =
        Daemon::start_with_env(&config, &status, &[("VECDROP_FAILPOINT", "after_commit@2"), ("VECDROP_FAILPOINT_PAUSE", pause_dir)]);
    daemon.wait_for("the import to pause after two commits", Duration::from_secs(300), |_| pause.join("reached").exists());
    daemon.signal_terminate();
    daemon.wait_for("the shutdown to begin", Duration::from_secs(60), |daemon| daemon.log().contains("shutting down"));
    std::fs::write(pause.join("resume"), "").unwrap();
    let exit = daemon.wait_exit(Duration::from_secs(60));
    assert_eq!(exit.code(), Some(0), "SIGTERM exits 0");
    assert!(drop.join("big.csv").is_file(), "an interrupted file stays in the drop folder");
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    let partial = sink.count(&collection).await.unwrap();
    assert!(partial < rows as u64, "the import was interrupted ({partial} rows)");

    let daemon = Daemon::start(&config, &status);
    daemon.wait_for("the resumed import", Duration::from_secs(300), |_| done_files(&drop).contains("big.csv"));
    assert!(daemon.log().contains("resuming after the last committed record"), "{}", daemon.log());
    assert_eq!(sink.count(&collection).await.unwrap(), rows as u64);
    assert_eq!(daemon.status()["pipelines"][0]["rows_imported"].as_u64(), Some(rows as u64));
    daemon.terminate(Duration::from_secs(60));
}

/// Unchanged-row lookups read Milvus with bounded staleness once the daemon has run past its
/// start-up window, and lay the daemon's own recent writes over the answer: a version that goes
/// back to earlier values (A, then B, then A again with one row changed) right after B was written
/// is stored as the last version, although Milvus's bounded read may still show A's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_lookups_still_see_the_daemons_own_recent_writes() {
    let collection = unique_collection("daemon_recent");
    let status = concrete_free_address();
    let config = TestConfig::with_sections(
        &collection,
        "id_field = \"id\"\nwatch = [\"drop\"]\nafter_import = \"move\"",
        &daemon_sections(&status, ""),
    );
    let drop = config.dir.path().join("drop");
    let outside = config.dir.path().join("outside");
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let keys: Vec<String> = (0..20).map(|row| format!("k{row}")).collect();
    let version = |name: &str, text: &dyn Fn(usize) -> String| {
        let body: String = std::iter::once("id,text\n".to_owned()).chain((0..20).map(|row| format!("k{row},{}\n", text(row)))).collect();
        std::fs::write(outside.join(name), body).unwrap();
        std::fs::rename(outside.join(name), drop.join(name)).unwrap();
    };
    let alpha = |row: usize| format!("alpha row {row} about harbours");
    let beta = |row: usize| format!("beta row {row} about deserts");
    let alpha_again = |row: usize| if row == 0 { "alpha row 0 now changed".to_owned() } else { alpha(row) };

    let started = std::time::Instant::now();
    let daemon = Daemon::start(&config, &status);
    version("a.csv", &alpha);
    daemon.wait_for("version A", Duration::from_secs(120), |_| done_files(&drop).len() == 1);
    // Lookups are strongly consistent for 2 × milvus.graceful_time (5 s) + 1 s after start, while
    // writes of an earlier process may be invisible to bounded reads; this test is about the time after.
    let strong_window = Duration::from_secs(11) + Duration::from_millis(500);
    tokio::time::sleep(strong_window.saturating_sub(started.elapsed())).await;
    version("b.csv", &beta);
    daemon.wait_for("version B", Duration::from_secs(120), |_| done_files(&drop).len() == 2);
    version("a-again.csv", &alpha_again);
    daemon.wait_for("version A again", Duration::from_secs(120), |_| done_files(&drop).len() == 3);

    let sink = connect_sink(&milvus_uri()).await.unwrap();
    let texts = stored_texts(&sink, &collection_spec(&config), &keys).await;
    for (row, key) in keys.iter().enumerate() {
        assert_eq!(texts[key], alpha_again(row), "{key} holds the last version");
    }
    assert!(daemon.metric("vecdrop_lookups_total{pipeline=\"test\",consistency=\"bounded\"}") >= 2.0, "{}", daemon.diagnosis());
    assert_eq!(
        daemon.metric("vecdrop_rows_unchanged_total{pipeline=\"test\"}"),
        0.0,
        "every row of each version differed from the one before"
    );
    assert_eq!(daemon.metric("vecdrop_rows_embedded_total{pipeline=\"test\"}"), 60.0);
    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}
