//! What the bench measured: phases, the ratios between them, the quantised model's quality, and
//! the performance targets of ARCHITECTURE.md checked against them. Printed as a table or as JSON (`--json`).

use std::fmt::Write as _;

use serde::Serialize;

use super::corpus::CorpusSpec;

/// Import with embedding ÷ raw model: at least this (ARCHITECTURE.md, "Performance targets").
pub const TARGET_EMBEDDED_RATIO: f64 = 0.90;
/// Import of rows with vectors ÷ bare SDK upsert loop: at least this (ARCHITECTURE.md, "Performance targets").
pub const TARGET_VECTORS_RATIO: f64 = 0.85;
/// Through the daemon, rows/s of many 10-row files ÷ rows/s of the same rows as one file: at least
/// this (ARCHITECTURE.md, "Performance targets").
pub const TARGET_SMALL_FILES_RATIO: f64 = 0.80;

/// Raw model phase ÷ the model at its best fixed batch (tokens/s): at least this.
pub const TARGET_RAW_VS_FIXED: f64 = 0.98;
/// Import with embedding ÷ the model at its best fixed batch (tokens/s): at least this.
pub const TARGET_IMPORT_VS_FIXED: f64 = 0.95;

/// Phase names, in the order they run; the JSON and the smoke test use them.
pub mod phase {
    /// fp32 model on a sample of the corpus sorted by length, in the fixed batch size that ran
    /// fastest of a ladder (measured again once per round): the host's best shape, the
    /// reference for the raw model and the import.
    pub const MODEL_BEST_FIXED: &str = "model_best_fixed";
    /// fp32 model alone on pre-tokenised texts, in the import's batches.
    pub const MODEL_FP32: &str = "model_fp32";
    /// int8 model alone, same texts and batches as `model_fp32`, in the same rounds.
    pub const MODEL_INT8: &str = "model_int8";
    /// `import` of the CSV corpus, embedding every row.
    pub const IMPORT_EMBEDDED: &str = "import_embedded";
    /// Bare SDK column-based upsert loop of rows with vectors, then one flush.
    pub const SDK_UPSERT: &str = "sdk_upsert";
    /// `import` of the Parquet file whose rows carry vectors.
    pub const IMPORT_VECTORS: &str = "import_vectors";
    /// Re-import of the CSV corpus with 1 % of the texts changed.
    pub const REIMPORT_CHANGED: &str = "reimport_changed";
    /// The daemon: rows dropped as one JSONL file, from the rename into the drop folder until the
    /// file is in `.done/`.
    pub const DAEMON_ONE_FILE: &str = "daemon_one_file";
    /// The daemon: the same rows dropped as files of 10 rows, until the last is in `.done/`.
    pub const DAEMON_SMALL_FILES: &str = "daemon_small_files";
    /// Rows with vectors (`--bulk-rows`, 200,000 in full mode) upserted by the import pipeline,
    /// flush included.
    pub const BULK_BASELINE_UPSERT: &str = "bulk_baseline_upsert";
    /// The same file through `bulk_import`: staged, imported by Milvus, until its rows are
    /// visible to queries (when the file is marked imported).
    pub const BULK_IMPORT: &str = "bulk_import";
}

/// One measured phase.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseResult {
    /// One of the [`phase`] names.
    pub name: String,
    /// Texts or rows processed.
    pub items: u64,
    /// Wall-clock seconds of the timed part.
    pub seconds: f64,
    /// `items / seconds`.
    pub per_second: f64,
    /// `texts/s` or `rows/s`.
    pub unit: String,
    /// Word pieces per second (model phases).
    pub tokens_per_second: Option<f64>,
    /// Process peak resident memory during the phase (see [`super::memory`]).
    pub peak_rss_bytes: u64,
    /// Texts the model embedded during the phase (import phases).
    pub texts_embedded: Option<u64>,
    /// Seconds of the phase's closing flush, when measured apart.
    pub flush_seconds: Option<f64>,
    /// Seconds spent tokenising (model phases: untimed, reported for the profile).
    pub tokenize_seconds: Option<f64>,
    /// CPU seconds of this process during the phase (all threads).
    pub cpu_seconds: f64,
    /// CPU seconds of the local Milvus server during the phase, when it runs on this machine.
    pub milvus_cpu_seconds: Option<f64>,
    /// Whether the phase began on a settled Milvus (phases that write to Milvus, after the first).
    pub began_on_quiet_milvus: Option<bool>,
    /// Texts per model run (the fixed-batch reference).
    pub batch: Option<usize>,
    /// Seconds the model ran during the phase (import and daemon phases).
    pub model_seconds: Option<f64>,
    /// Model runs during the phase (import and daemon phases).
    pub model_runs: Option<u64>,
    /// Bulk-import phases: when the rows were staged, the tasks completed, the rows visible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk: Option<crate::progress::BulkTimes>,
    /// The rate of each round, when the phase ran in rounds (its figures are their totals).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds_per_second: Vec<f64>,
}

impl PhaseResult {
    /// A phase that processed `items` in `seconds`, peaking at `peak_rss_bytes`.
    pub fn new(name: &str, unit: &str, items: u64, seconds: f64, peak_rss_bytes: u64) -> Self {
        Self {
            name: name.to_owned(),
            items,
            seconds,
            per_second: rate(items as f64, seconds),
            unit: unit.to_owned(),
            tokens_per_second: None,
            peak_rss_bytes,
            texts_embedded: None,
            flush_seconds: None,
            tokenize_seconds: None,
            cpu_seconds: 0.0,
            milvus_cpu_seconds: None,
            began_on_quiet_milvus: None,
            batch: None,
            model_seconds: None,
            model_runs: None,
            bulk: None,
            rounds_per_second: Vec::new(),
        }
    }

    /// One phase measured in rounds (the same work each, in fresh collections): its totals —
    /// items, seconds, flush, CPU and model time summed, the highest peak — and each round's rate.
    /// Milvus's CPU is known only when every round knows it; the phase began on a settled Milvus
    /// only when every round did.
    pub fn merged(rounds: Vec<PhaseResult>) -> PhaseResult {
        let mut rounds = rounds.into_iter();
        let mut total = rounds.next().expect("a phase runs at least one round");
        total.rounds_per_second = vec![total.per_second];
        for round in rounds {
            total.items += round.items;
            total.seconds += round.seconds;
            total.peak_rss_bytes = total.peak_rss_bytes.max(round.peak_rss_bytes);
            total.texts_embedded = both(total.texts_embedded, round.texts_embedded);
            total.flush_seconds = both(total.flush_seconds, round.flush_seconds);
            total.tokenize_seconds = both(total.tokenize_seconds, round.tokenize_seconds);
            total.cpu_seconds += round.cpu_seconds;
            total.milvus_cpu_seconds = both(total.milvus_cpu_seconds, round.milvus_cpu_seconds);
            total.began_on_quiet_milvus = total.began_on_quiet_milvus.zip(round.began_on_quiet_milvus).map(|(left, right)| left && right);
            total.model_seconds = both(total.model_seconds, round.model_seconds);
            total.model_runs = both(total.model_runs, round.model_runs);
            total.rounds_per_second.push(round.per_second);
        }
        total.per_second = rate(total.items as f64, total.seconds);
        total
    }

    /// Notes how much the model ran during the phase.
    pub fn record_model(&mut self, usage: crate::embed::ModelUsage) {
        self.model_seconds = Some(usage.seconds);
        self.model_runs = Some(usage.runs);
    }

    /// Notes the CPU time the phase consumed.
    pub fn record_cpu(&mut self, used: super::cpu::CpuUse) {
        self.cpu_seconds = used.own_seconds;
        self.milvus_cpu_seconds = used.milvus_seconds;
    }
}

/// The sum of two stretches' figures, known only when both know it (a partial sum would look
/// complete).
pub(super) fn both<T: std::ops::Add<Output = T>>(left: Option<T>, right: Option<T>) -> Option<T> {
    left.zip(right).map(|(left, right)| left + right)
}

/// Cosine similarity of a model's vectors to the sentence-transformers reference fixture.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Quality {
    /// Texts compared.
    pub texts: usize,
    /// Mean cosine.
    pub mean_cosine: f64,
    /// Lowest cosine.
    pub min_cosine: f64,
}

/// Where and how the bench ran.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Environment {
    /// `release` or `debug` (numbers from a debug build are not comparable).
    pub build: String,
    /// Cores available to this process.
    pub cores: usize,
    /// `/proc/loadavg` 1/5/15-minute load when the bench started.
    pub load_average_start: [f64; 3],
    /// The same when it ended.
    pub load_average_end: [f64; 3],
    /// The model identity (`dir:precision:max_tokens`).
    pub model: String,
    /// ONNX Runtime intra-op threads (0 = one per core).
    pub onnx_threads: usize,
    /// Whether ONNX Runtime's intra-op threads spin while waiting for work.
    pub onnx_spinning: bool,
    /// Tokens per model run in force (calibrated unless configured).
    pub batch_tokens: usize,
    /// Texts per model run in force (calibrated unless configured).
    pub max_batch_texts: usize,
    /// How that shape was chosen, with the calibration's measurements.
    pub batch_shape: Option<crate::embed::calibrate::ShapeChoice>,
    /// Rows per pipeline batch (also the model phases' window).
    pub batch_rows: usize,
    /// Whether each phase's peak memory is its own (VmHWM reset) or the process's so far.
    pub peak_rss_per_phase: bool,
}

/// Ratios between phases (`None` when a phase did not run).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Ratios {
    /// `import_embedded ÷` the fp32 model around the import ([`ImportBracket`]; `model_fp32`
    /// when no bracket was measured), target ≥ 0.90.
    pub embedded_import_vs_model: Option<f64>,
    /// The same with the file's closing flush taken out of the import's time: how well the
    /// stages overlap, apart from the fixed per-file cost. Informational, not a target.
    pub embedded_import_vs_model_without_flush: Option<f64>,
    /// `import_vectors ÷ sdk_upsert`, target ≥ 0.85.
    pub vectors_import_vs_sdk: Option<f64>,
    /// `model_int8 ÷ model_fp32` (both totals over the same rounds, on the same windows).
    pub int8_speedup: Option<f64>,
    /// `import_embedded seconds ÷ reimport_changed seconds`.
    pub reimport_speedup: Option<f64>,
    /// `daemon_small_files ÷ daemon_one_file` (rows/s), target ≥ 0.80.
    pub small_files_vs_one_file: Option<f64>,
    /// `model_fp32 ÷ model_best_fixed` in tokens/s (both totals over the same rounds), target ≥ 0.98.
    pub model_vs_best_fixed: Option<f64>,
    /// `import_embedded ÷` the best fixed batch around the import ([`ImportBracket`];
    /// `model_best_fixed` when no bracket was measured) in tokens/s (the import's rows/s × the
    /// corpus's mean tokens), target ≥ 0.95.
    pub import_vs_best_fixed: Option<f64>,
    /// The same with the import's closing flush taken out (Milvus 2.3 completes a flush ~2 s
    /// after the last write, whatever the host): informational, not a target.
    pub import_vs_best_fixed_without_flush: Option<f64>,
    /// `bulk_import ÷ bulk_baseline_upsert` (rows/s, same file, same server, FLAT index for both).
    pub bulk_vs_upsert: Option<f64>,
    /// The same, the bulk import timed until Milvus's tasks completed (before the query nodes load
    /// the imported segments).
    pub bulk_completed_vs_upsert: Option<f64>,
}

/// Where the import with embedding spends the seconds the raw model does not need: the profile of
/// the gap between `import_embedded` and `model_fp32`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct GapBreakdown {
    /// `import_embedded` wall-clock seconds.
    pub import_seconds: f64,
    /// What the raw model needs for the same rows (`rows ÷ model_fp32 rate`).
    pub model_seconds: f64,
    /// Tokenising the same texts (`model_fp32`'s untimed tokenising): on the import's path.
    pub tokenize_seconds: f64,
    /// The import's closing flush.
    pub flush_seconds: f64,
    /// The rest: start-up (hash, collection check), pipeline fill and drain, and inference slowed
    /// by the CPU that reading, upserts and Milvus take from the model's cores.
    pub other_seconds: f64,
    /// CPU seconds the local Milvus server used during the import (part of `other`'s cause).
    pub milvus_cpu_seconds: Option<f64>,
}

/// The model's rates (tokens/s) measured around the import with embedding: the last round
/// before it and a reference + fp32 run right after it. The import's ratios are taken against the
/// mean of the two, so that a slower or faster spell of the host during the import's half-minute
/// weighs on both sides of the ratio.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ImportBracket {
    /// The last round before the import.
    pub before: super::model::BracketRates,
    /// Right after the import.
    pub after: super::model::BracketRates,
    /// Whether Milvus had settled after the import before `after` was measured (`None`: no local
    /// Milvus process to watch). When it had not, its leftover work may have slowed `after`, and
    /// only `before` counts: an unsettled server must not lower what the import is held against.
    pub milvus_settled: Option<bool>,
    /// CPU seconds the local Milvus server used while `after` was measured.
    pub milvus_cpu_seconds_after: Option<f64>,
}

impl ImportBracket {
    /// The best fixed batch around the import (tokens/s).
    pub fn reference(&self) -> f64 {
        self.around(self.before.reference, self.after.reference)
    }

    /// The fp32 model in the import's batches around the import (tokens/s).
    pub fn fp32(&self) -> f64 {
        self.around(self.before.fp32, self.after.fp32)
    }

    fn around(&self, before: f64, after: f64) -> f64 {
        if self.milvus_settled == Some(false) {
            before
        } else {
            (before + after) / 2.0
        }
    }
}

/// One performance target (ARCHITECTURE.md) and whether this run met it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetCheck {
    /// What is compared.
    pub name: String,
    /// Measured.
    pub value: f64,
    /// Required (at least, or at most for counts of re-embedded rows).
    pub target: f64,
    /// Whether the measurement meets the target.
    pub met: bool,
}

/// Everything one bench run produced.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchReport {
    /// Where and how.
    pub environment: Environment,
    /// The generated data.
    pub corpus: CorpusSpec,
    /// Mean word pieces per text of the embedded corpus.
    pub mean_tokens: f64,
    /// The phases, in the order they ran.
    pub phases: Vec<PhaseResult>,
    /// The ladder of fixed batch sizes (its fastest size is `model_best_fixed`'s batch).
    pub fixed_batches: Vec<super::model::FixedBatchRun>,
    /// Each round's rates of the three model phases (tokens/s), in the order they ran.
    pub model_rounds: Vec<super::model::RoundRates>,
    /// The reference and the fp32 model just before and just after `import_embedded`: what the
    /// import's ratios are held against.
    pub import_bracket: Option<ImportBracket>,
    /// Ratios between phases.
    pub ratios: Ratios,
    /// Where `import_embedded` loses time against `model_fp32`.
    pub embedded_gap: Option<GapBreakdown>,
    /// fp32 model against the reference fixture (sanity: ≥ 0.999).
    pub fp32_quality: Option<Quality>,
    /// int8 model against the reference fixture.
    pub int8_quality: Option<Quality>,
    /// Rows of the re-imported file whose text changed (only they should be embedded).
    pub reimport_changed_rows: Option<u64>,
    /// The performance targets of ARCHITECTURE.md.
    pub targets: Vec<TargetCheck>,
}

impl BenchReport {
    /// The phase called `name`, if it ran.
    pub fn phase(&self, name: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|phase| phase.name == name)
    }

    /// Fills [`BenchReport::ratios`] and [`BenchReport::targets`] from the phases.
    pub fn evaluate(&mut self) {
        let per_second = |name: &str| self.phase(name).map(|phase| phase.per_second);
        let seconds = |name: &str| self.phase(name).map(|phase| phase.seconds);
        let tokens_per_second = |name: &str| self.phase(name).and_then(|phase| phase.tokens_per_second);
        let ratio = |numerator: Option<f64>, denominator: Option<f64>| match (numerator, denominator) {
            (Some(top), Some(bottom)) if bottom > 0.0 => Some(top / bottom),
            _ => None,
        };
        // The import is held against the model as measured around it (texts/s and tokens/s).
        let model_around_import =
            self.import_bracket.map(|bracket| bracket.fp32() / self.mean_tokens.max(1e-9)).or(per_second(phase::MODEL_FP32));
        let reference_around_import = self.import_bracket.map(|bracket| bracket.reference()).or(tokens_per_second(phase::MODEL_BEST_FIXED));
        let import_without_flush = self
            .phase(phase::IMPORT_EMBEDDED)
            .map(|import| rate(import.items as f64, import.seconds - import.flush_seconds.unwrap_or(0.0)));
        self.ratios = Ratios {
            embedded_import_vs_model: ratio(per_second(phase::IMPORT_EMBEDDED), model_around_import),
            embedded_import_vs_model_without_flush: ratio(import_without_flush, model_around_import),
            vectors_import_vs_sdk: ratio(per_second(phase::IMPORT_VECTORS), per_second(phase::SDK_UPSERT)),
            int8_speedup: ratio(per_second(phase::MODEL_INT8), per_second(phase::MODEL_FP32)),
            reimport_speedup: ratio(seconds(phase::IMPORT_EMBEDDED), seconds(phase::REIMPORT_CHANGED)),
            small_files_vs_one_file: ratio(per_second(phase::DAEMON_SMALL_FILES), per_second(phase::DAEMON_ONE_FILE)),
            model_vs_best_fixed: ratio(tokens_per_second(phase::MODEL_FP32), tokens_per_second(phase::MODEL_BEST_FIXED)),
            import_vs_best_fixed: ratio(per_second(phase::IMPORT_EMBEDDED).map(|rows| rows * self.mean_tokens), reference_around_import),
            import_vs_best_fixed_without_flush: ratio(import_without_flush.map(|rows| rows * self.mean_tokens), reference_around_import),
            bulk_vs_upsert: ratio(per_second(phase::BULK_IMPORT), per_second(phase::BULK_BASELINE_UPSERT)),
            bulk_completed_vs_upsert: ratio(
                seconds(phase::BULK_BASELINE_UPSERT),
                self.phase(phase::BULK_IMPORT).and_then(|phase| phase.bulk).map(|times| times.tasks_completed_at),
            ),
        };
        self.embedded_gap = match (self.phase(phase::IMPORT_EMBEDDED), self.phase(phase::MODEL_FP32), model_around_import) {
            (Some(import), Some(model), Some(model_rate)) if model_rate > 0.0 => {
                let model_seconds = import.items as f64 / model_rate;
                let tokenize_seconds = model.tokenize_seconds.unwrap_or(0.0) * import.items as f64 / model.items.max(1) as f64;
                let flush_seconds = import.flush_seconds.unwrap_or(0.0);
                Some(GapBreakdown {
                    import_seconds: import.seconds,
                    model_seconds,
                    tokenize_seconds,
                    flush_seconds,
                    other_seconds: import.seconds - model_seconds - tokenize_seconds - flush_seconds,
                    milvus_cpu_seconds: import.milvus_cpu_seconds,
                })
            }
            _ => None,
        };
        let mut targets = Vec::new();
        let mut at_least = |name: &str, value: Option<f64>, target: f64| {
            if let Some(value) = value {
                targets.push(TargetCheck { name: name.to_owned(), value, target, met: value >= target });
            }
        };
        at_least("import with embedding / raw model", self.ratios.embedded_import_vs_model, TARGET_EMBEDDED_RATIO);
        at_least("import of rows with vectors / bare SDK upsert", self.ratios.vectors_import_vs_sdk, TARGET_VECTORS_RATIO);
        at_least("daemon: 10-row files / one file (rows/s)", self.ratios.small_files_vs_one_file, TARGET_SMALL_FILES_RATIO);
        at_least("raw model / model at its best fixed batch (tokens/s)", self.ratios.model_vs_best_fixed, TARGET_RAW_VS_FIXED);
        at_least(
            "import with embedding / model at its best fixed batch (tokens/s)",
            self.ratios.import_vs_best_fixed,
            TARGET_IMPORT_VS_FIXED,
        );
        let reembedded = self.phase(phase::REIMPORT_CHANGED).and_then(|phase| phase.texts_embedded);
        if let (Some(embedded), Some(changed)) = (reembedded, self.reimport_changed_rows) {
            targets.push(TargetCheck {
                name: "re-import: texts embedded (at most the changed rows)".to_owned(),
                value: embedded as f64,
                target: changed as f64,
                met: embedded <= changed,
            });
        }
        self.targets = targets;
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let environment = &self.environment;
        let mut out = String::new();
        let load = |load: [f64; 3]| format!("{:.2} {:.2} {:.2}", load[0], load[1], load[2]);
        let _ = writeln!(
            out,
            "vecdrop bench — {} build, {} cores, load {} → {}, model {}, onnx threads {} (spinning {}), batch {} rows / {} tokens / {} texts",
            environment.build,
            environment.cores,
            load(environment.load_average_start),
            load(environment.load_average_end),
            environment.model,
            if environment.onnx_threads == 0 { "= cores".to_owned() } else { environment.onnx_threads.to_string() },
            if environment.onnx_spinning { "on" } else { "off" },
            environment.batch_rows,
            environment.batch_tokens,
            environment.max_batch_texts,
        );
        if let Some(shape) = &environment.batch_shape {
            let _ = writeln!(out, "model batch: {}", shape.describe());
            if let Some(calibration) = &shape.calibration {
                let rungs: Vec<String> = calibration
                    .points
                    .iter()
                    .map(|point| format!("{}×{}: {:.0}", point.texts, point.tokens / point.texts.max(1), point.tokens_per_second))
                    .collect();
                let _ = writeln!(out, "  calibration (texts×tokens: tokens/s): {}", rungs.join(", "));
            }
        }
        if !self.fixed_batches.is_empty() {
            let runs: Vec<String> = self.fixed_batches.iter().map(|run| format!("{}: {:.0}", run.batch, run.tokens_per_second())).collect();
            let _ = writeln!(
                out,
                "fixed batches, sorted sample (texts per run: tokens/s; the fastest size is the reference): {}",
                runs.join(", ")
            );
        }
        if !self.model_rounds.is_empty() {
            let rounds: Vec<String> =
                self.model_rounds.iter().map(|round| format!("{:.0} / {:.0} / {:.0}", round.reference, round.fp32, round.int8)).collect();
            let _ = writeln!(out, "model rounds (tokens/s: best fixed / fp32 / int8): {}", rounds.join(", "));
        }
        if let Some(bracket) = &self.import_bracket {
            let _ = writeln!(
                out,
                "around import_embedded (tokens/s): best fixed {:.0} before, {:.0} after; fp32 {:.0} before, {:.0} after{}",
                bracket.before.reference,
                bracket.after.reference,
                bracket.before.fp32,
                bracket.after.fp32,
                match (bracket.milvus_settled, bracket.milvus_cpu_seconds_after) {
                    (Some(false), _) => " (Milvus had not settled: only \"before\" counts)".to_owned(),
                    (_, Some(seconds)) => format!(" (Milvus {seconds:.1} CPU s meanwhile)"),
                    _ => String::new(),
                }
            );
        }
        let _ = writeln!(
            out,
            "corpus: {} texts of ≥ {} words (mean {:.1} tokens), {} rows with {}-d vectors",
            self.corpus.text_rows, self.corpus.words_per_text, self.mean_tokens, self.corpus.vector_rows, self.corpus.dimension
        );
        let _ = writeln!(
            out,
            "{:<18} {:>8} {:>9} {:>10} {:>7} {:>10} {:>9} {:>8} {:>8} {:>7} {:>9} {:>8} {:>6}",
            "phase",
            "items",
            "seconds",
            "rate",
            "unit",
            "tokens/s",
            "peak MB",
            "embedded",
            "flush s",
            "cpu s",
            "milvus s",
            "model s",
            "runs"
        );
        for phase in &self.phases {
            let optional = |value: Option<f64>, decimals: usize| value.map_or("-".to_owned(), |value| format!("{value:.decimals$}"));
            let _ = writeln!(
                out,
                "{:<18} {:>8} {:>9.2} {:>10.1} {:>7} {:>10} {:>9.0} {:>8} {:>8} {:>7.1} {:>9} {:>8} {:>6}",
                phase.name,
                phase.items,
                phase.seconds,
                phase.per_second,
                phase.unit,
                optional(phase.tokens_per_second, 0),
                phase.peak_rss_bytes as f64 / 1_048_576.0,
                phase.texts_embedded.map_or("-".to_owned(), |count| count.to_string()),
                optional(phase.flush_seconds, 2),
                phase.cpu_seconds,
                optional(phase.milvus_cpu_seconds, 1),
                optional(phase.model_seconds, 1),
                phase.model_runs.map_or("-".to_owned(), |runs| runs.to_string()),
            );
        }
        let in_rounds: Vec<String> = self
            .phases
            .iter()
            .filter(|phase| phase.rounds_per_second.len() > 1)
            .map(|phase| {
                let rates: Vec<String> = phase.rounds_per_second.iter().map(|rate| format!("{rate:.1}")).collect();
                format!("{} {}", phase.name, rates.join(" / "))
            })
            .collect();
        if !in_rounds.is_empty() {
            let _ = writeln!(out, "paired phases in two rounds each, run A B B A (rate of each round): {}", in_rounds.join("; "));
        }
        let ratio = |value: Option<f64>| value.map_or("-".to_owned(), |value| format!("{value:.3}"));
        let _ = writeln!(
            out,
            "ratios: import/model {} (target ≥ {TARGET_EMBEDDED_RATIO}; {} without the closing flush), vectors import/SDK {} (target ≥ {TARGET_VECTORS_RATIO}), int8 speed-up {}, re-import speed-up {}, daemon small files/one file {} (target ≥ {TARGET_SMALL_FILES_RATIO})",
            ratio(self.ratios.embedded_import_vs_model),
            ratio(self.ratios.embedded_import_vs_model_without_flush),
            ratio(self.ratios.vectors_import_vs_sdk),
            ratio(self.ratios.int8_speedup),
            ratio(self.ratios.reimport_speedup),
            ratio(self.ratios.small_files_vs_one_file),
        );
        let _ = writeln!(
            out,
            "against the model at its best fixed batch (tokens/s): raw model {} (target ≥ {TARGET_RAW_VS_FIXED}), import with embedding {} (target ≥ {TARGET_IMPORT_VS_FIXED}; {} without the closing flush)",
            ratio(self.ratios.model_vs_best_fixed),
            ratio(self.ratios.import_vs_best_fixed),
            ratio(self.ratios.import_vs_best_fixed_without_flush),
        );
        if self.ratios.bulk_vs_upsert.is_some() {
            let _ = writeln!(
                out,
                "bulk import/upserts of the same rows with vectors (rows/s, until visible to queries): {}; until Milvus's tasks completed: {}",
                ratio(self.ratios.bulk_vs_upsert),
                ratio(self.ratios.bulk_completed_vs_upsert)
            );
            if let Some(times) = self.phase(phase::BULK_IMPORT).and_then(|phase| phase.bulk) {
                let _ = writeln!(
                    out,
                    "bulk_import: staged at {:.1} s, tasks completed at {:.1} s, rows visible at {:.1} s",
                    times.staged_at, times.tasks_completed_at, times.visible_at
                );
            }
        }
        if let Some(gap) = self.embedded_gap {
            let _ = writeln!(
                out,
                "import_embedded {:.1} s = model {:.1} s + tokenising {:.1} s + flush {:.1} s + other {:.1} s (Milvus used {} CPU s meanwhile)",
                gap.import_seconds,
                gap.model_seconds,
                gap.tokenize_seconds,
                gap.flush_seconds,
                gap.other_seconds,
                gap.milvus_cpu_seconds.map_or("?".to_owned(), |seconds| format!("{seconds:.1}")),
            );
        }
        for (label, quality) in [("fp32", self.fp32_quality), ("int8", self.int8_quality)] {
            if let Some(quality) = quality {
                let _ = writeln!(
                    out,
                    "{label} vs reference ({} texts): mean cosine {:.4}, min {:.4}",
                    quality.texts, quality.mean_cosine, quality.min_cosine
                );
            }
        }
        for target in &self.targets {
            let _ = writeln!(
                out,
                "target {}: {:.3} vs {:.3} → {}",
                target.name,
                target.value,
                target.target,
                if target.met { "met" } else { "NOT met" }
            );
        }
        out
    }
}

/// `amount / seconds`, 0 when no time passed.
pub fn rate(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        amount / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(phases: Vec<PhaseResult>) -> BenchReport {
        BenchReport {
            environment: Environment {
                build: "release".into(),
                cores: 2,
                load_average_start: [0.5, 0.4, 0.3],
                load_average_end: [1.0, 0.5, 0.3],
                model: "all-MiniLM-L6-v2:fp32:256".into(),
                onnx_threads: 0,
                onnx_spinning: false,
                batch_tokens: 8192,
                max_batch_texts: 128,
                batch_shape: None,
                batch_rows: 512,
                peak_rss_per_phase: true,
            },
            corpus: CorpusSpec { text_rows: 100, vector_rows: 1000, words_per_text: 28, seed: 7, dimension: 384 },
            mean_tokens: 37.2,
            phases,
            fixed_batches: Vec::new(),
            model_rounds: Vec::new(),
            import_bracket: None,
            ratios: Ratios::default(),
            embedded_gap: None,
            fp32_quality: None,
            int8_quality: Some(Quality { texts: 32, mean_cosine: 0.99, min_cosine: 0.96 }),
            reimport_changed_rows: Some(1),
            targets: Vec::new(),
        }
    }

    #[test]
    fn ratios_and_targets_follow_from_the_phases() {
        let mut reimport = PhaseResult::new(phase::REIMPORT_CHANGED, "rows/s", 100, 1.0, 1);
        reimport.texts_embedded = Some(3);
        let mut model = PhaseResult::new(phase::MODEL_FP32, "texts/s", 100, 0.5, 1);
        model.tokenize_seconds = Some(0.02);
        model.tokens_per_second = Some(200.0 * 37.2);
        let mut best_fixed = PhaseResult::new(phase::MODEL_BEST_FIXED, "texts/s", 50, 0.25, 1);
        best_fixed.tokens_per_second = Some(7500.0);
        let mut import = PhaseResult::new(phase::IMPORT_EMBEDDED, "rows/s", 100, 0.625, 1);
        import.flush_seconds = Some(0.05);
        let mut bench = report(vec![
            best_fixed,
            model,
            import,
            PhaseResult::new(phase::SDK_UPSERT, "rows/s", 1000, 1.0, 1),
            PhaseResult::new(phase::IMPORT_VECTORS, "rows/s", 1000, 1.0, 1),
            PhaseResult::new(phase::MODEL_INT8, "texts/s", 100, 0.25, 1),
            reimport,
            PhaseResult::new(phase::DAEMON_ONE_FILE, "rows/s", 1000, 10.0, 1),
            PhaseResult::new(phase::DAEMON_SMALL_FILES, "rows/s", 1000, 12.5, 1),
        ]);
        bench.evaluate();
        assert_eq!(bench.ratios.embedded_import_vs_model, Some(0.8));
        let without_flush = bench.ratios.embedded_import_vs_model_without_flush.unwrap();
        assert!((without_flush - 0.5 / 0.575).abs() < 1e-9, "{without_flush}");
        assert_eq!(bench.ratios.vectors_import_vs_sdk, Some(1.0));
        assert_eq!(bench.ratios.int8_speedup, Some(2.0));
        assert_eq!(bench.ratios.reimport_speedup, Some(0.625));
        assert_eq!(bench.ratios.small_files_vs_one_file, Some(0.8));
        let met: Vec<bool> = bench.targets.iter().map(|target| target.met).collect();
        assert_eq!(met, vec![false, true, true, true, false, false], "{:?}", bench.targets);
        assert!((bench.ratios.model_vs_best_fixed.unwrap() - 0.992).abs() < 1e-9);
        assert!((bench.ratios.import_vs_best_fixed.unwrap() - 160.0 * 37.2 / 7500.0).abs() < 1e-9);
        let without_flush = bench.ratios.import_vs_best_fixed_without_flush.unwrap();
        assert!((without_flush - 100.0 / 0.575 * 37.2 / 7500.0).abs() < 1e-9, "{without_flush}");
        let gap = bench.embedded_gap.unwrap();
        assert_eq!((gap.model_seconds, gap.tokenize_seconds, gap.flush_seconds), (0.5, 0.02, 0.05));
        assert!((gap.other_seconds - 0.055).abs() < 1e-9, "{gap:?}");
        let table = bench.table();
        assert!(table.contains("import_embedded") && table.contains("NOT met") && table.contains("min 0.9600"), "{table}");
    }

    #[test]
    fn a_phase_in_rounds_reports_its_totals_and_each_round() {
        let mut first = PhaseResult::new(phase::IMPORT_VECTORS, "rows/s", 1000, 2.0, 300);
        first.flush_seconds = Some(0.5);
        first.milvus_cpu_seconds = Some(1.0);
        first.began_on_quiet_milvus = Some(true);
        first.cpu_seconds = 1.5;
        let mut second = PhaseResult::new(phase::IMPORT_VECTORS, "rows/s", 1000, 3.0, 400);
        second.flush_seconds = Some(0.7);
        second.milvus_cpu_seconds = None;
        second.began_on_quiet_milvus = Some(false);
        second.cpu_seconds = 2.5;
        let total = PhaseResult::merged(vec![first, second]);
        assert_eq!((total.items, total.seconds, total.per_second), (2000, 5.0, 400.0));
        assert_eq!(total.rounds_per_second, vec![500.0, 1000.0 / 3.0]);
        assert_eq!((total.peak_rss_bytes, total.cpu_seconds), (400, 4.0));
        assert!((total.flush_seconds.unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(total.milvus_cpu_seconds, None, "unknown in one round: unknown in total");
        assert_eq!(total.began_on_quiet_milvus, Some(false));
        let mut bench = report(vec![total]);
        bench.evaluate();
        assert!(bench.table().contains("import_vectors 500.0 / 333.3"), "{}", bench.table());
    }

    #[test]
    fn the_import_is_held_against_the_model_as_measured_around_it() {
        let mut best_fixed = PhaseResult::new(phase::MODEL_BEST_FIXED, "texts/s", 50, 0.25, 1);
        best_fixed.tokens_per_second = Some(7500.0);
        let mut model = PhaseResult::new(phase::MODEL_FP32, "texts/s", 100, 0.5, 1);
        model.tokens_per_second = Some(200.0 * 37.2);
        let mut import = PhaseResult::new(phase::IMPORT_EMBEDDED, "rows/s", 100, 0.625, 1);
        import.flush_seconds = Some(0.0);
        let mut bench = report(vec![best_fixed, model, import]);
        // The host ran the model 20 % slower around the import than in the rounds.
        bench.import_bracket = Some(ImportBracket {
            before: super::super::model::BracketRates { reference: 6200.0, fp32: 5900.0 },
            after: super::super::model::BracketRates { reference: 5800.0, fp32: 6000.0 },
            milvus_settled: Some(true),
            milvus_cpu_seconds_after: Some(0.2),
        });
        bench.model_rounds = vec![super::super::model::RoundRates { reference: 7500.0, fp32: 7440.0, int8: 11000.0 }];
        bench.evaluate();
        let import_tokens_per_second = 160.0 * 37.2;
        assert!((bench.ratios.import_vs_best_fixed.unwrap() - import_tokens_per_second / 6000.0).abs() < 1e-9);
        assert!((bench.ratios.embedded_import_vs_model.unwrap() - import_tokens_per_second / 5950.0).abs() < 1e-9);
        assert!((bench.ratios.model_vs_best_fixed.unwrap() - 0.992).abs() < 1e-9, "the rounds' totals, not the bracket");
        let gap = bench.embedded_gap.unwrap();
        assert!((gap.model_seconds - 100.0 * 37.2 / 5950.0).abs() < 1e-9, "{gap:?}");
        let table = bench.table();
        assert!(table.contains("7500 / 7440 / 11000") && table.contains("best fixed 6200 before, 5800 after"), "{table}");
        // Milvus still busy after the import: its leftover work must not lower the reference.
        bench.import_bracket.as_mut().unwrap().milvus_settled = Some(false);
        bench.evaluate();
        assert!((bench.ratios.import_vs_best_fixed.unwrap() - import_tokens_per_second / 6200.0).abs() < 1e-9);
        assert!((bench.ratios.embedded_import_vs_model.unwrap() - import_tokens_per_second / 5900.0).abs() < 1e-9);
        assert!(bench.table().contains("only \"before\" counts"));
    }

    #[test]
    fn missing_phases_leave_ratios_empty() {
        let mut bench = report(vec![PhaseResult::new(phase::MODEL_FP32, "texts/s", 100, 0.0, 1)]);
        bench.evaluate();
        assert_eq!(bench.ratios, Ratios::default());
        assert!(bench.targets.is_empty() && bench.embedded_gap.is_none());
        assert_eq!(bench.phases[0].per_second, 0.0);
    }
}
