//! Progress of one import: a bar on a terminal (rows, rows/s, ETA by bytes), periodic log lines
//! otherwise, and the final [`ImportSummary`].

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::ledger::BatchCounts;

/// How often a progress line is logged when stderr is not a terminal.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// What one file's import did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImportSummary {
    /// Rows upserted into Milvus.
    pub rows_imported: u64,
    /// Records dead-lettered.
    pub rows_rejected: u64,
    /// Rows skipped because Milvus already held them unchanged (incremental re-import).
    pub rows_unchanged: u64,
    /// Rows deleted because their keys left a mirrored source.
    pub rows_deleted: u64,
    /// Rows not written because a later record of the same batch had the same key.
    pub rows_superseded: u64,
    /// Set when the file's mirror pass was held back (it would have deleted too much).
    pub mirror_held_back: Option<MirrorHold>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Of `seconds`, the closing Milvus flush (a fixed cost per file, measured by `vecdrop bench`).
    pub flush_seconds: f64,
    /// Set when the file went through Milvus's bulk import: when its phases ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk: Option<BulkTimes>,
}

/// When the phases of a file's bulk import ended, in seconds since its import started.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct BulkTimes {
    /// Every row read, embedded and staged (and uploaded, for a bucket).
    pub staged_at: f64,
    /// Milvus's tasks completed.
    pub tasks_completed_at: f64,
    /// The rows visible to queries.
    pub visible_at: f64,
}

/// A mirror pass that was held back: it would have deleted `keys_gone` of the `previous_rows`
/// rows the source's previous version held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MirrorHold {
    /// Keys of the previous version this one lacks.
    pub keys_gone: u64,
    /// Keys of the previous version.
    pub previous_rows: u64,
}

impl ImportSummary {
    /// Imported rows per second.
    pub fn rows_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows_imported as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Reports progress of one file.
pub struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
    total_units: u64,
    summary: ImportSummary,
}

impl Progress {
    /// Starts reporting for a file of `total_units` (bytes for text formats, rows for Parquet, 0 when
    /// unknown); `interactive` asks for a bar when stderr is a
    /// terminal (the CLI), log lines otherwise (the daemon).
    pub fn start(label: &str, total_units: u64, interactive: bool) -> Self {
        let bar = (interactive && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total_units);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_owned());
            bar
        });
        let now = Instant::now();
        Self { label: label.to_owned(), bar, started: now, last_log: now, total_units, summary: ImportSummary::default() }
    }

    /// Moves the bar to where a resumed import starts, without counting rows.
    pub fn skip_to(&mut self, units: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(units);
            bar.reset_eta();
        }
    }

    /// Records a committed batch's counts, the file read up to `units` (bytes for text formats,
    /// rows for Parquet).
    pub fn advance(&mut self, counts: BatchCounts, units: u64) {
        self.summary.rows_imported += counts.imported;
        self.summary.rows_rejected += counts.rejected;
        self.summary.rows_unchanged += counts.unchanged;
        self.summary.rows_superseded += counts.superseded;
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-6);
        let rate = self.summary.rows_imported as f64 / elapsed;
        if let Some(bar) = &self.bar {
            bar.set_position(units);
            bar.set_message(format!("{} rows, {} rejected, {rate:.0} rows/s", self.summary.rows_imported, self.summary.rows_rejected));
        } else if self.last_log.elapsed() >= LOG_INTERVAL {
            self.last_log = Instant::now();
            let percent = if self.total_units > 0 { 100.0 * units as f64 / self.total_units as f64 } else { 100.0 };
            tracing::info!(
                file = %self.label,
                rows = self.summary.rows_imported,
                rejected = self.summary.rows_rejected,
                rows_per_second = format!("{rate:.0}"),
                percent = format!("{percent:.1}"),
                "importing"
            );
        }
    }

    /// Shows a phase of the file's bulk import (`staging`, `importing 1200/20000 rows`, …) on the
    /// bar, or logs it when there is none.
    pub fn bulk_phase(&mut self, phase: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("bulk import: {phase}"));
        } else if self.last_log.elapsed() >= LOG_INTERVAL {
            self.last_log = Instant::now();
            tracing::info!(file = %self.label, phase, "bulk import");
        }
    }

    /// Every row is committed: the bar goes away (the file now only waits for its flush, and the
    /// next file's bar takes the line).
    pub fn committed_all(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Seconds since the import started.
    pub fn elapsed_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Records when Milvus's tasks completed and the rows became visible (the staging time, set
    /// before, stays; a job followed after a restart has none).
    pub fn bulk_completed(&mut self, tasks_completed_at: f64, visible_at: f64) {
        let times = self.summary.bulk.get_or_insert_with(BulkTimes::default);
        times.tasks_completed_at = tasks_completed_at;
        times.visible_at = visible_at;
    }

    /// Records when the phases of the file's bulk import ended.
    pub fn bulk_times(&mut self, times: BulkTimes) {
        self.summary.bulk = Some(times);
    }

    /// Records how long the closing flush took (part of the file's time).
    pub fn flushed(&mut self, took: Duration) {
        self.summary.flush_seconds += took.as_secs_f64();
    }

    /// Ends reporting and returns the totals.
    pub fn finish(mut self) -> ImportSummary {
        self.summary.seconds = self.started.elapsed().as_secs_f64();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.summary.clone()
    }
}
