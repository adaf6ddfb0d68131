//! The embedder matches sentence-transformers all-MiniLM-L6-v2 (reference vectors in
//! `tests/fixtures/minilm-reference.jsonl`): cosine ≥ 0.999 for every text, alone and inside
//! mixed batches of every shape the batch planner can produce.

mod support;

use vecdrop::embed::Embedder;
use vecdrop::settings::EmbeddingSettings;

const MIN_COSINE: f32 = 0.999;

fn references() -> Vec<(String, Vec<f32>)> {
    let text = std::fs::read_to_string(support::root().join("tests/fixtures/minilm-reference.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let embedding = value["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            (value["text"].as_str().unwrap().to_owned(), embedding)
        })
        .collect()
}

fn load(batch_tokens: usize, max_batch_texts: usize) -> Embedder {
    let settings = EmbeddingSettings { model_dir: support::model_dir(), batch_tokens, max_batch_texts, ..Default::default() };
    Embedder::load(&settings, &support::root()).unwrap_or_else(|error| panic!("{error}"))
}

fn cosine(left: &[f32], right: &[f32]) -> f32 {
    let dot: f32 = left.iter().zip(right).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(left) * norm(right))
}

fn assert_matches(texts: &[&str], vectors: &[Vec<f32>], references: &[(String, Vec<f32>)], context: &str) {
    assert_eq!(texts.len(), vectors.len());
    for (text, vector) in texts.iter().zip(vectors) {
        let reference = &references.iter().find(|(reference_text, _)| reference_text == text).unwrap().1;
        assert_eq!(vector.len(), 384);
        let similarity = cosine(vector, reference);
        assert!(similarity >= MIN_COSINE, "{context}: cosine {similarity} for {:?}", text.chars().take(60).collect::<String>());
    }
}

#[test]
fn every_reference_text_alone() {
    let references = references();
    assert!(references.len() >= 32);
    let embedder = load(8192, 128);
    assert_eq!(embedder.dimension(), 384);
    for (text, _) in &references {
        let vectors = embedder.embed_blocking(&[text.as_str()]).unwrap();
        assert_matches(&[text.as_str()], &vectors, &references, "alone");
    }
}

#[test]
fn mixed_batches_in_any_order_and_budget() {
    let references = references();
    let mut texts: Vec<&str> = references.iter().map(|(text, _)| text.as_str()).collect();
    // Long and short texts interleaved, repeated, in a scrambled order.
    texts.reverse();
    texts.rotate_left(5);
    let repeated: Vec<&str> = texts.iter().chain(texts.iter().step_by(3)).copied().collect();
    for (batch_tokens, max_batch_texts) in [(8192, 128), (512, 4), (256, 1), (1024, 7)] {
        let embedder = load(batch_tokens, max_batch_texts);
        let vectors = embedder.embed_blocking(&repeated).unwrap();
        assert_matches(&repeated, &vectors, &references, &format!("batch_tokens={batch_tokens} max_batch_texts={max_batch_texts}"));
    }
}

#[test]
fn texts_longer_than_256_tokens_are_truncated_like_sentence_transformers() {
    let references = references();
    let embedder = load(8192, 128);
    let long: Vec<&str> = references.iter().map(|(text, _)| text.as_str()).filter(|text| text.split_whitespace().count() > 200).collect();
    assert!(long.len() >= 2, "the fixture has two texts over 256 tokens");
    let vectors = embedder.embed_blocking(&long).unwrap();
    assert_matches(&long, &vectors, &references, "long texts");
}

#[tokio::test(flavor = "multi_thread")]
async fn async_embedding_returns_vectors_in_input_order() {
    let references = references();
    let embedder = load(8192, 128);
    let texts: Vec<String> = references.iter().map(|(text, _)| text.clone()).collect();
    let vectors = embedder.embed(texts.clone()).await.unwrap();
    let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_matches(&borrowed, &vectors, &references, "async");
}

/// Requests from many files at once share the model's batches through the queue; each gets its
/// own vectors, in its own order, whatever the requests were merged with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_through_the_queue_each_get_their_own_vectors_in_order() {
    let references = references();
    let queue = vecdrop::embed::EmbedQueue::start(load(512, 8));
    let texts: Vec<String> = references.iter().map(|(text, _)| text.clone()).collect();
    let requests: Vec<Vec<String>> = (0..12).map(|request| texts.iter().skip(request).step_by(request + 1).cloned().collect()).collect();
    let handles: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.embed(request).await })
        })
        .collect();
    for (request, handle) in requests.iter().zip(handles) {
        let vectors = handle.await.unwrap().unwrap();
        let borrowed: Vec<&str> = request.iter().map(String::as_str).collect();
        assert_matches(&borrowed, &vectors, &references, "through the queue");
    }
    assert!(queue.embed(Vec::new()).await.unwrap().is_empty());
}

/// `device = "cuda"` either embeds like the CPU (a runtime with a usable CUDA provider: a GPU host)
/// or fails at load with what to do — never anything in between. Which one is expected follows
/// from the loaded runtime, so the test holds on CPU-only and GPU hosts alike.
#[test]
fn cuda_device_embeds_where_the_runtime_has_cuda_and_fails_at_load_with_what_to_do_elsewhere() {
    let _initialises_the_runtime = load(8192, 128);
    let runtime_has_cuda = {
        use ort::ep::ExecutionProvider;
        ort::ep::CUDA::is_available().unwrap_or(false)
    };
    let settings = EmbeddingSettings { model_dir: support::model_dir(), device: vecdrop::settings::Device::Cuda, ..Default::default() };
    match Embedder::load(&settings, &support::root()) {
        Ok(embedder) => {
            assert!(runtime_has_cuda, "a CUDA session loaded although the runtime reports no CUDA provider");
            let references = references();
            let texts: Vec<&str> = references.iter().map(|(text, _)| text.as_str()).collect();
            let vectors = embedder.embed_blocking(&texts).unwrap();
            assert_matches(&texts, &vectors, &references, "cuda");
        }
        Err(error) => {
            let error = error.to_string();
            assert!(error.contains("embedding.device = \"cuda\"") && error.contains("onnxruntime-gpu"), "{error}");
        }
    }
}

/// Unconfigured batch limits are measured on this host (a ladder of shapes on synthetic texts),
/// kept in the state directory and reused by the next load; configured limits always win. The
/// test checks what was measured and kept, not how fast: any host passes.
#[test]
fn batch_shapes_are_calibrated_once_per_host_and_model_and_configured_values_win() {
    use vecdrop::embed::calibrate::{batch_lengths, ladder, ShapeCache, ShapeSource, CALIBRATION_TOKENS, EQUALLY_FAST, RUNS_PER_RUNG};
    use vecdrop::embed::ShapePolicy;
    let state = tempfile::tempdir().unwrap();
    let policy = ShapePolicy::Calibrate(Some(ShapeCache::in_state_dir(state.path())));
    let load_with = |batch_tokens: usize, max_batch_texts: usize| {
        let settings = EmbeddingSettings { model_dir: support::model_dir(), batch_tokens, max_batch_texts, ..Default::default() };
        Embedder::load_with(&settings, &support::root(), &policy).unwrap_or_else(|error| panic!("{error}"))
    };

    let calibrated = load_with(0, 0);
    let choice = calibrated.shape_choice().clone();
    assert_eq!(choice.source, ShapeSource::Calibrated);
    let calibration = choice.calibration.clone().expect("a calibrated shape carries its measurement");
    assert!(calibration.points.len() >= 3, "{calibration:?}");
    let rungs = ladder(vecdrop::settings::Device::Cpu);
    assert!(calibration.points.iter().all(|point| rungs.contains(&(point.texts * CALIBRATION_TOKENS))), "{calibration:?}");
    // The largest rung within 1 % of the fastest.
    let fastest = calibration.points.iter().map(|point| point.tokens_per_second).fold(0.0, f64::max);
    let chosen = calibration
        .points
        .iter()
        .filter(|point| point.tokens_per_second >= EQUALLY_FAST * fastest)
        .max_by_key(|point| point.tokens)
        .unwrap();
    assert_eq!(choice.shape.max_batch_texts, chosen.texts);
    assert_eq!(choice.shape.batch_tokens, chosen.tokens.max(256));
    assert_eq!(calibrated.batch_budget(), (choice.shape.batch_tokens, choice.shape.max_batch_texts));
    let calibration_texts: u64 = calibration.points.iter().map(|point| point.texts as u64).sum();
    assert_eq!(calibrated.texts_embedded(), 1 + RUNS_PER_RUNG as u64 * calibration_texts, "the probe and the calibration's runs");
    // Each rung pads to its longest sequence, and counts its padded tokens as its budget.
    assert!(calibration.points.iter().all(|point| point.tokens == point.texts * batch_lengths(point.texts)[0]));
    assert!(state.path().join("embedding-shapes.json").is_file());
    assert!(choice.describe().contains("calibrated"), "{}", choice.describe());

    // Vectors in the calibrated shape still match sentence-transformers.
    let references = references();
    let texts: Vec<&str> = references.iter().map(|(text, _)| text.as_str()).collect();
    assert_matches(&texts, &calibrated.embed_blocking(&texts).unwrap(), &references, "calibrated shape");

    let cached = load_with(0, 0);
    assert_eq!(cached.shape_choice().source, ShapeSource::Cached);
    assert_eq!(cached.shape_choice().shape, choice.shape);
    assert_eq!(cached.texts_embedded(), 1, "a kept measurement is not repeated");

    let configured = load_with(4096, 7);
    assert_eq!(configured.shape_choice().source, ShapeSource::Configured);
    assert_eq!(configured.batch_budget(), (4096, 7));
    assert_eq!(configured.texts_embedded(), 1);

    let half = load_with(0, 7);
    assert_eq!(half.shape_choice().source, ShapeSource::Cached);
    assert_eq!(half.batch_budget(), (choice.shape.batch_tokens, 7), "the configured half wins, the other is measured");
}
