//! The status endpoint on `status.listen`: `/metrics` (OpenMetrics text), `/status` (JSON) and
//! `/healthz` (200 `ok` when every pipeline imports normally, 503 with one line per pipeline that
//! waits, is paused or stopped, saying why and since when).
//!
//! `/status` shows paths, file names and plugin errors, so the server limits who may ask and how
//! much any client can hold ([`Limits`], [`Access`]):
//!
//! - **Connections.** At most [`Limits::max_connections`] are served at once. One more is sent a
//!   `503` (when its socket takes the few bytes at once) and closed right away: it is never queued.
//! - **Time.** A client has [`Limits::header_read_timeout`] to send a request's head (from the
//!   connection's start, and again after each answer on a kept-alive connection), or the connection
//!   is closed without an answer: a client that sends half a request line cannot hold a slot. A
//!   handler has [`Limits::request_timeout`] to answer (then `503`). A connection older than
//!   [`Limits::connection_lifetime`] is closed after its current answer, and dropped
//!   `request_timeout` later if that answer is still not taken, so a client that never reads holds
//!   its slot a bounded time. A request head is at most 16 KiB (`431` beyond).
//! - **Host.** Every request must name this server in `Host` (any port): `localhost`, a loopback
//!   address, the address the connection reached, `status.listen`'s host, or one of
//!   `status.allowed_hosts`. Anything else is answered `421`, a request without `Host` `400`. This
//!   defeats DNS rebinding: a page from `evil.example` whose name the attacker points at 127.0.0.1
//!   still sends `Host: evil.example`.
//! - **Token.** With `status.token_file`, every path except [`OPEN_PATHS`] (`/healthz` and
//!   `/metrics`, which show no paths or file contents) needs `Authorization: Bearer <token>` —
//!   unknown paths too, so a new endpoint is guarded by default — and is answered `401` without it.
//!   The token is compared in constant time (as BLAKE3 hashes). A server whose bound address is not
//!   loopback refuses to start without a token.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::DaemonError;
use crate::ledger::{FileEntry, FileState, ScheduleEntry};
use crate::pipeline::ImportContext;
use crate::settings::{Settings, StatusSettings};
use crate::telemetry::{FileProgress, HealthState, PipelineHealth, OPENMETRICS_CONTENT_TYPE};

/// Paths that need no token even when one is configured: they show no paths or file contents.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/metrics"];

/// The largest request head (request line and headers) read; `431` beyond.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// What a connection over [`Limits::max_connections`] is sent before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n";

/// How long the accept loop pauses after a failed `accept` (e.g. out of file descriptors), so
/// that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the handlers read.
pub struct DaemonState {
    context: ImportContext,
    started_at: String,
}

impl DaemonState {
    /// State for a daemon importing with `context`.
    pub fn new(context: ImportContext) -> Self {
        Self { context, started_at: crate::timestamp::now_rfc3339() }
    }
}

/// `/status`: the daemon as a whole.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// vecdrop's version.
    pub version: &'static str,
    /// When the daemon started (RFC 3339).
    pub started_at: String,
    /// Whether Milvus answers.
    pub milvus: MilvusReport,
    /// The model in use.
    pub model: ModelReport,
    /// Ready files waiting for a worker.
    pub queue_depth: usize,
    /// One entry per pipeline.
    pub pipelines: Vec<PipelineReport>,
    /// Files being imported, with progress.
    pub in_flight: Vec<FileProgress>,
    /// Schedules: last run, outcome, next run.
    pub schedules: Vec<ScheduleEntry>,
    /// Files that failed, most recent last (at most 20).
    pub recent_failures: Vec<FileEntry>,
}

/// Milvus in `/status`.
#[derive(Debug, Serialize)]
pub struct MilvusReport {
    /// Milvus answered the last call.
    pub reachable: bool,
    /// Since when that has been so (RFC 3339).
    pub since: String,
}

/// The model in `/status`.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    /// `dir:precision:max_tokens`.
    pub identity: String,
    /// Vector length.
    pub dimension: usize,
    /// The batch shape in force, where it came from and the calibration's measurements.
    pub batch: crate::embed::calibrate::ShapeChoice,
}

/// One pipeline in `/status`.
#[derive(Debug, Serialize)]
pub struct PipelineReport {
    /// The pipeline's name.
    pub name: String,
    /// Milvus collection.
    pub collection: String,
    /// Drop folders.
    pub watch: Vec<String>,
    /// Cron expression, if scheduled.
    pub schedule: Option<String>,
    /// Ledger files by state (`importing`, `imported`, `failed`).
    pub files: BTreeMap<String, u64>,
    /// Rows committed, over every file in the ledger.
    pub rows_imported: u64,
    /// Records dead-lettered, over every file in the ledger.
    pub rows_rejected: u64,
    /// Rows skipped as unchanged, over every file in the ledger.
    pub rows_unchanged: u64,
    /// Whether it imports normally, or waits (and why, since when).
    pub health: PipelineHealth,
}

/// How much the status server takes on. [`Limits::default`] is what the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is sent `503` and closed at once, never queued.
    pub max_connections: usize,
    /// Time a client has to send a request's head, from the connection's start and again after
    /// each answer; then the connection is closed without an answer.
    pub header_read_timeout: Duration,
    /// Time a handler has to answer; then `503`.
    pub request_timeout: Duration,
    /// Age after which a connection is closed once its current answer is sent (and dropped
    /// `request_timeout` later if it is not).
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    /// 64 connections, 10 s to send a head, 10 s to answer, 5 min per connection.
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(300),
        }
    }
}

/// Who may ask: which `Host` names are served, and the token that paths other than
/// [`OPEN_PATHS`] need.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Host names served besides `localhost`, loopback addresses, the address a connection reached
    /// and the listen address's host. Any port; compared without case.
    pub allowed_hosts: Vec<String>,
    /// The bearer token; `None`: no token needed (allowed on loopback only).
    pub token: Option<Token>,
}

impl Access {
    /// `status.allowed_hosts` and the token in `status.token_file` (relative to `base_dir`, the
    /// config's folder). Fails as [`Token::from_file`] does.
    pub fn from_settings(status: &StatusSettings, base_dir: &Path) -> Result<Self, ServeError> {
        let token = status.token_file.as_ref().map(|file| Token::from_file(&base_dir.join(file))).transpose()?;
        Ok(Self { allowed_hosts: status.allowed_hosts.clone(), token })
    }
}

/// A bearer token. Only its BLAKE3 hash is kept, and [`Token::matches`] compares hashes in
/// constant time, so neither the token's bytes nor its length leak through timing. `Debug` shows
/// no part of it.
#[derive(Clone)]
pub struct Token(blake3::Hash);

impl Token {
    /// A token from its text; `None` when it is empty or not one word of printable ASCII (what an
    /// `Authorization` header can carry).
    pub fn new(secret: &str) -> Option<Self> {
        let printable = !secret.is_empty() && secret.bytes().all(|byte| byte.is_ascii_graphic());
        printable.then(|| Self(blake3::hash(secret.as_bytes())))
    }

    /// The token in `path`, surrounding whitespace (a trailing newline) ignored. Fails when the
    /// file cannot be read, holds no token (see [`Token::new`]) or is readable by others than its
    /// owner and group, which would give the token away.
    pub fn from_file(path: &Path) -> Result<Self, ServeError> {
        use std::os::unix::fs::PermissionsExt;
        let refuse = |reason: String| ServeError::TokenFile { path: path.to_owned(), reason };
        let mode = std::fs::metadata(path).map_err(|error| refuse(error.to_string()))?.permissions().mode();
        if mode & 0o007 != 0 {
            return Err(refuse(format!("readable by others (mode {:o}): chmod o-rwx it", mode & 0o777)));
        }
        let text = std::fs::read_to_string(path).map_err(|error| refuse(error.to_string()))?;
        Self::new(text.trim()).ok_or_else(|| refuse("must hold the token: one word of printable ASCII".to_owned()))
    }

    /// Whether `presented` is this token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        blake3::hash(presented.as_bytes()) == self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Token([redacted])")
    }
}

/// Why the status server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address cannot be bound.
    #[error("cannot listen: {0}")]
    Listen(#[source] std::io::Error),
    /// `status.token_file` cannot be used.
    #[error("status.token_file {path}: {reason}")]
    TokenFile {
        /// The file, resolved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The bound address is not loopback and no token guards `/status`.
    #[error(
        "bound to {address}, which is not loopback: /status shows paths and file names, so set status.token_file \
         (a file holding a bearer token, see etc/vecdrop.toml) or listen on 127.0.0.1"
    )]
    TokenRequired {
        /// The address bound.
        address: SocketAddr,
    },
}

/// A running status server.
pub struct StatusServer {
    /// The address it listens on (the configured one, with the port resolved).
    pub address: SocketAddr,
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl StatusServer {
    /// Stops accepting, lets each connection finish its current answer (for at most
    /// [`Limits::request_timeout`]) and closes them.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Binds `listen` and serves the endpoints from `state` until stopped, with the token and host
/// names of `state`'s `[status]` settings and [`Limits::default`]. Fails as [`serve_app`] does,
/// or when `status.token_file` cannot be used.
pub async fn serve(listen: &str, state: Arc<DaemonState>) -> Result<StatusServer, DaemonError> {
    let settings = Arc::clone(&state.context.settings);
    let listen_error = |error: ServeError| match error {
        ServeError::Listen(source) => DaemonError::Listen { address: listen.to_owned(), source },
        // The token file or a listen address that needs one: the operator's to fix (exit 2).
        other => DaemonError::StatusAccess(other.to_string()),
    };
    let access = Access::from_settings(&settings.status, &settings.base_dir).map_err(listen_error)?;
    let guarded = if access.token.is_some() { "token needed for /status" } else { "no token" };
    let server = serve_app(listen, routes(state), access, Limits::default()).await.map_err(listen_error)?;
    tracing::info!(address = %server.address, "status endpoint listening (/metrics, /status, /healthz; {guarded})");
    Ok(server)
}

/// The daemon's endpoints over `state`.
fn routes(state: Arc<DaemonState>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).route("/status", get(status)).with_state(state)
}

/// Binds `listen` and serves `app` until stopped, guarded as the module doc describes: `access`
/// says which hosts are served and which token paths other than [`OPEN_PATHS`] need, `limits`
/// bounds connections and time. Fails when `listen` cannot be bound, or when the bound address is
/// not loopback and `access` has no token.
pub async fn serve_app(listen: &str, app: Router, access: Access, limits: Limits) -> Result<StatusServer, ServeError> {
    let listener = TcpListener::bind(listen).await.map_err(ServeError::Listen)?;
    let address = listener.local_addr().map_err(ServeError::Listen)?;
    if !address.ip().to_canonical().is_loopback() && access.token.is_none() {
        return Err(ServeError::TokenRequired { address });
    }
    let hosts = Arc::new(HostNames::new(listen, &access.allowed_hosts));
    let app = guard(app, hosts, access.token.map(Arc::new), limits.request_timeout);
    let stop = CancellationToken::new();
    let task = tokio::spawn(accept_loop(listener, app, limits, stop.clone()));
    Ok(StatusServer { address, task, stop })
}

/// `app` behind the request timeout, the `Host` check and the token check, outermost first.
fn guard(app: Router, hosts: Arc<HostNames>, token: Option<Arc<Token>>, request_timeout: Duration) -> Router {
    app.layer(middleware::from_fn_with_state(token, check_token))
        .layer(middleware::from_fn_with_state(hosts, check_host))
        .layer(middleware::from_fn_with_state(request_timeout, time_limit))
}

/// Accepts connections until `stop`, each served by its own task while one of
/// `limits.max_connections` permits is free and refused otherwise; then waits up to
/// `limits.request_timeout` for the connections to close, and drops the rest.
async fn accept_loop(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        // Cancel-safe: `accept` loses no connection when another branch wins, and `join_next`
        // only reaps tasks that ended.
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "status endpoint: cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => drop(connections.spawn(serve_connection(stream, app.clone(), limits, stop.clone(), permit))),
            Err(_) => refuse(stream),
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(limits.request_timeout, drained).await;
}

/// Sends a connection over the cap `503` if its socket takes the bytes at once, and closes it.
/// The client reads the `503`, or sees the connection reset when it had sent bytes not yet read.
fn refuse(stream: TcpStream) {
    tracing::debug!("status endpoint: too many connections, one refused");
    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
}

/// The address a connection reached, as a request extension (for the `Host` check).
#[derive(Debug, Clone, Copy)]
struct Reached(IpAddr);

/// Serves one connection with hyper's HTTP/1 (head timeout, head size cap) until the client
/// leaves, the connection is older than `limits.connection_lifetime`, or the server stops;
/// `_permit` holds its slot meanwhile.
async fn serve_connection(stream: TcpStream, app: Router, limits: Limits, stop: CancellationToken, _permit: OwnedSemaphorePermit) {
    let Ok(reached) = stream.local_addr().map(|address| Reached(address.ip().to_canonical())) else { return };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(reached);
        app.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // Cancel-safe: the connection is pinned and polled on below, after a graceful shutdown.
    tokio::select! {
        result = connection.as_mut() => return log_connection_end(result),
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(limits.connection_lifetime) => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Ok(result) = tokio::time::timeout(limits.request_timeout, connection).await {
        log_connection_end(result);
    }
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        tracing::debug!(%error, "status endpoint: connection closed");
    }
}

/// 503 when the rest of the stack takes longer than `limit`.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

/// 421 unless every host the request names (the `Host` header, and an absolute URI's authority)
/// is one `hosts` serves; 400 when it names none, or has more than one `Host` header.
async fn check_host(State(hosts): State<Arc<HostNames>>, request: Request, next: Next) -> Response {
    let reached = request.extensions().get::<Reached>().map(|reached| reached.0);
    let headers = request.headers().get_all(header::HOST);
    if headers.iter().count() > 1 {
        return (StatusCode::BAD_REQUEST, "more than one Host header\n").into_response();
    }
    let named: Vec<Option<&str>> = headers
        .iter()
        .map(|value| value.to_str().ok())
        .chain(request.uri().authority().map(|authority| Some(authority.as_str())))
        .collect();
    if named.is_empty() {
        return (StatusCode::BAD_REQUEST, "a Host header is needed\n").into_response();
    }
    if !named.iter().all(|host| host.is_some_and(|host| hosts.serves(host, reached))) {
        tracing::debug!(?named, "status endpoint: request for another host refused");
        return (StatusCode::MISDIRECTED_REQUEST, "this server does not serve that Host (see status.allowed_hosts)\n").into_response();
    }
    next.run(request).await
}

/// 401 for paths other than [`OPEN_PATHS`] unless the request carries `token` (when there is one).
async fn check_token(State(token): State<Option<Arc<Token>>>, request: Request, next: Next) -> Response {
    let Some(token) = token else { return next.run(request).await };
    if OPEN_PATHS.contains(&request.uri().path()) || bearer(request.headers()).is_some_and(|presented| token.matches(presented)) {
        return next.run(request).await;
    }
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a bearer token is needed (status.token_file)\n").into_response()
}

/// The credentials of an `Authorization: Bearer …` header (scheme in any case), if there is one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim())
}

/// The host names a server answers to besides loopback ones: its listen address's host and the
/// configured extra names, normalised by [`host_name`].
#[derive(Debug)]
struct HostNames(Vec<String>);

impl HostNames {
    /// The host of `listen` (`HOST:PORT`) and `allowed`.
    fn new(listen: &str, allowed: &[String]) -> Self {
        let listen_host = listen.rsplit_once(':').map_or(listen, |(host, _)| host);
        Self(std::iter::once(listen_host).chain(allowed.iter().map(String::as_str)).filter_map(host_name).collect())
    }

    /// Whether `authority` (`host[:port]`, as in a `Host` header) names this server: `localhost`,
    /// a loopback address, `reached` (the address the connection reached) or one of the names.
    fn serves(&self, authority: &str, reached: Option<IpAddr>) -> bool {
        let Some(name) = host_name(authority) else { return false };
        if name == "localhost" || self.0.contains(&name) {
            return true;
        }
        name.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback() || Some(ip.to_canonical()) == reached)
    }
}

/// The host of `authority` (`host`, `host:port`, `[v6]:port`), lower case, without brackets or a
/// trailing dot; `None` when it is not a valid authority or carries user information.
fn host_name(authority: &str) -> Option<String> {
    let authority: Authority = authority.trim().parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

async fn healthz(State(state): State<Arc<DaemonState>>) -> Response {
    let telemetry = &state.context.telemetry;
    let troubled: Vec<String> = state
        .context
        .settings
        .pipelines
        .iter()
        .filter_map(|pipeline| {
            let health = telemetry.health(&pipeline.name);
            (health.state != HealthState::Ok).then(|| health_line(&pipeline.name, &health))
        })
        .collect();
    if troubled.is_empty() {
        return "ok\n".into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", troubled.join("\n"))).into_response()
}

/// `pipeline docs: waiting (transient) since …, 3 retries: cannot reach Milvus …`
fn health_line(pipeline: &str, health: &PipelineHealth) -> String {
    let state = serde_json::to_value(health.state).ok().and_then(|value| value.as_str().map(str::to_owned)).unwrap_or_default();
    let fault = health.fault.map(|fault| format!(" ({fault})")).unwrap_or_default();
    let reason = health.reason.as_deref().unwrap_or("");
    format!("pipeline {pipeline}: {state}{fault} since {}, {} retries: {reason}", health.since, health.retries)
}

fn milvus_report(state: &DaemonState) -> MilvusReport {
    let reachability = state.context.sink.reachability();
    state.context.telemetry.set_milvus_reachable(reachability.reachable);
    MilvusReport { reachable: reachability.reachable, since: crate::timestamp::rfc3339(reachability.since) }
}

async fn metrics(State(state): State<Arc<DaemonState>>) -> Response {
    milvus_report(&state);
    match ledger_entries(&state).await {
        Ok(entries) => state.context.telemetry.set_ledger_files(&count_states_by_pipeline(&state.context.settings, &entries)),
        Err(error) => tracing::warn!(%error, "metrics: cannot read the ledger"),
    }
    ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], state.context.telemetry.encode_metrics()).into_response()
}

/// File counts by state per pipeline: every configured pipeline (empty ones too) and any other
/// pipeline the ledger still holds files of.
fn count_states_by_pipeline(settings: &Settings, entries: &[FileEntry]) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut pipelines: BTreeMap<String, BTreeMap<String, u64>> =
        settings.pipelines.iter().map(|pipeline| (pipeline.name.clone(), BTreeMap::new())).collect();
    for entry in entries {
        let counts = pipelines.entry(entry.pipeline.clone()).or_default();
        for (state, count) in count_states(std::iter::once(entry)) {
            *counts.entry(state).or_insert(0) += count;
        }
    }
    pipelines
}

async fn status(State(state): State<Arc<DaemonState>>) -> Response {
    match report(&state).await {
        Ok(report) => Json(report).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
}

async fn report(state: &DaemonState) -> Result<StatusReport, String> {
    let entries = ledger_entries(state).await?;
    let ledger = state.context.ledger.clone();
    let schedules = tokio::task::spawn_blocking(move || ledger.schedules())
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())?;
    let settings = &state.context.settings;
    let pipelines = settings
        .pipelines
        .iter()
        .map(|pipeline| {
            let mine: Vec<&FileEntry> = entries.iter().filter(|entry| entry.pipeline == pipeline.name).collect();
            PipelineReport {
                name: pipeline.name.clone(),
                collection: pipeline.collection.name.clone(),
                watch: pipeline.watch.iter().map(|dir| dir.display().to_string()).collect(),
                schedule: pipeline.schedule.as_ref().map(|schedule| schedule.cron.to_string()),
                files: count_states(mine.iter().copied()),
                rows_imported: mine.iter().map(|entry| entry.rows_imported).sum(),
                rows_rejected: mine.iter().map(|entry| entry.rows_rejected).sum(),
                rows_unchanged: mine.iter().map(|entry| entry.rows_unchanged).sum(),
                health: state.context.telemetry.health(&pipeline.name),
            }
        })
        .collect();
    let mut failures: Vec<FileEntry> = entries.into_iter().filter(|entry| matches!(entry.state, FileState::Failed { .. })).collect();
    failures.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
    let recent_failures = failures.split_off(failures.len().saturating_sub(20));
    Ok(StatusReport {
        version: env!("CARGO_PKG_VERSION"),
        started_at: state.started_at.clone(),
        milvus: milvus_report(state),
        model: ModelReport {
            identity: state.context.embedder.identity().to_owned(),
            dimension: state.context.embedder.dimension(),
            batch: state.context.embedder.shape_choice().clone(),
        },
        queue_depth: state.context.telemetry.queue_depth(),
        pipelines,
        in_flight: state.context.telemetry.in_flight(),
        schedules,
        recent_failures,
    })
}

async fn ledger_entries(state: &DaemonState) -> Result<Vec<FileEntry>, String> {
    let ledger = state.context.ledger.clone();
    tokio::task::spawn_blocking(move || ledger.entries()).await.map_err(|error| error.to_string())?.map_err(|error| error.to_string())
}

fn count_states<'a>(entries: impl Iterator<Item = &'a FileEntry>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in entries {
        let state = match entry.state {
            FileState::Importing => "importing",
            FileState::Imported => "imported",
            FileState::Failed { .. } => "failed",
        };
        *counts.entry(state.to_owned()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(listen: &str, allowed: &[&str]) -> HostNames {
        HostNames::new(listen, &allowed.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn host_names_are_normalised() {
        assert_eq!(host_name("LocalHost:9464").as_deref(), Some("localhost"));
        assert_eq!(host_name("localhost.").as_deref(), Some("localhost"));
        assert_eq!(host_name("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(host_name("[::1]").as_deref(), Some("::1"));
        assert_eq!(host_name("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("user@localhost"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name("bad host"), None);
    }

    #[test]
    fn loopback_names_are_served_with_or_without_port() {
        let hosts = names("127.0.0.1:9464", &[]);
        for host in
            ["localhost", "localhost:9464", "127.0.0.1", "127.0.0.1:1", "127.1.2.3:9464", "[::1]", "[::1]:9464", "[::ffff:127.0.0.1]"]
        {
            assert!(hosts.serves(host, None), "{host} should be served");
        }
    }

    #[test]
    fn other_names_are_refused() {
        let hosts = names("127.0.0.1:9464", &[]);
        for host in ["evil.example", "evil.example:9464", "localhost.evil.example", "127.0.0.1.nip.io", "10.0.0.5:9464", "user@localhost"] {
            assert!(!hosts.serves(host, None), "{host} should be refused");
        }
    }

    #[test]
    fn the_listen_host_the_reached_address_and_allowed_hosts_are_served() {
        let hosts = names("Metrics.Internal:9464", &["scrape.example.", "[fd00::5]"]);
        assert!(hosts.serves("metrics.internal:9464", None));
        assert!(hosts.serves("SCRAPE.example", None));
        assert!(hosts.serves("[fd00::5]:9464", None));
        assert!(!hosts.serves("other.example", None));
        let reached = Some("192.0.2.7".parse().unwrap());
        assert!(hosts.serves("192.0.2.7:9464", reached));
        assert!(!hosts.serves("192.0.2.8:9464", reached));
        assert!(names("0.0.0.0:9464", &[]).serves("0.0.0.0:9464", None), "what `vecdrop status` sends");
        assert!(names("[::]:9464", &[]).serves("[::ffff:192.0.2.7]:9464", reached), "a v4 client on a dual-stack socket");
    }

    #[test]
    fn bearer_credentials_are_read_from_authorization() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert_eq!(bearer(&headers("Bearer s3cret")), Some("s3cret"));
        assert_eq!(bearer(&headers("bearer  s3cret")), Some("s3cret"));
        assert_eq!(bearer(&headers("Basic czNjcmV0")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn a_token_matches_only_itself_and_does_not_show() {
        let token = Token::new("s3cret-Token").unwrap();
        assert!(token.matches("s3cret-Token"));
        assert!(!token.matches("s3cret-token"));
        assert!(!token.matches("s3cret-Token "));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "Token([redacted])");
        assert!(Token::new("").is_none());
        assert!(Token::new("two words").is_none());
        assert!(Token::new("tab\there").is_none());
    }

    fn token_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("status-token");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_token_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let token = Token::from_file(&token_file(dir.path(), "s3cret\n", 0o600)).unwrap();
        assert!(token.matches("s3cret"));
        assert!(Token::from_file(&token_file(dir.path(), "s3cret", 0o640)).is_ok(), "group-readable is fine");
    }

    #[test]
    fn a_token_file_that_others_can_read_or_that_holds_no_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = Token::from_file(&token_file(dir.path(), "s3cret\n", 0o644)).unwrap_err().to_string();
        assert!(error.contains("readable by others (mode 644)"), "{error}");
        let error = Token::from_file(&token_file(dir.path(), " \n", 0o600)).unwrap_err().to_string();
        assert!(error.contains("must hold the token"), "{error}");
        let error = Token::from_file(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(error.starts_with("status.token_file ") && error.contains("missing"), "{error}");
    }

    #[test]
    fn a_relative_token_file_is_found_in_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        token_file(dir.path(), "s3cret\n", 0o600);
        let status = StatusSettings { token_file: Some(PathBuf::from("status-token")), ..StatusSettings::default() };
        let access = Access::from_settings(&status, dir.path()).unwrap();
        assert!(access.token.unwrap().matches("s3cret"));
        assert!(Access::from_settings(&StatusSettings::default(), dir.path()).unwrap().token.is_none());
    }
}
