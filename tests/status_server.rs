//! The status server's guards (`daemon::http::serve_app`), over real TCP on 127.0.0.1:0 with a
//! stub app standing for the daemon's endpoints: the `Host` check (DNS rebinding), the bearer token
//! for everything but `/healthz` and `/metrics`, the header read timeout (slowloris), the request
//! timeout and the connection cap. Timeouts are short here (200 ms) so that the tests are quick;
//! the tests assert what happens, never how fast (waits are bounded only to turn a hang into a
//! failure).

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vecdrop::daemon::http::{serve_app, Access, Limits, ServeError, StatusServer, Token};

/// How long a test waits for something that should happen at once: a hang guard, not a speed bound,
/// yet below hyper's own 30 s default head timeout, so that a server ignoring `Limits` fails.
const PATIENCE: Duration = Duration::from_secs(15);

const TOKEN: &str = "s3cret-token";

/// The daemon's three paths with fixed answers, and a slow one.
fn app() -> Router {
    Router::new()
        .route("/status", get(|| async { "secret status" }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(|| async { "# metrics\n" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never"
            }),
        )
}

fn limits() -> Limits {
    Limits { header_read_timeout: Duration::from_millis(200), request_timeout: Duration::from_millis(200), ..Limits::default() }
}

async fn start(access: Access, limits: Limits) -> StatusServer {
    serve_app("127.0.0.1:0", app(), access, limits).await.expect("the status server starts on loopback")
}

fn with_token() -> Access {
    Access { token: Some(Token::new(TOKEN).unwrap()), ..Access::default() }
}

/// A GET of `path` naming `host`, with `extra` header lines, closing the connection after.
fn get_request(path: &str, host: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
}

/// Sends `raw` on a new connection and reads until the server closes it: status code and body.
async fn exchange(server: &StatusServer, raw: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await.expect("the server answers and closes").unwrap();
    parse(&String::from_utf8_lossy(&answer)).unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// GET `path` as a loopback client, with `extra` header lines.
async fn get_path(server: &StatusServer, path: &str, extra: &str) -> (u16, String) {
    exchange(server, &get_request(path, &server.address.to_string(), extra)).await
}

/// GET `path` on a new connection: the status code, `None` when the connection was reset (as a
/// refused one may be when the request was sent before the server closed it).
async fn try_get(server: &StatusServer, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(server.address).await.ok()?;
    stream.write_all(get_request(path, "localhost", "").as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await.expect("the server answers and closes").ok()?;
    parse(&String::from_utf8_lossy(&answer)).map(|(status, _)| status)
}

/// Status code and body of a whole answer.
fn parse(answer: &str) -> Option<(u16, String)> {
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Sends one keep-alive GET on `stream` and reads its answer (by `content-length`), leaving the
/// connection open.
async fn keep_alive_get(stream: &mut TcpStream, path: &str) -> (u16, String) {
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let complete = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let length: usize = head.lines().find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:")?.trim().parse().ok())?;
        (body.len() >= length).then(|| parse(&text)).flatten()
    };
    loop {
        if let Some(parsed) = complete(&answer) {
            return parsed;
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await.expect("an answer").unwrap();
        assert!(read > 0, "the server closed a kept-alive connection: {answer:?}");
        answer.extend_from_slice(&chunk[..read]);
    }
}

/// Reads from `stream` until the server closes it (end of file or a reset): what was read.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => answer.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was still open after {PATIENCE:?}; read so far: {answer:?}");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_and_loopback_names_are_served() {
    let server = start(Access::default(), limits()).await;
    let port = server.address.port();
    for host in ["evil.example".to_owned(), format!("evil.example:{port}"), format!("localhost.evil.example:{port}")] {
        let (status, body) = exchange(&server, &get_request("/status", &host, "")).await;
        assert_eq!(status, 421, "Host {host}: {body}");
        assert!(!body.contains("secret"), "{body}");
    }
    for host in [
        "localhost".to_owned(),
        format!("localhost:{port}"),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:{port}"),
        "[::1]".to_owned(),
        format!("[::1]:{port}"),
    ] {
        let (status, body) = exchange(&server, &get_request("/status", &host, "")).await;
        assert_eq!((status, body.as_str()), (200, "secret status"), "Host {host}");
    }
    // An absolute URI names the host as well; both must be this server.
    let (status, _) =
        exchange(&server, &format!("GET http://evil.example:{port}/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(status, 421);
    let (status, _) = exchange(&server, "GET /status HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 400, "a request without Host");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_needs_the_token_when_one_is_configured() {
    let server = start(with_token(), limits()).await;
    let (status, body) = get_path(&server, "/status", "").await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("secret status"));
    for wrong in ["Authorization: Bearer wrong\r\n", "Authorization: Bearer s3cret-token2\r\n", "Authorization: Basic czNjcmV0LXRva2Vu\r\n"]
    {
        assert_eq!(get_path(&server, "/status", wrong).await.0, 401, "{wrong}");
    }
    let right = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(get_path(&server, "/status", &right).await, (200, "secret status".to_owned()));
    assert_eq!(get_path(&server, "/healthz", "").await, (200, "ok\n".to_owned()), "/healthz stays open");
    assert_eq!(get_path(&server, "/metrics", "").await.0, 200, "/metrics stays open");
    assert_eq!(get_path(&server, "/anything-new", "").await.0, 401, "paths not known to be harmless are guarded");
    assert_eq!(get_path(&server, "/anything-new", &right).await.0, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_status_is_open_on_loopback() {
    let server = start(Access::default(), limits()).await;
    assert_eq!(get_path(&server, "/status", "").await, (200, "secret status".to_owned()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_beyond_loopback_needs_a_token() {
    let refused = serve_app("0.0.0.0:0", app(), Access::default(), limits()).await;
    let Err(error @ ServeError::TokenRequired { .. }) = refused else { panic!("started without a token on 0.0.0.0") };
    assert!(error.to_string().contains("status.token_file"), "{error}");
    let server = serve_app("0.0.0.0:0", app(), with_token(), limits()).await.expect("starts with a token");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_nothing_or_half_a_head_is_disconnected() {
    let server = start(Access::default(), limits()).await;
    let mut silent = TcpStream::connect(server.address).await.unwrap();
    let mut slow = TcpStream::connect(server.address).await.unwrap();
    slow.write_all(b"GET /status HT").await.unwrap();
    let silent_read = read_until_closed(&mut silent).await;
    let slow_read = read_until_closed(&mut slow).await;
    assert!(!silent_read.contains("secret") && !slow_read.contains("secret"), "{silent_read:?} {slow_read:?}");
    // A kept-alive connection gets the same time for its next request.
    let mut idle = TcpStream::connect(server.address).await.unwrap();
    assert_eq!(keep_alive_get(&mut idle, "/healthz").await.0, 200);
    read_until_closed(&mut idle).await;
    assert_eq!(get_path(&server, "/healthz", "").await.0, 200, "the server still answers");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_is_answered_503() {
    let server = start(Access::default(), limits()).await;
    let (status, body) = get_path(&server, "/slow", "").await;
    assert_eq!((status, body.as_str()), (503, "request timed out\n"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_at_once_not_queued() {
    // Long head timeout: the two held connections must outlive the third's attempt.
    let limits = Limits { max_connections: 2, header_read_timeout: Duration::from_secs(600), ..limits() };
    let server = start(Access::default(), limits).await;
    let mut first = TcpStream::connect(server.address).await.unwrap();
    let mut second = TcpStream::connect(server.address).await.unwrap();
    // Answered: both are being served, and hold the two slots while kept alive.
    assert_eq!(keep_alive_get(&mut first, "/healthz").await.0, 200);
    assert_eq!(keep_alive_get(&mut second, "/healthz").await.0, 200);

    let mut third = TcpStream::connect(server.address).await.unwrap();
    let answer = read_until_closed(&mut third).await;
    assert_eq!(parse(&answer), Some((503, "too many connections\n".to_owned())), "{answer:?}");

    drop(first);
    // The slot comes free once the server has seen the client leave.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while try_get(&server, "/healthz").await != Some(200) {
        assert!(tokio::time::Instant::now() < deadline, "no slot came free after a client left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(keep_alive_get(&mut second, "/status").await.0, 200, "held connections are still served");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_kept_alive_connections() {
    let server = start(Access::default(), Limits { header_read_timeout: Duration::from_secs(600), ..limits() }).await;
    let mut idle = TcpStream::connect(server.address).await.unwrap();
    assert_eq!(keep_alive_get(&mut idle, "/healthz").await.0, 200);
    tokio::time::timeout(PATIENCE, server.stop()).await.expect("stop returns");
    read_until_closed(&mut idle).await;
}

// The daemon itself: `[status]` settings reach the server (`daemon::http::serve`).

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use support::daemon::Daemon;
use support::{unique_collection, TestConfig};

/// A config whose `[status]` table is `status`, with one drop-folder pipeline.
fn daemon_config(status: &str) -> TestConfig {
    TestConfig::with_sections(&unique_collection("status_server"), "watch = [\"drop\"]", &format!("[status]\n{status}\n"))
}

/// A blocking GET of `path` from `address` naming `host`, with `extra` header lines.
fn blocking_get(address: &str, path: &str, host: &str, extra: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(get_request(path, host, extra).as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    parse(&answer).unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[test]
fn the_daemons_status_needs_the_token_from_its_token_file() {
    let listen = support::daemon::concrete_free_address();
    let config = daemon_config(&format!("listen = \"{listen}\"\ntoken_file = \"status-token\""));
    let token_file = config.dir.path().join("status-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = Daemon::start(&config, &listen);
    let address = daemon.status_address().to_owned();
    // `vecdrop status` (the daemon holds the ledger) asks /status with the token from the config.
    let cli = config.run("status", &[]);
    assert_eq!(cli.status.code(), Some(0), "{}", String::from_utf8_lossy(&cli.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(cli["pipelines"][0]["name"], "test");

    assert_eq!(blocking_get(&address, "/status", &address, "").0, 401);
    assert_eq!(blocking_get(&address, "/status", &address, "Authorization: Bearer wrong\r\n").0, 401);
    let (status, body) = blocking_get(&address, "/status", &address, &format!("Authorization: Bearer {TOKEN}\r\n"));
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("/status is JSON");
    assert_eq!(report["pipelines"][0]["name"], "test");
    assert!(matches!(blocking_get(&address, "/healthz", &address, "").0, 200 | 503), "/healthz needs no token");
    assert_eq!(blocking_get(&address, "/metrics", &address, "").0, 200, "/metrics needs no token");
    assert_eq!(blocking_get(&address, "/metrics", "evil.example", "").0, 421, "DNS rebinding");
    daemon.kill();
}

#[test]
fn the_daemon_does_not_start_beyond_loopback_without_a_token() {
    let config = daemon_config("listen = \"0.0.0.0:0\"");
    let mut daemon = Daemon::start_with_env(&config, "0.0.0.0:0", &[]);
    let exit = daemon.wait_exit(Duration::from_secs(120));
    let log = daemon.log();
    assert_eq!(exit.code(), Some(2), "the operator's to fix, and systemd's RestartPreventExitStatus=2 stops the restarts: {exit:?}\n{log}");
    assert!(log.contains("not loopback") && log.contains("status.token_file"), "the error says what to set:\n{log}");
}
