//! Whoever can write into a drop folder gets nothing more: links, FIFOs, sockets, devices and
//! hard links are never read, moved or deleted; `.done/` and `.failed/` are the daemon's; the
//! Milvus token comes from a private file, reaches Milvus and shows in no output.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::daemon::{concrete_free_address, daemon_sections_settling, done_files, Daemon};
use support::{connect_sink, milvus_uri, unique_collection, TestConfig};

fn mkfifo(path: &Path) {
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_regular_files_are_imported_and_links_fifos_sockets_and_hard_links_are_left_alone() {
    let collection = unique_collection("drop_security");
    let status = concrete_free_address();
    // Nothing here becomes ready by holding still: only files renamed in are taken.
    let config =
        TestConfig::with_sections(&collection, "id_field = \"id\"\nwatch = [\"drop\"]", &daemon_sections_settling(&status, "1h", ""));
    let drop = config.dir.path().join("drop");
    let outside = config.dir.path().join("outside");
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let secret = outside.join("secret.csv");
    std::fs::write(&secret, "id,text\ns1,a secret row that must never reach Milvus\n").unwrap();
    let linked = outside.join("linked.csv");
    std::fs::write(&linked, "id,text\nh1,a row reached through a hard link\n").unwrap();

    // The hostile entries, planted before the daemon starts and while it runs.
    std::os::unix::fs::symlink(&secret, drop.join("leak.csv")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", drop.join("zero.csv")).unwrap();
    mkfifo(&drop.join("pipe.csv"));
    let _socket = std::os::unix::net::UnixListener::bind(drop.join("socket.csv")).unwrap();
    std::fs::hard_link(&linked, drop.join("hard.csv")).unwrap();
    let daemon = Daemon::start(&config, &status);

    std::fs::write(outside.join("good.csv"), "id,text\ng1,a regular file about harbours\ng2,another row about tides\n").unwrap();
    std::fs::rename(outside.join("good.csv"), drop.join("good.csv")).unwrap();
    daemon.wait_for("the regular file to be imported", Duration::from_secs(180), |_| done_files(&drop).contains("good.csv"));
    // A FIFO renamed in (ready at once, like any renamed file) must not block a worker.
    mkfifo(&outside.join("late-pipe.csv"));
    std::fs::rename(outside.join("late-pipe.csv"), drop.join("late-pipe.csv")).unwrap();
    std::fs::write(outside.join("after.csv"), "id,text\na1,a file dropped after the hostile ones\n").unwrap();
    std::fs::rename(outside.join("after.csv"), drop.join("after.csv")).unwrap();
    daemon.wait_for("the next regular file to be imported", Duration::from_secs(180), |_| done_files(&drop).contains("after.csv"));

    let refused = |cause: &str| daemon.metric(&format!("vecdrop_refused_entries_total{{pipeline=\"test\",cause=\"{cause}\"}}"));
    daemon.wait_for("every refusal to be counted", Duration::from_secs(60), |_| {
        refused("symlink") == 2.0 && refused("special_file") == 3.0 && refused("hard_link") == 1.0
    });
    assert_eq!(done_files(&drop), BTreeSet::from(["after.csv".to_owned(), "good.csv".to_owned()]));
    let left = entries(&drop);
    for name in ["leak.csv", "zero.csv", "pipe.csv", "late-pipe.csv", "socket.csv", "hard.csv"] {
        assert!(left.contains(name), "{name} stays where it was: {left:?}");
    }
    assert!(entries(&drop.join(".failed")).is_empty(), "nothing was quarantined: {:?}", entries(&drop.join(".failed")));
    assert_eq!(daemon.metric("vecdrop_files_total{pipeline=\"test\",outcome=\"failed\"}"), 0.0, "a refusal is not a failed file");
    assert!(std::fs::read_to_string(&secret).unwrap().contains("secret row"), "the link's target is untouched");
    assert!(linked.is_file());
    let log = daemon.log();
    assert!(log.contains("leak.csv") && log.contains("symbolic link"), "each refusal is logged");

    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(&collection).await.unwrap(), 3, "only the regular files' rows");
    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}

#[test]
fn a_planted_failed_link_stops_the_daemon_with_a_clear_message_and_nothing_is_written_through_it() {
    let collection = unique_collection("drop_planted");
    let status = concrete_free_address();
    let config = TestConfig::with_sections(&collection, "watch = [\"drop\"]", &daemon_sections_settling(&status, "1h", ""));
    let drop = config.dir.path().join("drop");
    let victim = config.dir.path().join("victim");
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, drop.join(".failed")).unwrap();
    let output = config.run("run", &[]);
    assert_eq!(output.status.code(), Some(2), "the operator's to fix");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(".failed") && stderr.contains("link"), "{stderr}");
    assert!(entries(&victim).is_empty(), "nothing was written through the link");
}

/// A stand-in gRPC endpoint: records the `authorization` metadata of every request and answers
/// each with `UNIMPLEMENTED`.
async fn recording_endpoint() -> (String, Arc<Mutex<Vec<String>>>) {
    use hyper::body::Incoming;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let recorded = Arc::clone(&recorded);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                    let header = request.headers().get("authorization").map(|value| value.to_str().unwrap_or("?").to_owned());
                    recorded.lock().unwrap().push(header.unwrap_or_default());
                    async {
                        hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .header("grpc-status", "12")
                            .body(http_body_util_empty())
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{address}"), seen)
}

fn http_body_util_empty() -> String {
    String::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_a_private_file_reaches_milvus_and_appears_in_no_output() {
    const TOKEN: &str = "root:Sup3r-Secret-Token";
    let (uri, seen) = recording_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("milvus-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = TestConfig::with_milvus(
        &format!(
            "[milvus]\nuri = \"{uri}\"\ntoken_file = \"{}\"\nconnect_timeout = \"5s\"\nretry_deadline = \"1s\"\n",
            token_file.display()
        ),
        "",
        &unique_collection("token"),
        "",
    );
    let settings = config.settings();
    assert!(!format!("{settings:?}").contains("Sup3r"), "settings' Debug output carries no token");
    let sink = vecdrop::sink::MilvusSink::open(&settings.milvus, config.dir.path()).await.unwrap();
    let _ = sink.has_collection("anything").await; // through the SDK's client
    let _ = sink.flush("anything").await; // through the generated gRPC client
    let expected = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(TOKEN)
    };
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "both clients called: {seen:?}");
    assert!(seen.iter().all(|header| *header == expected), "every request carried the token: {seen:?}");

    // Against the real server (no authentication: the token is carried and ignored), `vecdrop
    // check` works and prints no token.
    let real = TestConfig::with_milvus(
        &format!("[milvus]\nuri = \"{}\"\ntoken_file = \"{}\"\n", milvus_uri(), token_file.display()),
        "",
        &unique_collection("token_check"),
        "",
    );
    let output = real.run("check", &[]);
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{printed}");
    assert!(!printed.contains("Sup3r") && !printed.contains(&expected), "{printed}");
}
