//! The status endpoint on `status.listen`: `/metrics` (Prometheus text), `/status` (JSON) and
//! `/healthz` (200 `ok` when every pipeline imports normally, 503 with one line per pipeline that
//! waits, is paused or stopped, saying why and since when).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::task::JoinHandle;

use super::DaemonError;
use crate::ledger::{FileEntry, FileState, ScheduleEntry};
use crate::pipeline::ImportContext;
use crate::telemetry::{FileProgress, HealthState, PipelineHealth};

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

/// A running status server.
pub struct StatusServer {
    /// The address it listens on (the configured one, with the port resolved).
    pub address: SocketAddr,
    task: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl StatusServer {
    /// Stops serving.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Binds `listen` and serves the endpoints from `state` until stopped.
pub async fn serve(listen: &str, state: Arc<DaemonState>) -> Result<StatusServer, DaemonError> {
    let listen_error = |source| DaemonError::Listen { address: listen.to_owned(), source };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(listen_error)?;
    let address = listener.local_addr().map_err(listen_error)?;
    let router =
        Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).route("/status", get(status)).with_state(state);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(error) = server.await {
            tracing::error!(%error, "status server failed");
        }
    });
    tracing::info!(%address, "status endpoint listening (/metrics, /status, /healthz)");
    Ok(StatusServer { address, task, stop })
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
        Ok(entries) => state.context.telemetry.set_ledger_files(&count_states(entries.iter())),
        Err(error) => tracing::warn!(%error, "metrics: cannot read the ledger"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.context.telemetry.encode_metrics()).into_response()
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
