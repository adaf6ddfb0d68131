//! The small-files phases: the daemon's queue, workers, shared model batches and group flushes,
//! timed from the moment files are renamed into a drop folder until the last one is in `.done/`.
//!
//! The same rows go in as one JSONL file ([`phase::DAEMON_ONE_FILE`]) and as files of
//! [`SMALL_FILE_ROWS`] rows ([`phase::DAEMON_SMALL_FILES`]), each twice, in the order one, small,
//! small, one, each time into a fresh collection (and under a pipeline of its own, so the ledger
//! does not know the content yet); each phase reports its two rounds' totals. The daemon runs in this process with the bench's model and
//! Milvus connection; files arrive by rename, so they are ready at once (no settle wait).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::corpus::{self, Document};
use super::memory::PeakRss;
use super::report::{phase, PhaseResult};
use super::{Bench, BenchError};
use crate::settings::PipelineSettings;

/// Rows per file of the small-files phase.
pub const SMALL_FILE_ROWS: usize = 10;

/// A phase gives up when its files are not all done after this long.
const PHASE_LIMIT: Duration = Duration::from_secs(1800);

/// Files prepared for one phase: written in `staging`, renamed into `drop` by the clock's start.
struct Drop {
    pipeline: PipelineSettings,
    staging: PathBuf,
    drop: PathBuf,
    files: Vec<String>,
}

impl Bench {
    /// Runs both small-files phases on `documents` through one in-process daemon, twice each in the
    /// order one file, small files, small files, one file (`collections` in that order, each
    /// fresh), and returns each phase's totals.
    pub(super) async fn small_files_phases(&self, documents: &[Document], collections: [&str; 4]) -> Result<[PhaseResult; 2], BenchError> {
        let root = self.options.work_dir.join("small-files");
        let drops = [
            self.prepare_drop(&root, "one", collections[0], documents, documents.len())?,
            self.prepare_drop(&root, "many", collections[1], documents, SMALL_FILE_ROWS)?,
            self.prepare_drop(&root, "many-2", collections[2], documents, SMALL_FILE_ROWS)?,
            self.prepare_drop(&root, "one-2", collections[3], documents, documents.len())?,
        ];
        for prepared in &drops {
            self.context.sink.ensure_collection(&self.spec_of(&prepared.pipeline)).await?;
        }
        let mut settings = (*self.context.settings).clone();
        settings.pipelines = drops.iter().map(|prepared| prepared.pipeline.clone()).collect();
        settings.status.listen = "127.0.0.1:0".to_owned();
        // Files arrive complete (renamed in); one seen by the first scan rather than by its
        // rename event need not wait either.
        settings.daemon.settle = Duration::ZERO;
        let mut context = self.context.clone();
        context.settings = Arc::new(settings);
        context.cancel = tokio_util::sync::CancellationToken::new();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(crate::daemon::run(context, async move {
            let _ = stopped.await;
        }));
        let timed = async {
            let names = [phase::DAEMON_ONE_FILE, phase::DAEMON_SMALL_FILES, phase::DAEMON_SMALL_FILES, phase::DAEMON_ONE_FILE];
            let mut results = Vec::new();
            for (name, prepared) in names.into_iter().zip(&drops) {
                results.push(self.timed_drop(name, prepared, documents.len()).await?);
                self.bare.wait_for_index(&prepared.pipeline.collection.name).await?;
                self.settle_milvus().await;
            }
            let [one, many, many_again, one_again]: [PhaseResult; 4] = results.try_into().expect("four drops timed");
            Ok::<_, BenchError>([PhaseResult::merged(vec![one, one_again]), PhaseResult::merged(vec![many, many_again])])
        }
        .await;
        let _ = stop.send(());
        match daemon.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(BenchError::Internal(format!("bench daemon: {error}"))),
            Err(error) => return Err(BenchError::Internal(format!("bench daemon task: {error}"))),
        }
        timed
    }

    /// Writes `documents` in files of `rows_per_file` rows into `<root>/<name>/staging` and
    /// describes a pipeline that watches `<root>/<name>/drop` and feeds `collection`.
    fn prepare_drop(
        &self,
        root: &Path,
        name: &str,
        collection: &str,
        documents: &[Document],
        rows_per_file: usize,
    ) -> Result<Drop, BenchError> {
        let (staging, drop) = (root.join(name).join("staging"), root.join(name).join("drop"));
        for dir in [&staging, &drop] {
            std::fs::create_dir_all(dir).map_err(|source| BenchError::Io { path: dir.clone(), source })?;
        }
        let mut files = Vec::new();
        for (index, chunk) in documents.chunks(rows_per_file.max(1)).enumerate() {
            let file = format!("{name}-{index:05}.jsonl");
            corpus::write_jsonl(&staging.join(&file), chunk)?;
            files.push(file);
        }
        let mut pipeline = self.pipeline(&format!("daemon-{name}"), collection);
        pipeline.watch = vec![drop.clone()];
        pipeline.after_import = crate::settings::AfterImport::Move;
        Ok(Drop { pipeline, staging, drop, files })
    }

    /// Renames the prepared files into the drop folder and times until all are in `.done/`.
    async fn timed_drop(&self, name: &str, prepared: &Drop, rows: usize) -> Result<PhaseResult, BenchError> {
        let (peak, cpu) = (PeakRss::start(), super::cpu::CpuClock::start());
        let model_before = self.context.embedder.usage();
        let started = Instant::now();
        for file in &prepared.files {
            let (from, to) = (prepared.staging.join(file), prepared.drop.join(file));
            std::fs::rename(&from, &to).map_err(|source| BenchError::Io { path: from.clone(), source })?;
        }
        loop {
            let done = count_files(&prepared.drop.join(".done"));
            if done == prepared.files.len() {
                break;
            }
            if count_files(&prepared.drop.join(".failed")) > 0 {
                return Err(BenchError::Internal(format!("{name}: a file failed; see {}", prepared.drop.join(".failed").display())));
            }
            if started.elapsed() > PHASE_LIMIT {
                return Err(BenchError::Internal(format!("{name}: {done} of {} files done after {PHASE_LIMIT:?}", prepared.files.len())));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let mut result = PhaseResult::new(name, "rows/s", rows as u64, seconds, peak.peak_bytes());
        result.record_cpu(cpu.elapsed());
        result.record_model(self.context.embedder.usage().since(&model_before));
        result.began_on_quiet_milvus = self.began_on_quiet_milvus();
        Ok(result)
    }
}

/// Regular files under `dir` and its subfolders (`.done/<date>/…`); 0 when it does not exist.
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => count_files(&entry.path()),
            Ok(kind) if kind.is_file() && !entry.file_name().to_string_lossy().ends_with(".error.txt") => 1,
            _ => 0,
        })
        .sum()
}
