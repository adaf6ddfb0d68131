//! What the daemon tells its operator: Prometheus metrics and the files in flight.
//!
//! One [`Telemetry`] is shared by every import of a process. The pipeline reports each committed
//! batch and each finished file; the status server renders [`Telemetry::encode_metrics`] at
//! `/metrics` and [`Telemetry::in_flight`] inside `/status`. The CLI uses a `Telemetry` too and
//! simply never serves it.
//!
//! Milvus call failures and retries are counted by the one retry layer
//! ([`crate::sink::RetryPolicy`]), which holds no `Telemetry`: they go to process-wide counters
//! ([`milvus_call_failed`], [`milvus_call_retried`]) that every `Telemetry` renders.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;

use crate::dead_letter::RejectCause;
use crate::fault::Fault;
use crate::ledger::BatchCounts;

/// How a pipeline is doing, as `/status` and `/healthz` show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PipelineHealth {
    /// `ok`; `waiting` (a transient fault: files stay, retried with backoff); `paused` (a
    /// configuration fault: retried rarely, fix the named key); `stopped` (a bug: nothing more is
    /// imported until restart).
    pub state: HealthState,
    /// The class of the fault behind a state other than `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// The error, as the log has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Since when the pipeline has been in this state (RFC 3339).
    pub since: String,
    /// Retries since the fault began.
    pub retries: u64,
    /// When the next attempt is due (RFC 3339), while waiting or paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
}

/// See [`PipelineHealth::state`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Importing normally.
    Ok,
    /// Backing off after a transient fault.
    Waiting,
    /// Held back by a configuration fault.
    Paused,
    /// Stopped by a bug.
    Stopped,
}

impl PipelineHealth {
    /// A healthy pipeline.
    pub fn ok() -> Self {
        Self { state: HealthState::Ok, fault: None, reason: None, since: crate::timestamp::now_rfc3339(), retries: 0, next_attempt: None }
    }
}

/// Labels of per-pipeline metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabel {
    pipeline: String,
}

/// Labels of per-collection metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectionLabel {
    collection: String,
}

/// Labels of per-outcome file counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    pipeline: String,
    outcome: String,
}

/// Labels of per-cause counters (retries by fault, rejections by cause).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    pipeline: String,
    cause: String,
}

/// Labels of the lookup counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    pipeline: String,
    consistency: String,
}

/// Labels of the ledger's file gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LedgerLabels {
    pipeline: String,
    state: String,
}

/// Labels of the build information gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Labels of the Milvus retry counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: String,
}

/// Labels of the Milvus error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MilvusErrorLabels {
    operation: String,
    class: String,
}

/// File outcomes whose series exist from the start ([`Telemetry::declare_pipelines`]).
const FILE_OUTCOMES: [&str; 3] = ["imported", "already_imported", "failed"];
/// Causes of refused drop-folder entries (`discover::entry::Refusal::label`).
const REFUSAL_CAUSES: [&str; 3] = ["symlink", "special_file", "hard_link"];
/// Faults after which a file is tried again (`Fault::as_str`).
const RETRIED_FAULTS: [Fault; 2] = [Fault::Transient, Fault::Config];
/// Classes of failed Milvus calls (`sink::ErrorClass::as_str`).
const MILVUS_ERROR_CLASSES: [&str; 5] = ["unreachable", "busy", "rate_limited", "unauthorized", "permanent"];
/// The Milvus operation whose series exist from the start: the one every import makes.
const MILVUS_HOT_OPERATION: &str = "upsert";

/// Milvus call failures and retries of this process, counted by the retry layer.
struct MilvusCalls {
    errors: Family<MilvusErrorLabels, Counter>,
    retries: Family<OperationLabel, Counter>,
}

/// The process's [`MilvusCalls`]; the upsert series start at zero so that `rate()` and alerts
/// see a 0 rather than nothing.
static MILVUS_CALLS: LazyLock<MilvusCalls> = LazyLock::new(|| {
    let calls = MilvusCalls { errors: Family::default(), retries: Family::default() };
    calls.retries.get_or_create(&OperationLabel { operation: MILVUS_HOT_OPERATION.to_owned() }).inc_by(0);
    for class in MILVUS_ERROR_CLASSES {
        calls.errors.get_or_create(&MilvusErrorLabels { operation: MILVUS_HOT_OPERATION.to_owned(), class: class.to_owned() }).inc_by(0);
    }
    calls
});

/// Counts one failed attempt of the Milvus `operation` (`upsert`, `query`, `flush`, …) whose
/// error the retry layer classified as `class` (`unreachable`, `busy`, `rate_limited`,
/// `unauthorized`, `permanent`), whether or not it is tried again. Process-wide.
pub fn milvus_call_failed(operation: &str, class: &str) {
    MILVUS_CALLS.errors.get_or_create(&MilvusErrorLabels { operation: operation.to_owned(), class: class.to_owned() }).inc();
}

/// Counts one more attempt of the Milvus `operation` after a failed one (a retry after backoff,
/// or a rate-limited upsert sent again in halves). Process-wide.
pub fn milvus_call_retried(operation: &str) {
    MILVUS_CALLS.retries.get_or_create(&OperationLabel { operation: operation.to_owned() }).inc();
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs_f64()).unwrap_or(0.0)
}

fn batch_seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// A file being imported, as `/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileProgress {
    /// Pipeline importing it.
    pub pipeline: String,
    pub path: String,
    /// When its import started (RFC 3339).
    pub started_at: String,
    /// Rows committed by this run.
    pub rows_imported: u64,
    /// Records dead-lettered by this run.
    pub rows_rejected: u64,
    /// Rows skipped as unchanged by this run.
    pub rows_unchanged: u64,
    /// How far the committed position is (bytes for text formats, rows for Parquet).
    pub units_done: u64,
    /// The file's size in the same units (0 when unknown).
    pub units_total: u64,
    /// Set while the file goes through Milvus's bulk import.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk: Option<BulkProgress>,
}

/// Where a file on the bulk path stands (`/status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BulkProgress {
    /// `staging` (rows read, embedded, written as Parquet), `importing` (Milvus's tasks run) or
    /// `completing` (deferred rows upserted, the job committed).
    pub phase: String,
    /// Rows staged for the import.
    pub rows_staged: u64,
    /// Rows Milvus's tasks report as read so far.
    pub rows_read_by_milvus: u64,
    /// Milvus's task (or job) ids.
    pub tasks: Vec<String>,
}

/// The content type of [`Telemetry::encode_metrics`]'s text.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Metrics and in-flight files of one process.
pub struct Telemetry {
    registry: Registry,
    rows_imported: Family<PipelineLabel, Counter>,
    rows_rejected: Family<PipelineLabel, Counter>,
    rows_unchanged: Family<PipelineLabel, Counter>,
    rows_embedded: Family<PipelineLabel, Counter>,
    rows_deleted: Family<PipelineLabel, Counter>,
    rows_superseded: Family<PipelineLabel, Counter>,
    rejections: Family<CauseLabels, Counter>,
    retries: Family<CauseLabels, Counter>,
    refused_entries: Family<CauseLabels, Counter>,
    mirror_held_back: Family<PipelineLabel, Counter>,
    milvus_reachable: Gauge,
    lookups: Family<LookupLabels, Counter>,
    files: Family<OutcomeLabels, Counter>,
    ledger_files: Family<LedgerLabels, Gauge>,
    last_success: Family<PipelineLabel, Gauge<f64, AtomicU64>>,
    schedule_last_success: Family<PipelineLabel, Gauge<f64, AtomicU64>>,
    embed_seconds: Family<PipelineLabel, Histogram, fn() -> Histogram>,
    upsert_seconds: Family<PipelineLabel, Histogram, fn() -> Histogram>,
    queue_depth: Gauge,
    files_in_flight: Gauge,
    flushes: Family<CollectionLabel, Counter>,
    flushed_files: Family<CollectionLabel, Counter>,
    files_awaiting_flush: Gauge,
    bulk_rows: Family<PipelineLabel, Counter>,
    bulk_jobs: Family<OutcomeLabels, Counter>,
    in_flight: Mutex<BTreeMap<u64, FileProgress>>,
    next_id: AtomicU64,
    health: Mutex<BTreeMap<String, PipelineHealth>>,
    /// When this process began reporting: a pipeline never in trouble has been ok since then.
    started_at: String,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Registers every metric (all start at zero).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vecdrop");
        let [rows_imported, rows_rejected, rows_unchanged, rows_embedded, rows_deleted] =
            std::array::from_fn(|_| Family::<PipelineLabel, Counter>::default());
        registry.register("rows_imported", "Rows upserted into Milvus", rows_imported.clone());
        registry.register("rows_rejected", "Records written to the dead-letter file", rows_rejected.clone());
        registry.register("rows_unchanged", "Rows skipped because Milvus already held them unchanged", rows_unchanged.clone());
        registry.register("rows_embedded", "Texts embedded by the model", rows_embedded.clone());
        registry.register("rows_deleted", "Rows deleted from Milvus because their keys left a mirrored source", rows_deleted.clone());
        let rows_superseded = Family::<PipelineLabel, Counter>::default();
        registry.register(
            "rows_superseded",
            "Rows not written because a later record of the batch had the same key",
            rows_superseded.clone(),
        );
        let rejections = Family::<CauseLabels, Counter>::default();
        registry.register("rejections", "Records dead-lettered, by cause (malformed, invalid_value)", rejections.clone());
        let retries = Family::<CauseLabels, Counter>::default();
        registry.register("retries", "Files tried again after a fault that was not theirs, by fault class", retries.clone());
        let refused_entries = Family::<CauseLabels, Counter>::default();
        registry.register(
            "refused_entries",
            "Drop-folder entries refused and left alone (never read, moved or deleted), by cause (symlink, special_file, hard_link)",
            refused_entries.clone(),
        );
        let mirror_held_back = Family::<PipelineLabel, Counter>::default();
        registry.register(
            "mirror_held_back",
            "Mirror passes held back because they would delete more than mirror_max_delete_share",
            mirror_held_back.clone(),
        );
        let milvus_reachable = Gauge::default();
        milvus_reachable.set(1);
        registry.register(
            "milvus_reachable",
            "1 when Milvus answered the last call, 0 when it could not be reached",
            milvus_reachable.clone(),
        );
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "lookups",
            "Unchanged-row lookups in Milvus, by read consistency (bounded: stale reads plus this process's own writes)",
            lookups.clone(),
        );
        let files = Family::<OutcomeLabels, Counter>::default();
        registry.register("files", "Files processed, by outcome", files.clone());
        let ledger_files = Family::<LedgerLabels, Gauge>::default();
        registry.register("ledger_files", "Files known to the ledger, by pipeline and state", ledger_files.clone());
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_owned() }).set(1);
        registry.register("build_info", "1, labelled with the version of vecdrop that runs", build_info);
        let [last_success, schedule_last_success] = std::array::from_fn(|_| Family::<PipelineLabel, Gauge<f64, AtomicU64>>::default());
        registry.register_with_unit(
            "last_success_timestamp",
            "When a file of the pipeline was last imported or found already imported (Unix time)",
            Unit::Seconds,
            last_success.clone(),
        );
        registry.register_with_unit(
            "schedule_last_success_timestamp",
            "When a scheduled run of the pipeline last ended without a failed file (Unix time)",
            Unit::Seconds,
            schedule_last_success.clone(),
        );
        registry.register(
            "milvus_errors",
            "Failed Milvus call attempts, by operation and error class (unreachable, busy, rate_limited, unauthorized, permanent)",
            MILVUS_CALLS.errors.clone(),
        );
        registry.register(
            "milvus_retries",
            "Milvus call attempts repeated by the retry layer after a failed one, by operation",
            MILVUS_CALLS.retries.clone(),
        );
        let embed_seconds =
            Family::<PipelineLabel, Histogram, fn() -> Histogram>::new_with_constructor(batch_seconds_histogram as fn() -> Histogram);
        registry.register_with_unit("batch_embed", "Time to embed one batch", Unit::Seconds, embed_seconds.clone());
        let upsert_seconds =
            Family::<PipelineLabel, Histogram, fn() -> Histogram>::new_with_constructor(batch_seconds_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "batch_upsert",
            "Time to upsert one batch until Milvus acknowledged it",
            Unit::Seconds,
            upsert_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Ready files waiting for a worker", queue_depth.clone());
        let files_in_flight = Gauge::default();
        registry.register("files_in_flight", "Files being imported", files_in_flight.clone());
        let [flushes, flushed_files] = std::array::from_fn(|_| Family::<CollectionLabel, Counter>::default());
        registry.register("flushes", "Collection flushes, each shared by the files that finished meanwhile", flushes.clone());
        registry.register("flushed_files", "Files whose rows a collection flush made durable", flushed_files.clone());
        let files_awaiting_flush = Gauge::default();
        registry.register(
            "files_awaiting_flush",
            "Files whose rows are upserted, waiting for their collection's flush",
            files_awaiting_flush.clone(),
        );
        let bulk_rows = Family::<PipelineLabel, Counter>::default();
        registry.register("bulk_rows", "Rows inserted by Milvus's bulk import (part of rows_imported)", bulk_rows.clone());
        let bulk_jobs = Family::<OutcomeLabels, Counter>::default();
        registry.register("bulk_jobs", "Bulk-import jobs ended, by outcome (completed, failed, resubmitted)", bulk_jobs.clone());
        Self {
            registry,
            bulk_rows,
            bulk_jobs,
            rows_imported,
            rows_rejected,
            rows_unchanged,
            rows_embedded,
            rows_deleted,
            rows_superseded,
            rejections,
            retries,
            refused_entries,
            mirror_held_back,
            milvus_reachable,
            lookups,
            files,
            ledger_files,
            last_success,
            schedule_last_success,
            embed_seconds,
            upsert_seconds,
            queue_depth,
            files_in_flight,
            flushes,
            flushed_files,
            files_awaiting_flush,
            in_flight: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            health: Mutex::new(BTreeMap::new()),
            started_at: crate::timestamp::now_rfc3339(),
        }
    }

    /// Starts tracking a file; the returned handle reports its progress and stops tracking when
    /// dropped.
    pub fn track(self: &Arc<Self>, pipeline: &str, path: &str, units_total: u64, units_done: u64) -> InFlight {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let progress = FileProgress {
            pipeline: pipeline.to_owned(),
            path: path.to_owned(),
            started_at: crate::timestamp::now_rfc3339(),
            rows_imported: 0,
            rows_rejected: 0,
            rows_unchanged: 0,
            units_done,
            units_total,
            bulk: None,
        };
        self.in_flight.lock().expect("in-flight lock").insert(id, progress);
        self.files_in_flight.inc();
        InFlight { telemetry: Arc::clone(self), id }
    }

    /// Counts `texts` embedded for `pipeline`, which took `elapsed`.
    pub fn embedded(&self, pipeline: &str, texts: usize, elapsed: Duration) {
        let label = PipelineLabel { pipeline: pipeline.to_owned() };
        self.rows_embedded.get_or_create(&label).inc_by(texts as u64);
        self.embed_seconds.get_or_create(&label).observe(elapsed.as_secs_f64());
    }

    /// Counts one unchanged-row lookup of `pipeline` read at `consistency` (`strong`, `bounded`).
    pub fn looked_up(&self, pipeline: &str, consistency: &str) {
        self.lookups.get_or_create(&LookupLabels { pipeline: pipeline.to_owned(), consistency: consistency.to_owned() }).inc();
    }

    /// Records one upsert request round that took `elapsed`.
    pub fn upserted(&self, pipeline: &str, elapsed: Duration) {
        self.upsert_seconds.get_or_create(&PipelineLabel { pipeline: pipeline.to_owned() }).observe(elapsed.as_secs_f64());
    }

    /// Counts rows deleted from a mirrored source.
    pub fn deleted(&self, pipeline: &str, rows: u64) {
        self.rows_deleted.get_or_create(&PipelineLabel { pipeline: pipeline.to_owned() }).inc_by(rows);
    }

    /// Counts a retry of a file of `pipeline` after a `fault` that was not the file's.
    pub fn retried(&self, pipeline: &str, fault: Fault) {
        self.retries.get_or_create(&CauseLabels { pipeline: pipeline.to_owned(), cause: fault.as_str().to_owned() }).inc();
    }

    /// Counts a drop-folder entry of `pipeline` refused for `cause` (once per version of it).
    pub fn refused_entry(&self, pipeline: &str, cause: &str) {
        self.refused_entries.get_or_create(&CauseLabels { pipeline: pipeline.to_owned(), cause: cause.to_owned() }).inc();
    }

    /// Counts a bulk-import job (or task resubmission) of `pipeline` that ended with `outcome`
    /// (`completed`, `failed`, `resubmitted`), and on completion its `rows`.
    pub fn bulk_job(&self, pipeline: &str, outcome: &str, rows: u64) {
        self.bulk_jobs.get_or_create(&OutcomeLabels { pipeline: pipeline.to_owned(), outcome: outcome.to_owned() }).inc();
        self.bulk_rows.get_or_create(&PipelineLabel { pipeline: pipeline.to_owned() }).inc_by(rows);
    }

    /// Counts a mirror pass of `pipeline` that was held back.
    pub fn mirror_held_back(&self, pipeline: &str) {
        self.mirror_held_back.get_or_create(&PipelineLabel { pipeline: pipeline.to_owned() }).inc();
    }

    /// Counts dead-lettered records of `pipeline` by cause.
    pub fn rejected(&self, pipeline: &str, causes: impl IntoIterator<Item = RejectCause>) {
        for cause in causes {
            self.rejections.get_or_create(&CauseLabels { pipeline: pipeline.to_owned(), cause: cause.as_str().to_owned() }).inc();
        }
    }

    /// Sets whether Milvus answered the last call.
    pub fn set_milvus_reachable(&self, reachable: bool) {
        self.milvus_reachable.set(i64::from(reachable));
    }

    /// Records how `pipeline` is doing.
    pub fn set_health(&self, pipeline: &str, health: PipelineHealth) {
        self.health.lock().expect("health lock").insert(pipeline.to_owned(), health);
    }

    /// How `pipeline` is doing (healthy unless told otherwise).
    pub fn health(&self, pipeline: &str) -> PipelineHealth {
        let healthy_since_start = || PipelineHealth { since: self.started_at.clone(), ..PipelineHealth::ok() };
        self.health.lock().expect("health lock").get(pipeline).cloned().unwrap_or_else(healthy_since_start)
    }

    /// A file starts (`true`) or stops (`false`) waiting for its collection's flush.
    pub fn awaiting_flush(&self, waiting: bool) {
        if waiting {
            self.files_awaiting_flush.inc();
        } else {
            self.files_awaiting_flush.dec();
        }
    }

    /// Counts one flush of `collection` that made the rows of `files` files durable.
    pub fn flushed(&self, collection: &str, files: usize) {
        let label = CollectionLabel { collection: collection.to_owned() };
        self.flushes.get_or_create(&label).inc();
        self.flushed_files.get_or_create(&label).inc_by(files as u64);
    }

    /// Counts a file that ended with `outcome` (`imported`, `already_imported`, `failed`, `interrupted`).
    pub fn file_done(&self, pipeline: &str, outcome: &str) {
        self.files.get_or_create(&OutcomeLabels { pipeline: pipeline.to_owned(), outcome: outcome.to_owned() }).inc();
    }

    /// Sets the number of ready files waiting for a worker.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as i64);
    }

    /// Ready files waiting for a worker, as last set.
    pub fn queue_depth(&self) -> usize {
        self.queue_depth.get().max(0) as usize
    }

    /// Sets the ledger's file counts, per pipeline by state (before rendering `/metrics`). Every
    /// pipeline given gets all three states (`importing`, `imported`, `failed`), missing ones as 0.
    pub fn set_ledger_files(&self, pipelines: &BTreeMap<String, BTreeMap<String, u64>>) {
        for (pipeline, counts) in pipelines {
            for state in ["importing", "imported", "failed"] {
                let count = counts.get(state).copied().unwrap_or(0);
                let labels = LedgerLabels { pipeline: pipeline.clone(), state: state.to_owned() };
                self.ledger_files.get_or_create(&labels).set(count as i64);
            }
        }
    }

    /// Makes the per-pipeline counters of `pipelines` exist at 0 (rows imported, rejected and
    /// unchanged; files imported, already imported and failed; rejections, refused entries and
    /// retries by cause), so that `rate()` and `increase()` see their first event and dashboards
    /// show a 0, not nothing. Called once when the daemon starts.
    pub fn declare_pipelines<'a>(&self, pipelines: impl IntoIterator<Item = &'a str>) {
        for pipeline in pipelines {
            let label = PipelineLabel { pipeline: pipeline.to_owned() };
            for family in [&self.rows_imported, &self.rows_rejected, &self.rows_unchanged] {
                family.get_or_create(&label).inc_by(0);
            }
            for outcome in FILE_OUTCOMES {
                self.files.get_or_create(&OutcomeLabels { pipeline: pipeline.to_owned(), outcome: outcome.to_owned() }).inc_by(0);
            }
            let zero = |family: &Family<CauseLabels, Counter>, causes: &[&str]| {
                for cause in causes {
                    family.get_or_create(&CauseLabels { pipeline: pipeline.to_owned(), cause: (*cause).to_owned() }).inc_by(0);
                }
            };
            zero(&self.refused_entries, &REFUSAL_CAUSES);
            zero(&self.rejections, &[RejectCause::Malformed.as_str(), RejectCause::InvalidValue.as_str()]);
            zero(&self.retries, &RETRIED_FAULTS.map(Fault::as_str));
        }
    }

    /// Notes that a file of `pipeline` was imported or found already imported just now.
    pub fn pipeline_succeeded(&self, pipeline: &str) {
        self.last_success.get_or_create(&PipelineLabel { pipeline: pipeline.to_owned() }).set(unix_now());
    }

    /// Notes that a scheduled run of `pipeline` ended just now without a failed file.
    pub fn schedule_succeeded(&self, pipeline: &str) {
        self.schedule_last_success.get_or_create(&PipelineLabel { pipeline: pipeline.to_owned() }).set(unix_now());
    }

    /// Files being imported now, oldest first.
    pub fn in_flight(&self) -> Vec<FileProgress> {
        self.in_flight.lock().expect("in-flight lock").values().cloned().collect()
    }

    /// The metrics in the OpenMetrics text format (served as [`OPENMETRICS_CONTENT_TYPE`]),
    /// ending with `# EOF`.
    pub fn encode_metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// A file being tracked by [`Telemetry::track`]; dropping it stops the tracking.
pub struct InFlight {
    telemetry: Arc<Telemetry>,
    id: u64,
}

impl InFlight {
    /// Records a committed batch and the position it reached.
    pub fn committed(&self, counts: BatchCounts, units_done: u64) {
        let telemetry = &self.telemetry;
        let mut in_flight = telemetry.in_flight.lock().expect("in-flight lock");
        let Some(progress) = in_flight.get_mut(&self.id) else { return };
        progress.rows_imported += counts.imported;
        progress.rows_rejected += counts.rejected;
        progress.rows_unchanged += counts.unchanged;
        progress.units_done = units_done;
        let label = PipelineLabel { pipeline: progress.pipeline.clone() };
        telemetry.rows_imported.get_or_create(&label).inc_by(counts.imported);
        telemetry.rows_rejected.get_or_create(&label).inc_by(counts.rejected);
        telemetry.rows_unchanged.get_or_create(&label).inc_by(counts.unchanged);
        telemetry.rows_superseded.get_or_create(&label).inc_by(counts.superseded);
    }

    /// Shows where the file's bulk import stands (`/status`).
    pub fn bulk(&self, bulk: BulkProgress) {
        let mut in_flight = self.telemetry.in_flight.lock().expect("in-flight lock");
        if let Some(progress) = in_flight.get_mut(&self.id) {
            progress.bulk = Some(bulk);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.telemetry.in_flight.lock().expect("in-flight lock").remove(&self.id);
        self.telemetry.files_in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_batches_show_in_flight_and_in_the_metrics() {
        let telemetry = Arc::new(Telemetry::new());
        let tracked = telemetry.track("docs", "drop/a.csv", 1000, 0);
        tracked.committed(BatchCounts { imported: 7, rejected: 1, unchanged: 2, superseded: 0 }, 400);
        telemetry.embedded("docs", 7, Duration::from_millis(30));
        let in_flight = telemetry.in_flight();
        assert_eq!(in_flight.len(), 1);
        assert_eq!((in_flight[0].rows_imported, in_flight[0].rows_unchanged, in_flight[0].units_done), (7, 2, 400));
        let metrics = telemetry.encode_metrics();
        assert!(metrics.contains(r#"vecdrop_rows_imported_total{pipeline="docs"} 7"#), "{metrics}");
        assert!(metrics.contains(r#"vecdrop_rows_unchanged_total{pipeline="docs"} 2"#), "{metrics}");
        assert!(metrics.contains(r#"vecdrop_rows_embedded_total{pipeline="docs"} 7"#), "{metrics}");
        assert!(metrics.contains("vecdrop_files_in_flight 1"), "{metrics}");
        assert!(metrics.contains(r#"vecdrop_batch_embed_seconds_count{pipeline="docs"} 1"#), "{metrics}");
        drop(tracked);
        assert!(telemetry.in_flight().is_empty());
        assert!(telemetry.encode_metrics().contains("vecdrop_files_in_flight 0"));
    }

    /// The value of the sample `series` (name and labels as rendered), if listed.
    fn sample(metrics: &str, series: &str) -> Option<f64> {
        metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn the_text_is_openmetrics_with_build_info_and_an_eof_marker() {
        let metrics = Telemetry::new().encode_metrics();
        assert!(metrics.ends_with("# EOF\n"), "{metrics}");
        let build = format!(r#"vecdrop_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"));
        assert_eq!(sample(&metrics, &build), Some(1.0), "{metrics}");
        assert!(OPENMETRICS_CONTENT_TYPE.starts_with("application/openmetrics-text; version=1.0.0"));
    }

    #[test]
    fn declared_pipelines_have_zero_series_and_ledger_files_are_per_pipeline() {
        let telemetry = Telemetry::new();
        telemetry.declare_pipelines(["docs"]);
        let counts = BTreeMap::from([("docs".to_owned(), BTreeMap::from([("imported".to_owned(), 3)]))]);
        telemetry.set_ledger_files(&counts);
        let metrics = telemetry.encode_metrics();
        for series in [
            r#"vecdrop_rows_imported_total{pipeline="docs"}"#,
            r#"vecdrop_rows_rejected_total{pipeline="docs"}"#,
            r#"vecdrop_files_total{pipeline="docs",outcome="failed"}"#,
            r#"vecdrop_refused_entries_total{pipeline="docs",cause="symlink"}"#,
            r#"vecdrop_rejections_total{pipeline="docs",cause="malformed"}"#,
            r#"vecdrop_retries_total{pipeline="docs",cause="transient"}"#,
            r#"vecdrop_ledger_files{pipeline="docs",state="failed"}"#,
        ] {
            assert_eq!(sample(&metrics, series), Some(0.0), "{series} in {metrics}");
        }
        assert_eq!(sample(&metrics, r#"vecdrop_ledger_files{pipeline="docs",state="imported"}"#), Some(3.0), "{metrics}");
    }

    #[test]
    fn successes_are_timestamped_per_pipeline_and_schedule() {
        let telemetry = Telemetry::new();
        assert!(!telemetry.encode_metrics().contains("vecdrop_last_success_timestamp_seconds{"), "no success yet");
        let before = unix_now();
        telemetry.pipeline_succeeded("docs");
        telemetry.schedule_succeeded("faq");
        let metrics = telemetry.encode_metrics();
        let file = sample(&metrics, r#"vecdrop_last_success_timestamp_seconds{pipeline="docs"}"#).expect("pipeline success");
        let run = sample(&metrics, r#"vecdrop_schedule_last_success_timestamp_seconds{pipeline="faq"}"#).expect("schedule success");
        assert!(file >= before.floor() && run >= before.floor() && file <= unix_now(), "{metrics}");
    }

    #[test]
    fn milvus_failures_and_retries_are_counted_process_wide() {
        let (first, second) = (Telemetry::new(), Telemetry::new());
        let upsert_retries = r#"vecdrop_milvus_retries_total{operation="upsert"}"#;
        assert!(sample(&first.encode_metrics(), upsert_retries).is_some(), "the upsert series exist from the start");
        milvus_call_failed("telemetry_test", "busy");
        milvus_call_retried("telemetry_test");
        for telemetry in [first, second] {
            let metrics = telemetry.encode_metrics();
            let errors = r#"vecdrop_milvus_errors_total{operation="telemetry_test",class="busy"}"#;
            assert_eq!(sample(&metrics, errors), Some(1.0), "{metrics}");
            assert_eq!(sample(&metrics, r#"vecdrop_milvus_retries_total{operation="telemetry_test"}"#), Some(1.0), "{metrics}");
        }
    }
}
