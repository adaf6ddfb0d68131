//! `vecdrop bench`: how close an import comes to the hardware, measured in one run on one machine.
//!
//! ```text
//!  corpus ──► ladder of fixed ──► rounds × 4: model_best_fixed │ model_fp32 │ model_int8
//!  (own       batch sizes         (reference: the ladder's      (raw model,   (same windows;
//!   data)     (picks the size)     size over a sorted sample)    import's      cosine to the
//!                                                                batches)      reference)
//!          ─► import_embedded ─► bracket (reference + fp32 again) ─► reimport_changed  (CSV)
//!          ─► sdk_upsert ──► import_vectors ×2, A B B A  (Parquet with vectors: bare SDK loop, pipeline)
//!          ─► daemon_one_file ──► daemon_small_files ×2, A B B A (the same rows as one JSONL file
//!             and as 10-row files, dropped into an in-process daemon's folders)
//!          ─► bulk_baseline_upsert ──► bulk_import  (one big Parquet file: upserts vs bulk import)
//! ```
//! Each phase is timed and its peak resident memory taken ([`memory`]); [`report`] turns the
//! phases into ratios, checks the performance targets of ARCHITECTURE.md and prints a table or JSON.
//!
//! How time is counted, so that each ratio compares like with like:
//! - The model phases that ratios compare run in alternating rounds ([`model`]): a slow or fast
//!   spell of a shared host weighs on each of them alike. The import with embedding is held
//!   against the model measured just before and just after it (its bracket). The two pairs of
//!   Milvus phases (SDK loop / import of vectors; daemon with one file / with small files) run
//!   twice each, A B B A, into fresh collections, and report their totals.
//! - Collections are created and loaded before a phase's clock starts (a daemon does that once).
//! - `import_*` phases time [`import_file`] from call to return: hashing the file, reading,
//!   embedding, upserts, ledger commits and the closing Milvus flush (~0.5–4 s, a file's fixed
//!   cost). `sdk_upsert` ends with the same flush call and reports its length, so the vectors
//!   ratio carries the flush on both sides. The raw model has no flush: on a small corpus the
//!   flush alone keeps `import_embedded ÷ model_fp32` below target, hence the full-mode size.
//! - Between Milvus phases the bench waits until the server has indexed the flushed rows and
//!   its CPU use has settled (segment sync, compaction of upserts' delete logs), so a phase is not
//!   slowed by the previous phase's writes.

mod corpus;
mod cpu;
mod daemon;
mod memory;
mod model;
pub mod report;
mod sdk;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use corpus::CorpusSpec;
pub use report::BenchReport;

use self::cpu::CpuClock;
use self::memory::PeakRss;
use self::report::{phase, Environment, PhaseResult};
use self::sdk::BareClient;
use crate::embed::calibrate::ShapeCache;
use crate::embed::{EmbedError, Embedder, ShapePolicy};
use crate::ledger::Ledger;
use crate::pipeline::{import_file, FileOutcome, ImportContext, ImportError};
use crate::settings::{Device, PipelineSettings, Precision, Settings};
use crate::sink::{CollectionSpec, MilvusSink, SinkError};

/// Milvus counts as settled between phases below this share of one core…
const QUIET_MILVUS_SHARE: f64 = 0.25;
/// …and the bench goes on after this long regardless.
const QUIET_MILVUS_LIMIT: std::time::Duration = std::time::Duration::from_secs(45);

/// Fixed batch sizes the reference tries on the CPU…
const FIXED_BATCHES_CPU: [usize; 6] = [4, 8, 16, 32, 64, 128];
/// …and on CUDA.
const FIXED_BATCHES_CUDA: [usize; 6] = [32, 64, 128, 256, 512, 1024];

/// Every hundredth text changes between the first import and the re-import.
const CHANGED_EVERY: usize = 100;

/// Why the bench could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The bench's own files.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The model could not be loaded or failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Milvus through the pipeline's sink.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Milvus through the bare SDK client.
    #[error("milvus {operation} ({target}): {message}")]
    Milvus {
        operation: &'static str,
        /// The server or collection.
        target: String,
        message: String,
    },
    /// An import phase failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The options cannot be run (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A blocking task died or the ledger failed.
    #[error("{0}")]
    Internal(String),
}

impl BenchError {
    fn milvus(operation: &'static str, target: &str, error: impl std::fmt::Display) -> Self {
        Self::Milvus { operation, target: target.to_owned(), message: error.to_string() }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The corpus to generate.
    pub corpus: CorpusSpec,
    /// Rows per pipeline batch and per bare-SDK request (also the model phases' window).
    pub batch_rows: usize,
    /// Generated files and the bench's ledger go here.
    pub work_dir: PathBuf,
    /// Keep the bench's collections instead of dropping them at the end.
    pub keep_collections: bool,
    /// Rows of the small-files phases (the first rows of the corpus; a multiple of 10).
    pub small_files_rows: usize,
    /// Texts of the fixed-batch reference (spread over the corpus), per batch size tried.
    pub reference_texts: usize,
    /// Rows with vectors of the bulk-import phases (upserts vs bulk import of one file); 0 skips
    /// them.
    pub bulk_rows: usize,
    /// Rounds the model phases alternate in (see [`model`]); at most one per window of the corpus.
    pub model_rounds: usize,
}

impl BenchOptions {
    /// The `--smoke` sizes: seconds, for `make test`.
    pub fn smoke(work_dir: PathBuf) -> Self {
        Self {
            corpus: CorpusSpec { text_rows: 256, vector_rows: 2_000, words_per_text: 25, seed: 7, dimension: 384 },
            batch_rows: 128,
            work_dir,
            keep_collections: false,
            small_files_rows: 100,
            reference_texts: 64,
            bulk_rows: 2_000,
            model_rounds: 2,
        }
    }

    /// The full-mode sizes: a few minutes on two cores, long enough that per-file costs (flush)
    /// are a small part of each import.
    pub fn full(work_dir: PathBuf) -> Self {
        Self {
            corpus: CorpusSpec { text_rows: 10_000, vector_rows: 100_000, words_per_text: 25, seed: 7, dimension: 384 },
            batch_rows: 512,
            work_dir,
            keep_collections: false,
            small_files_rows: 1_000,
            reference_texts: 1_000,
            bulk_rows: 200_000,
            model_rounds: 4,
        }
    }
}

/// Runs every phase against the Milvus server of `settings.milvus.uri` with the model of
/// `settings.embedding` (fp32, then int8) and returns the report. The bench's collections are
/// dropped at the end (unless kept), also when a phase fails.
pub async fn run(settings: &Settings, options: &BenchOptions) -> Result<BenchReport, BenchError> {
    if crate::sink::is_local_path(&settings.milvus.uri) {
        return Err(BenchError::Usage(format!(
            "milvus.uri {:?} is a local path (Milvus Lite); the bench needs a server: pass --milvus-uri or set MILVUS_URI",
            settings.milvus.uri
        )));
    }
    let load_average_start = load_average();
    std::fs::create_dir_all(&options.work_dir).map_err(|source| BenchError::Io { path: options.work_dir.clone(), source })?;
    let bench = Bench::open(settings, options).await?;
    let outcome = bench.run_phases().await;
    if !options.keep_collections {
        for collection in &bench.collections {
            if let Err(error) = bench.bare.drop_collection(collection).await {
                tracing::warn!(%error, collection, "cannot drop a bench collection");
            }
        }
    }
    let mut report = outcome?;
    report.environment.load_average_start = load_average_start;
    report.environment.load_average_end = load_average();
    report.evaluate();
    Ok(report)
}

/// Everything the phases share.
struct Bench {
    options: BenchOptions,
    context: ImportContext,
    bare: BareClient,
    /// Collections this run creates (one per Milvus phase), dropped at the end.
    collections: Vec<String>,
    /// Whether Milvus had settled when the last phase that wrote to it ended (so whether the next
    /// phase began on an idle server); `None` before the first.
    milvus_quiet: std::sync::Mutex<Option<bool>>,
}

impl Bench {
    async fn open(settings: &Settings, options: &BenchOptions) -> Result<Self, BenchError> {
        let mut settings = settings.clone();
        settings.embedding.precision = Precision::Fp32;
        let run_id = format!("{}_{}", std::process::id(), unix_seconds());
        // A ledger of its own per run: no import is "already imported", none needs `force`
        // (which would also turn off the unchanged-row skip the re-import phase measures).
        settings.state.dir = options.work_dir.join(format!("state-{run_id}"));
        let embedding = settings.embedding.clone();
        let base_dir = settings.base_dir.clone();
        // Measured afresh: the run's state directory is new, so no kept calibration is found.
        let policy = ShapePolicy::Calibrate(Some(ShapeCache::in_state_dir(&settings.state.dir)));
        let embedder = blocking(move || Embedder::load_with(&embedding, &base_dir, &policy)).await??;
        let sink = MilvusSink::connect(&settings.milvus, &settings.base_dir).await?;
        let bare = BareClient::connect(&settings.milvus.uri, settings.milvus.token.expose()).await?;
        let ledger = Ledger::open(&settings.state.dir).map_err(|error| BenchError::Internal(error.to_string()))?;
        let collections = [
            "embedded",
            "sdk",
            "vectors",
            "daemon_one",
            "daemon_many",
            "bulk_upsert",
            "bulk_import",
            "sdk_2",
            "vectors_2",
            "daemon_one_2",
            "daemon_many_2",
        ]
        .iter()
        .map(|name| format!("vecdrop_bench_{name}_{run_id}"))
        .collect();
        let context = ImportContext::new(settings, embedder, sink, ledger, crate::format::PluginRegistry::default(), false);
        Ok(Self { options: options.clone(), context, bare, collections, milvus_quiet: std::sync::Mutex::new(None) })
    }

    async fn run_phases(&self) -> Result<BenchReport, BenchError> {
        let corpus = &self.options.corpus;
        let documents = corpus::documents(corpus);
        let first_csv = self.options.work_dir.join("corpus.csv");
        let changed_csv = self.options.work_dir.join("corpus-changed.csv");
        let parquet = self.options.work_dir.join("vectors.parquet");
        corpus::write_csv(&first_csv, &documents)?;
        corpus::write_csv(&changed_csv, &corpus::with_changed_texts(&documents, CHANGED_EVERY))?;
        let spec = *corpus;
        let parquet_path = parquet.clone();
        blocking(move || corpus::write_parquet_with_vectors(&parquet_path, &spec)).await??;
        let small_files = documents[..self.options.small_files_rows.min(documents.len())].to_vec();
        let texts: Vec<String> = documents.into_iter().map(|document| document.text).collect();

        let embedder = self.context.embedder.clone();
        let texts_for_tokens = texts.clone();
        let mean_tokens = blocking(move || model::mean_tokens(&embedder, &texts_for_tokens)).await??;
        let workload = self.workload(&texts).await?;
        let (best_batch, fixed_batches) = self.fixed_batch_ladder(&workload).await?;
        let int8 = self.load_int8().await?;
        let (mut phases, model_rounds) = self.model_rounds(int8.clone(), &workload, best_batch).await?;
        let fp32_quality = self.quality_of(self.context.embedder.clone()).await?;
        let int8_quality = self.quality_of(int8).await?;
        let before_import = model::BracketRates::from(*model_rounds.last().expect("at least one round ran"));
        let bracket_workload = Arc::new(workload.bracket_part(self.options.model_rounds));
        drop(workload);
        let embedded_pipeline = self.pipeline("embedded", &self.collections[0]);
        phases.push(self.import_phase(phase::IMPORT_EMBEDDED, &embedded_pipeline, &first_csv).await?);
        let import_bracket = self.bracket_import(before_import, bracket_workload, best_batch).await?;
        // Two rounds each, A B B A, into fresh collections: a drift of the host or the server
        // between the phases weighs on both alike.
        let sdk_first = self.sdk_phase(&self.pipeline("sdk", &self.collections[1])).await?;
        let vectors_first = self.import_phase(phase::IMPORT_VECTORS, &self.pipeline("vectors", &self.collections[2]), &parquet).await?;
        let vectors_second = self.import_phase(phase::IMPORT_VECTORS, &self.pipeline("vectors-2", &self.collections[8]), &parquet).await?;
        let sdk_second = self.sdk_phase(&self.pipeline("sdk-2", &self.collections[7])).await?;
        phases.push(PhaseResult::merged(vec![sdk_first, sdk_second]));
        phases.push(PhaseResult::merged(vec![vectors_first, vectors_second]));
        phases.push(self.import_phase(phase::REIMPORT_CHANGED, &embedded_pipeline, &changed_csv).await?);
        let daemon_collections = [3, 4, 10, 9].map(|index| self.collections[index].as_str());
        phases.extend(self.small_files_phases(&small_files, daemon_collections).await?);
        if self.options.bulk_rows > 0 {
            phases.extend(self.bulk_phases().await?);
        }

        let settings = &self.context.settings;
        Ok(BenchReport {
            environment: Environment {
                build: if cfg!(debug_assertions) { "debug" } else { "release" }.to_owned(),
                cores: std::thread::available_parallelism().map_or(1, usize::from),
                load_average_start: [0.0; 3],
                load_average_end: [0.0; 3],
                model: self.context.embedder.identity().to_owned(),
                onnx_threads: settings.embedding.threads,
                onnx_spinning: settings.embedding.intra_op_spinning,
                batch_tokens: self.context.embedder.batch_budget().0,
                max_batch_texts: self.context.embedder.batch_budget().1,
                batch_shape: Some(self.context.embedder.shape_choice().clone()),
                batch_rows: self.options.batch_rows,
                peak_rss_per_phase: PeakRss::start().is_per_phase(),
            },
            corpus: *corpus,
            mean_tokens,
            phases,
            fixed_batches,
            model_rounds,
            import_bracket: Some(import_bracket),
            ratios: Default::default(),
            embedded_gap: None,
            fp32_quality: Some(fp32_quality),
            int8_quality: Some(int8_quality),
            reimport_changed_rows: Some(corpus::changed_count(corpus.text_rows, CHANGED_EVERY) as u64),
            targets: Vec::new(),
        })
    }

    /// A pipeline over the bench's files (`id,text,category` [+ `embedding`]) into `collection`.
    fn pipeline(&self, name: &str, collection: &str) -> PipelineSettings {
        let value = serde_json::json!({
            "name": format!("bench-{name}"),
            "collection": collection,
            "id_field": "id",
            "text_field": "text",
            "vector_field": "embedding",
            "batch_rows": self.options.batch_rows,
            "after_import": "keep",
            "fields": { "category": { "type": "varchar", "max_length": 64 } },
            // FLAT: nothing to build. An HNSW build of 100,000 vectors keeps both cores busy for
            // minutes after the rows land (measured: 35,000 rows still pending after 300 s) and
            // would be charged to whichever phase runs next; building indexes is Milvus's cost,
            // the same whoever imports.
            "index": { "index_type": "FLAT", "metric": "COSINE" },
        });
        let raw = serde_json::from_value(value).expect("the bench pipeline matches RawPipeline");
        PipelineSettings::from_raw(raw, &self.options.work_dir).expect("the bench pipeline is valid")
    }

    /// The corpus tokenised in the import's windows, and the reference's sample (spread over the
    /// corpus).
    async fn workload(&self, texts: &[String]) -> Result<Arc<model::Workload>, BenchError> {
        let embedder = self.context.embedder.clone();
        let sample = model::spread_sample(texts, self.options.reference_texts);
        let (texts, window) = (texts.to_vec(), self.options.batch_rows);
        Ok(Arc::new(blocking(move || model::Workload::tokenise(&embedder, &texts, window, &sample)).await??))
    }

    /// The ladder of fixed batch sizes over the sample: returns the fastest size and every run.
    async fn fixed_batch_ladder(&self, workload: &Arc<model::Workload>) -> Result<(usize, Vec<model::FixedBatchRun>), BenchError> {
        let batches = match self.context.settings.embedding.device {
            Device::Cpu => FIXED_BATCHES_CPU.to_vec(),
            Device::Cuda => FIXED_BATCHES_CUDA.to_vec(),
        };
        let (embedder, workload) = (self.context.embedder.clone(), Arc::clone(workload));
        let runs = blocking(move || model::fixed_batches(&embedder, &workload, &batches)).await??;
        let best = runs
            .iter()
            .max_by(|left, right| left.tokens_per_second().total_cmp(&right.tokens_per_second()))
            .ok_or_else(|| BenchError::Internal("no fixed batch size to try".to_owned()))?;
        Ok((best.batch, runs))
    }

    /// The three model phases measured in alternating rounds (see [`model`]): `model_best_fixed`,
    /// `model_fp32` and `model_int8`, each its total over the rounds, and each round's rates.
    async fn model_rounds(
        &self,
        int8: Embedder,
        workload: &Arc<model::Workload>,
        best_batch: usize,
    ) -> Result<(Vec<PhaseResult>, Vec<model::RoundRates>), BenchError> {
        let (fp32, workload_for_rounds, rounds) = (self.context.embedder.clone(), Arc::clone(workload), self.options.model_rounds);
        let peak = PeakRss::start();
        let measured = blocking(move || model::rounds(&fp32, &int8, &workload_for_rounds, best_batch, rounds)).await??;
        // One peak for the three: both models are loaded while the rounds alternate between them.
        let peak_bytes = peak.peak_bytes();
        let phase_of = |name: &str, run: model::ModelRun, cpu: Option<cpu::CpuUse>| {
            let mut result = PhaseResult::new(name, "texts/s", run.texts, run.seconds, peak_bytes);
            if let Some(cpu) = cpu {
                result.record_cpu(cpu);
            }
            result.tokens_per_second = Some(run.tokens_per_second());
            result
        };
        let mut reference = phase_of(phase::MODEL_BEST_FIXED, measured.reference, measured.cpu[0]);
        reference.batch = Some(best_batch);
        let mut fp32 = phase_of(phase::MODEL_FP32, measured.fp32, measured.cpu[1]);
        fp32.tokenize_seconds = Some(workload.tokenize_seconds);
        let mut int8 = phase_of(phase::MODEL_INT8, measured.int8, measured.cpu[2]);
        int8.tokenize_seconds = Some(workload.tokenize_seconds);
        Ok((vec![reference, fp32, int8], measured.per_round))
    }

    /// The import's bracket: `before` (the last round) and the reference and fp32 model measured
    /// again right after the import (Milvus has settled by then, or the bench noted it did not).
    async fn bracket_import(
        &self,
        before: model::BracketRates,
        workload: Arc<model::Workload>,
        best_batch: usize,
    ) -> Result<report::ImportBracket, BenchError> {
        let embedder = self.context.embedder.clone();
        let cpu = CpuClock::start();
        let after = blocking(move || model::bracket_after(&embedder, &workload, best_batch)).await??;
        Ok(report::ImportBracket {
            before,
            after,
            milvus_settled: self.began_on_quiet_milvus(),
            milvus_cpu_seconds_after: cpu.elapsed().milvus_seconds,
        })
    }

    async fn quality_of(&self, embedder: Embedder) -> Result<report::Quality, BenchError> {
        Ok(blocking(move || model::quality(&embedder)).await??)
    }

    async fn load_int8(&self) -> Result<Embedder, BenchError> {
        let mut embedding = self.context.settings.embedding.clone();
        embedding.precision = Precision::Int8;
        let base_dir = self.context.settings.base_dir.clone();
        let policy = ShapePolicy::Calibrate(Some(ShapeCache::in_state_dir(&self.context.settings.state.dir)));
        Ok(blocking(move || Embedder::load_with(&embedding, &base_dir, &policy)).await??)
    }

    /// Creates the collection (untimed), then times `import_file` of `path`.
    async fn import_phase(&self, name: &str, pipeline: &PipelineSettings, path: &Path) -> Result<PhaseResult, BenchError> {
        self.context.sink.ensure_collection(&self.spec_of(pipeline)).await?;
        let model_before = self.context.embedder.usage();
        let (peak, cpu) = (PeakRss::start(), CpuClock::start());
        let started = Instant::now();
        let outcome = import_file(&self.context, pipeline, path, false).await?;
        let seconds = started.elapsed().as_secs_f64();
        let (peak_bytes, cpu_use) = (peak.peak_bytes(), cpu.elapsed());
        let FileOutcome::Imported(summary) = outcome else {
            return Err(BenchError::Internal(format!("{}: already in this run's fresh ledger", path.display())));
        };
        // Every row of the file counts, whether written, rejected or found unchanged.
        let rows = summary.rows_imported + summary.rows_rejected + summary.rows_unchanged;
        let mut result = PhaseResult::new(name, "rows/s", rows, seconds, peak_bytes);
        result.flush_seconds = Some(summary.flush_seconds);
        result.record_cpu(cpu_use);
        let model = self.context.embedder.usage().since(&model_before);
        result.texts_embedded = Some(model.texts);
        result.record_model(model);
        result.began_on_quiet_milvus = self.began_on_quiet_milvus();
        result.bulk = summary.bulk;
        self.bare.wait_for_index(&pipeline.collection.name).await?;
        self.settle_milvus().await;
        Ok(result)
    }

    /// One Parquet file of `bulk_rows` rows with vectors, imported through upserts and through
    /// Milvus's bulk import into two collections (FLAT index: no index build charged to either).
    /// The bulk phase ends when the file is marked imported, which waits until its rows are
    /// visible to queries.
    async fn bulk_phases(&self) -> Result<Vec<PhaseResult>, BenchError> {
        let spec = CorpusSpec { vector_rows: self.options.bulk_rows, seed: self.options.corpus.seed + 1, ..self.options.corpus };
        let path = self.options.work_dir.join("bulk-vectors.parquet");
        let parquet_path = path.clone();
        blocking(move || corpus::write_parquet_with_vectors(&parquet_path, &spec)).await??;
        let upsert = self.import_phase(phase::BULK_BASELINE_UPSERT, &self.pipeline("bulk-upsert", &self.collections[5]), &path).await?;
        let mut bulk_pipeline = self.pipeline("bulk-import", &self.collections[6]);
        bulk_pipeline.bulk_import = Some(crate::settings::BulkImportSettings {
            min_rows: 1,
            staging: crate::settings::StagingLocation::Folder(
                std::path::absolute(self.options.work_dir.join("bulk-staging"))
                    .map_err(|source| BenchError::Io { path: self.options.work_dir.clone(), source })?,
            ),
            poll_interval: std::time::Duration::from_millis(100),
            max_submissions: 1,
        });
        if let crate::sink::ImportApi::Unsupported { version } = self.context.sink.import_api().await? {
            return Err(BenchError::Usage(format!("the server ({version}) has no bulk import; run with --bulk-rows 0")));
        }
        let bulk = self.import_phase(phase::BULK_IMPORT, &bulk_pipeline, &path).await?;
        Ok(vec![upsert, bulk])
    }

    /// Creates the collection (untimed), then times the bare SDK loop over the Parquet file's rows.
    async fn sdk_phase(&self, pipeline: &PipelineSettings) -> Result<PhaseResult, BenchError> {
        let spec = self.spec_of(pipeline);
        self.context.sink.ensure_collection(&spec).await?;
        let (peak, cpu) = (PeakRss::start(), CpuClock::start());
        let corpus = &self.options.corpus;
        let times =
            self.bare.upsert_loop(&spec, corpus, corpus::vector_documents(corpus), self.options.batch_rows, &self.context.sink).await?;
        let mut result = PhaseResult::new(phase::SDK_UPSERT, "rows/s", times.rows, times.total_seconds, peak.peak_bytes());
        result.record_cpu(cpu.elapsed());
        result.flush_seconds = Some(times.flush_seconds);
        result.began_on_quiet_milvus = self.began_on_quiet_milvus();
        self.bare.wait_for_index(&spec.collection.name).await?;
        self.settle_milvus().await;
        Ok(result)
    }

    /// Waits for Milvus to settle after a phase that wrote to it, and notes whether it did.
    async fn settle_milvus(&self) {
        let quiet = cpu::wait_for_quiet_milvus(QUIET_MILVUS_SHARE, QUIET_MILVUS_LIMIT).await;
        *self.milvus_quiet.lock().expect("milvus_quiet lock") = Some(quiet);
    }

    fn began_on_quiet_milvus(&self) -> Option<bool> {
        *self.milvus_quiet.lock().expect("milvus_quiet lock")
    }

    fn spec_of(&self, pipeline: &PipelineSettings) -> CollectionSpec {
        CollectionSpec::of(pipeline, self.context.embedder.dimension(), self.context.embedder.identity())
    }
}

/// Runs CPU-bound or blocking work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, BenchError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| BenchError::Internal(format!("bench task: {error}")))
}

/// 1, 5 and 15-minute load averages (zeros when `/proc/loadavg` is unreadable).
fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|field| field.parse().unwrap_or(0.0));
    [fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0)]
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}
