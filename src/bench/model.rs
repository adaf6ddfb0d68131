//! The model alone: how fast it embeds the corpus in the import's batches, and how close its
//! vectors are to the sentence-transformers reference.
//!
//! "Raw model throughput" is the strictest baseline we can give the import: texts are tokenised
//! before the clock starts (tokenising is timed apart and reported for the profile), then each
//! window of `batch_rows` texts — what one pipeline batch hands the embed stage — goes through
//! [`Embedder::embed_encoded`]: the same [`crate::embed::plan_batches`] batches, ONNX Runtime
//! runs, pooling and normalisation as in an import. One window runs untimed first to warm the
//! session's memory arena.
//!
//! A shared two-core host runs the same work several percent faster or slower from one minute
//! to the next, more than the margins the targets leave. So the phases that are compared with each other
//! are measured in [`rounds`]: each round runs the reference (the best fixed batch over the
//! sample), the fp32 model over one share of the corpus's windows and the int8 model over the
//! same share, in that order in even rounds and reversed in odd ones; a phase's figure is its
//! total over all rounds. A slow spell then falls on every phase alike instead of on whichever
//! ran during it. (Alternating removes the bias of drift, not the noise: one run's ratios still
//! scatter by a few percent.) The best fixed batch
//! size is chosen by a separate ladder ([`fixed_batches`]), and the reference's figure comes from
//! the rounds, not from the ladder: the fastest of six noisy timings is a lucky one, and holding
//! the raw model against it would charge the raw model with the luck. The other way round, a
//! noisy ladder can pick a size that is not the host's best, which would flatter the raw model;
//! two passes over the ladder make that less likely, and the table prints every size.

use std::time::Instant;

use crate::embed::{EmbedError, Embedder};

use super::report::Quality;

/// sentence-transformers all-MiniLM-L6-v2 vectors of 32 texts (short, long, truncated), built into
/// the binary so the bench can grade a model anywhere.
const REFERENCE_FIXTURE: &str = include_str!("../../tests/fixtures/minilm-reference.jsonl");

/// One timed pass of the model over the corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelRun {
    /// Texts embedded.
    pub texts: u64,
    /// Word pieces in them (no padding).
    pub tokens: u64,
    /// Inference seconds (pooling included, tokenising excluded: see
    /// [`Workload::tokenize_seconds`]).
    pub seconds: f64,
}

impl From<FixedBatchRun> for ModelRun {
    fn from(run: FixedBatchRun) -> Self {
        Self { texts: run.texts, tokens: run.tokens, seconds: run.seconds }
    }
}

impl ModelRun {
    /// Word pieces per second.
    pub fn tokens_per_second(&self) -> f64 {
        super::report::rate(self.tokens as f64, self.seconds)
    }

    fn add(&mut self, other: ModelRun) {
        self.texts += other.texts;
        self.tokens += other.tokens;
        self.seconds += other.seconds;
    }
}

/// The tokenised workload of the model phases: the corpus in windows of `window` texts (as the
/// import's batches reach the embed stage) and the reference's sample sorted by length, longest
/// first (the least padding any batching can have).
pub struct Workload {
    windows: Vec<Vec<tokenizers::Encoding>>,
    sample: Vec<tokenizers::Encoding>,
    /// Seconds the corpus took to tokenise (not in any phase's time).
    pub tokenize_seconds: f64,
}

impl Workload {
    /// Tokenises `texts` in windows of `window` and the reference `sample`. CPU-bound.
    pub fn tokenise(embedder: &Embedder, texts: &[String], window: usize, sample: &[String]) -> Result<Self, EmbedError> {
        let started = Instant::now();
        let windows = texts
            .chunks(window.max(1))
            .map(|chunk| embedder.encode(&chunk.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect::<Result<Vec<_>, _>>()?;
        let tokenize_seconds = started.elapsed().as_secs_f64();
        let mut sample = embedder.encode(&sample.iter().map(String::as_str).collect::<Vec<_>>())?;
        sample.sort_by_key(|encoding| std::cmp::Reverse(encoding.get_ids().len()));
        Ok(Self { windows, sample, tokenize_seconds })
    }

    /// What the import's bracket needs of this workload once the rounds are done: one round's
    /// share of the windows (round 0's, the largest) and the sample. The rest of the tokenised
    /// corpus can then be dropped, so it does not weigh on the later phases' peak memory.
    pub fn bracket_part(&self, rounds: usize) -> Workload {
        let rounds = self.rounds(rounds);
        Workload { windows: self.share(0, rounds).cloned().collect(), sample: self.sample.clone(), tokenize_seconds: 0.0 }
    }

    /// Rounds that can run: `wanted`, at least one and at most one per window.
    fn rounds(&self, wanted: usize) -> usize {
        wanted.clamp(1, self.windows.len().max(1))
    }

    /// The windows of round `round` of `rounds`: every `rounds`-th window, starting at `round`.
    fn share(&self, round: usize, rounds: usize) -> impl Iterator<Item = &Vec<tokenizers::Encoding>> {
        self.windows.iter().skip(round).step_by(rounds.max(1))
    }
}

/// The model phases' figures, each the total over all rounds.
#[derive(Debug, Clone)]
pub struct RoundsResult {
    /// The best fixed batch over the sorted sample, once per round.
    pub reference: ModelRun,
    /// fp32 over the corpus's windows (each window in exactly one round).
    pub fp32: ModelRun,
    /// int8 over the same windows.
    pub int8: ModelRun,
    /// Each round's rates, for the report.
    pub per_round: Vec<RoundRates>,
    /// CPU each phase used, summed over the rounds (reference, fp32, int8).
    pub cpu: [Option<super::cpu::CpuUse>; 3],
}

/// Word pieces per second of each phase in one round.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RoundRates {
    /// The best fixed batch over the sample.
    pub reference: f64,
    /// The fp32 model over this round's windows.
    pub fp32: f64,
    /// The int8 model over the same windows.
    pub int8: f64,
}

/// The reference's and the fp32 model's word pieces per second at one moment.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BracketRates {
    /// The best fixed batch over the sample.
    pub reference: f64,
    /// The fp32 model over one round's share of the windows.
    pub fp32: f64,
}

impl From<RoundRates> for BracketRates {
    fn from(round: RoundRates) -> Self {
        Self { reference: round.reference, fp32: round.fp32 }
    }
}

/// Runs `rounds` rounds of reference (`best_batch` texts per run over the sorted sample), fp32
/// and int8 (this round's share of the windows), in that order in even rounds and reversed in odd
/// ones, after one untimed window of each model to warm its memory arena. CPU-bound: call on a
/// blocking thread.
pub fn rounds(fp32: &Embedder, int8: &Embedder, workload: &Workload, best_batch: usize, rounds: usize) -> Result<RoundsResult, EmbedError> {
    let rounds = workload.rounds(rounds);
    if let Some(first) = workload.windows.first() {
        fp32.embed_encoded(first)?;
        int8.embed_encoded(first)?;
    }
    let sorted: Vec<&tokenizers::Encoding> = workload.sample.iter().collect();
    let mut result = RoundsResult {
        reference: ModelRun::default(),
        fp32: ModelRun::default(),
        int8: ModelRun::default(),
        per_round: Vec::new(),
        cpu: [None; 3],
    };
    for round in 0..rounds {
        // Reference, fp32, int8 in even rounds and the other way round in odd ones: a steady
        // drift of the host's speed then weighs on the first and the last alike.
        let order: [usize; 3] = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        let mut runs = [ModelRun::default(); 3];
        for phase in order {
            let clock = super::cpu::CpuClock::start();
            runs[phase] = match phase {
                0 => fixed_batch_run(fp32, &sorted, best_batch)?.into(),
                1 => windows_run(fp32, workload.share(round, rounds))?,
                _ => windows_run(int8, workload.share(round, rounds))?,
            };
            let used = clock.elapsed();
            result.cpu[phase] = Some(result.cpu[phase].map_or(used, |earlier| earlier.plus(used)));
        }
        let [reference, fp32_run, int8_run] = runs;
        result.per_round.push(RoundRates {
            reference: reference.tokens_per_second(),
            fp32: fp32_run.tokens_per_second(),
            int8: int8_run.tokens_per_second(),
        });
        result.reference.add(reference);
        result.fp32.add(fp32_run);
        result.int8.add(int8_run);
    }
    Ok(result)
}

/// The reference and the fp32 model once more, right after the import (the import's bracket:
/// with the last round's figures before it, what the model did around the import). `workload`
/// is a [`Workload::bracket_part`]: its windows are one round's share. CPU-bound.
pub fn bracket_after(embedder: &Embedder, workload: &Workload, best_batch: usize) -> Result<BracketRates, EmbedError> {
    let sorted: Vec<&tokenizers::Encoding> = workload.sample.iter().collect();
    let reference = fixed_batch_run(embedder, &sorted, best_batch)?;
    let fp32 = windows_run(embedder, workload.windows.iter())?;
    Ok(BracketRates { reference: reference.tokens_per_second(), fp32: fp32.tokens_per_second() })
}

/// Times the model over `windows`, each through [`Embedder::embed_encoded`] as in an import.
fn windows_run<'a>(embedder: &Embedder, windows: impl Iterator<Item = &'a Vec<tokenizers::Encoding>>) -> Result<ModelRun, EmbedError> {
    let mut run = ModelRun::default();
    for encodings in windows {
        let started = Instant::now();
        embedder.embed_encoded(encodings)?;
        run.seconds += started.elapsed().as_secs_f64();
        run.texts += encodings.len() as u64;
        run.tokens += encodings.iter().map(|encoding| encoding.get_ids().len() as u64).sum::<u64>();
    }
    Ok(run)
}

/// The model over `texts` in batches of exactly `batch` texts each (the last may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FixedBatchRun {
    /// Texts per run.
    pub batch: usize,
    /// Texts embedded.
    pub texts: u64,
    /// Word pieces in them (no padding).
    pub tokens: u64,
    /// Inference seconds.
    pub seconds: f64,
}

impl FixedBatchRun {
    /// Word pieces per second.
    pub fn tokens_per_second(&self) -> f64 {
        super::report::rate(self.tokens as f64, self.seconds)
    }
}

/// The ladder that chooses the reference's batch size: the sorted sample cut into fixed batches
/// of each size in `batches`, each size timed over the whole sample in two passes over the
/// ladder (after one untimed run of the largest shape to warm the session's memory arena), the
/// faster of its two timings kept: one slow spell of the host does not knock a size out. Returns
/// one run per size; the fastest size is the host's best fixed batch. CPU-bound: call on a
/// blocking thread.
pub fn fixed_batches(embedder: &Embedder, workload: &Workload, batches: &[usize]) -> Result<Vec<FixedBatchRun>, EmbedError> {
    let sorted: Vec<&tokenizers::Encoding> = workload.sample.iter().collect();
    if let Some(&largest) = batches.iter().max() {
        embedder.embed_one_batch(&sorted[..largest.min(sorted.len())])?;
    }
    let first: Vec<FixedBatchRun> = batches.iter().map(|&batch| fixed_batch_run(embedder, &sorted, batch)).collect::<Result<_, _>>()?;
    first
        .into_iter()
        .map(|earlier| {
            let later = fixed_batch_run(embedder, &sorted, earlier.batch)?;
            Ok(if later.seconds < earlier.seconds { later } else { earlier })
        })
        .collect()
}

/// The sorted sample in batches of `batch` texts, timed.
fn fixed_batch_run(embedder: &Embedder, sorted: &[&tokenizers::Encoding], batch: usize) -> Result<FixedBatchRun, EmbedError> {
    let tokens = sorted.iter().map(|encoding| encoding.get_ids().len() as u64).sum();
    let started = Instant::now();
    for chunk in sorted.chunks(batch.max(1)) {
        embedder.embed_one_batch(chunk)?;
    }
    Ok(FixedBatchRun { batch, texts: sorted.len() as u64, tokens, seconds: started.elapsed().as_secs_f64() })
}

/// Every `len / wanted`-th text (about `wanted` texts spread over the corpus, so their lengths are
/// the corpus's).
pub fn spread_sample(texts: &[String], wanted: usize) -> Vec<String> {
    let step = (texts.len() / wanted.max(1)).max(1);
    texts.iter().step_by(step).take(wanted.max(1)).cloned().collect()
}

/// Mean word pieces per text (after truncation).
pub fn mean_tokens(embedder: &Embedder, texts: &[String]) -> Result<f64, EmbedError> {
    let encodings = embedder.encode(&texts.iter().map(String::as_str).collect::<Vec<_>>())?;
    let total: usize = encodings.iter().map(|encoding| encoding.get_ids().len()).sum();
    Ok(total as f64 / encodings.len().max(1) as f64)
}

/// Cosine of `embedder`'s vectors to the reference vectors, all fixture texts embedded in one
/// call (batched as an import would). CPU-bound.
pub fn quality(embedder: &Embedder) -> Result<Quality, EmbedError> {
    let references = reference_vectors();
    let texts: Vec<&str> = references.iter().map(|(text, _)| text.as_str()).collect();
    let vectors = embedder.embed_blocking(&texts)?;
    let cosines: Vec<f64> = vectors.iter().zip(&references).map(|(vector, (_, reference))| cosine(vector, reference)).collect();
    Ok(Quality {
        texts: cosines.len(),
        mean_cosine: cosines.iter().sum::<f64>() / cosines.len().max(1) as f64,
        min_cosine: cosines.iter().copied().fold(f64::INFINITY, f64::min),
    })
}

fn reference_vectors() -> Vec<(String, Vec<f32>)> {
    REFERENCE_FIXTURE
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("the built-in fixture is JSON Lines");
            let text = value["text"].as_str().expect("fixture lines have a text").to_owned();
            let vector = value["embedding"]
                .as_array()
                .expect("fixture lines have an embedding")
                .iter()
                .map(|number| number.as_f64().unwrap_or(f64::NAN) as f32)
                .collect();
            (text, vector)
        })
        .collect()
}

fn cosine(left: &[f32], right: &[f32]) -> f64 {
    let dot: f64 = left.iter().zip(right).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
    let norm = |vector: &[f32]| vector.iter().map(|value| f64::from(*value).powi(2)).sum::<f64>().sqrt();
    dot / (norm(left) * norm(right)).max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_fixture_has_unit_reference_vectors() {
        let references = reference_vectors();
        assert!(references.len() >= 32);
        for (text, vector) in &references {
            assert_eq!(vector.len(), 384, "{text}");
            assert!((cosine(vector, vector) - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn each_window_falls_in_exactly_one_round() {
        let workload = Workload {
            windows: (1..=5).map(|texts| vec![tokenizers::Encoding::default(); texts]).collect(),
            sample: Vec::new(),
            tokenize_seconds: 0.0,
        };
        let sizes = |round, rounds| workload.share(round, rounds).map(Vec::len).collect::<Vec<_>>();
        assert_eq!((sizes(0, 2), sizes(1, 2)), (vec![1, 3, 5], vec![2, 4]));
        assert_eq!(sizes(0, 1), vec![1, 2, 3, 4, 5]);
        assert_eq!((sizes(3, 4), sizes(0, 4)), (vec![4], vec![1, 5]));
    }

    #[test]
    fn a_spread_sample_takes_texts_from_the_whole_corpus() {
        let texts: Vec<String> = (0..10).map(|number| number.to_string()).collect();
        assert_eq!(spread_sample(&texts, 3), vec!["0", "3", "6"]);
        assert_eq!(spread_sample(&texts, 20).len(), 10);
    }

    #[test]
    fn cosine_of_orthogonal_and_opposite_vectors() {
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), 0.0);
        assert!((cosine(&[1.0, 1.0], &[-3.0, -3.0]) + 1.0).abs() < 1e-12);
    }
}
