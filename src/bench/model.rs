//! The model alone: how fast it embeds the corpus in the import's batches, and how close its
//! vectors are to the sentence-transformers reference.
//!
//! "Raw model throughput" is the strictest baseline we can give the import: texts are tokenised
//! before the clock starts (tokenising is timed apart and reported for the profile), then each
//! window of `batch_rows` texts — what one pipeline batch hands the embed stage — goes through
//! [`Embedder::embed_encoded`]: the same [`crate::embed::plan_batches`] batches, ONNX Runtime
//! runs, pooling and normalisation as in an import. One window runs untimed first to warm the
//! session's memory arena.

use std::time::Instant;

use crate::embed::{EmbedError, Embedder};

use super::report::Quality;

/// sentence-transformers all-MiniLM-L6-v2 vectors of 32 texts (short, long, truncated), built into
/// the binary so the bench can grade a model anywhere.
const REFERENCE_FIXTURE: &str = include_str!("../../tests/fixtures/minilm-reference.jsonl");

/// One timed pass of the model over the corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelRun {
    /// Texts embedded.
    pub texts: u64,
    /// Word pieces in them (no padding).
    pub tokens: u64,
    /// Inference seconds (pooling included, tokenising excluded).
    pub seconds: f64,
    /// Tokenising seconds (not in `seconds`).
    pub tokenize_seconds: f64,
}

/// Embeds `texts` window by window (`window` texts each) on the calling thread. CPU-bound: call
/// on a blocking thread.
pub fn throughput(embedder: &Embedder, texts: &[String], window: usize) -> Result<ModelRun, EmbedError> {
    let tokenize_started = Instant::now();
    let windows = texts
        .chunks(window.max(1))
        .map(|chunk| embedder.encode(&chunk.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect::<Result<Vec<_>, _>>()?;
    let tokenize_seconds = tokenize_started.elapsed().as_secs_f64();
    if let Some(first) = windows.first() {
        embedder.embed_encoded(first)?;
    }
    let started = Instant::now();
    for encodings in &windows {
        embedder.embed_encoded(encodings)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let tokens = windows.iter().flatten().map(|encoding| encoding.get_ids().len() as u64).sum();
    Ok(ModelRun { texts: texts.len() as u64, tokens, seconds, tokenize_seconds })
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

/// The reference the import and the raw phase are held against: `texts` sorted by length (the
/// least padding any batching can have), cut into fixed batches of each size in `batches`, each
/// size timed over all texts. Returns every run; the fastest is the host's best fixed batch.
/// CPU-bound: call on a blocking thread.
pub fn fixed_batches(embedder: &Embedder, texts: &[String], batches: &[usize]) -> Result<Vec<FixedBatchRun>, EmbedError> {
    let encodings = embedder.encode(&texts.iter().map(String::as_str).collect::<Vec<_>>())?;
    let mut sorted: Vec<&tokenizers::Encoding> = encodings.iter().collect();
    sorted.sort_by_key(|encoding| std::cmp::Reverse(encoding.get_ids().len()));
    let tokens: u64 = sorted.iter().map(|encoding| encoding.get_ids().len() as u64).sum();
    // Warm the session's memory arena at the largest shape, untimed.
    if let Some(&largest) = batches.iter().max() {
        embedder.embed_one_batch(&sorted[..largest.min(sorted.len())])?;
    }
    let mut runs = Vec::new();
    for &batch in batches {
        let started = Instant::now();
        for chunk in sorted.chunks(batch.max(1)) {
            embedder.embed_one_batch(chunk)?;
        }
        runs.push(FixedBatchRun { batch, texts: sorted.len() as u64, tokens, seconds: started.elapsed().as_secs_f64() });
    }
    Ok(runs)
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
