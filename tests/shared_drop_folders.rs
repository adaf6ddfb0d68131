//! Several daemons, one drop folder (`daemon.shared_drop_folders`): each file is claimed by one
//! instance (a rename into `.claimed/<instance>/`) and imported once; the claims of an instance
//! that stopped are returned and imported by another.

mod support;

use std::time::{Duration, SystemTime};

use support::daemon::{concrete_free_address, daemon_sections_settling, done_files, Daemon};
use support::{connect_sink, milvus_uri, unique_collection, TestConfig};

fn daemon_config(collection: &str, drop: &std::path::Path, instance: &str, status: &str) -> TestConfig {
    TestConfig::with_sections(
        collection,
        &format!("id_field = \"id\"\nwatch = [\"{}\"]", drop.display()),
        &daemon_sections_settling(
            status,
            "1h",
            &format!("shared_drop_folders = true\ninstance = \"{instance}\"\nclaim_stale_after = \"5s\""),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_import_each_file_once_and_take_over_a_stopped_instance_s_claims() {
    let collection = unique_collection("shared_drop");
    let shared = tempfile::tempdir().unwrap();
    let drop = shared.path().join("drop");
    let outside = shared.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // A claim left behind by an instance that died long ago.
    let ghost = drop.join(".claimed/ghost");
    std::fs::create_dir_all(&ghost).unwrap();
    std::fs::write(ghost.join("orphan.csv"), "id,text\ng1,a row claimed by a dead instance\n").unwrap();
    let alive = std::fs::File::create(ghost.join(".alive")).unwrap();
    alive.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();

    let (status_a, status_b) = (concrete_free_address(), concrete_free_address());
    let (config_a, config_b) = (daemon_config(&collection, &drop, "a", &status_a), daemon_config(&collection, &drop, "b", &status_b));
    let a = Daemon::start(&config_a, &status_a);
    let b = Daemon::start(&config_b, &status_b);
    for file in 0..12 {
        let name = format!("part-{file:02}.csv");
        let rows: String = (0..3).map(|row| format!("f{file}r{row},file {file} row {row} about shared folders\n")).collect();
        std::fs::write(outside.join(&name), format!("id,text\n{rows}")).unwrap();
        std::fs::rename(outside.join(&name), drop.join(&name)).unwrap();
    }
    a.wait_for("every file, and the orphan, to be imported", Duration::from_secs(300), |_| done_files(&drop).len() == 13);
    let imported = |daemon: &Daemon| daemon.metric("vecdrop_files_total{pipeline=\"test\",outcome=\"imported\"}");
    let already = |daemon: &Daemon| daemon.metric("vecdrop_files_total{pipeline=\"test\",outcome=\"already_imported\"}");
    assert_eq!(imported(&a) + imported(&b), 13.0, "each file imported by exactly one instance");
    assert_eq!(already(&a) + already(&b), 0.0, "no file was handed to both");
    assert!(done_files(&drop).contains("orphan.csv"), "the dead instance's claim was returned and imported");
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(&collection).await.unwrap(), 12 * 3 + 1);
    assert_eq!(a.terminate(Duration::from_secs(60)).code(), Some(0));
    assert_eq!(b.terminate(Duration::from_secs(60)).code(), Some(0));
}
