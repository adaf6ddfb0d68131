//! **embed**: texts → L2-normalised sentence vectors with a tokenizer and an ONNX Runtime session.
//!
//! Matches sentence-transformers for BERT-style models: truncation to `max_tokens` word pieces,
//! padding to the longest text of each batch, mean pooling over the attention mask, L2
//! normalisation. Batches are planned by [`plan_batches`] (a pure function): texts are sorted by
//! length inside the window they arrive in and cut so that `batch × longest ≤ batch_tokens`; outputs
//! come back in input order. Inference is CPU-bound and runs on blocking threads
//! ([`Embedder::embed`]); the session is behind a mutex because ONNX Runtime runs are `&mut`.
//!
//! The model directory has the Hugging Face layout: `model.onnx` (or `model.int8.onnx` for
//! `precision = "int8"`) and `tokenizer.json`. The model's output is either `last_hidden_state`
//! (rank 3, pooled here) or an already pooled `sentence_embedding` (rank 2).
//!
//! Imports reach the model through one [`EmbedQueue`]: texts of every file in flight are merged
//! into the model's batches, so ten-row files run it as efficiently as one big file.
//!
//! The batch budget is measured on the host ([`calibrate`]) unless configured. Per run, nothing is
//! allocated for the inputs: ids, mask and type ids live in buffers reused from run to run and are
//! lent to ONNX Runtime as views; pooling reads the output tensor in place.

pub mod calibrate;
mod queue;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ort::session::{builder::GraphOptimizationLevel, Session, SessionInputValue};
use ort::value::{TensorRef, ValueType};
use tokenizers::{Encoding, PaddingParams, Tokenizer, TruncationParams};

use self::calibrate::{BatchShape, Calibration, CalibrationKey, ShapeCache, ShapeChoice, ShapeSource};
pub use self::queue::EmbedQueue;
use crate::settings::{Device, EmbeddingSettings, Precision};

/// Why the embedder could not be loaded or could not embed. `Clone`: one failed model batch fails
/// every request it served ([`EmbedQueue`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// The ONNX Runtime shared library was not found.
    #[error("ONNX Runtime library not found ({looked}); run `make setup` (installs the PyPI `onnxruntime` wheel into .venv), or set embedding.ort_library or ORT_DYLIB_PATH to libonnxruntime.so")]
    RuntimeMissing {
        /// Where it was looked for.
        looked: String,
    },
    /// The ONNX Runtime library exists but could not be loaded or initialised.
    #[error("ONNX Runtime at {path}: {message}")]
    Runtime {
        /// The library.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A model file is missing or unusable.
    #[error("model {path}: {message}")]
    Model {
        path: PathBuf,
        /// What went wrong; says how to get the model when it is missing.
        message: String,
    },
    /// `device = "cuda"` but the loaded ONNX Runtime cannot use CUDA.
    #[error("embedding.device = \"cuda\": {message}; install the `onnxruntime-gpu` wheel and a CUDA driver, or set device = \"cpu\"")]
    CudaUnavailable {
        /// What ONNX Runtime said.
        message: String,
    },
    /// Tokenising failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Inference failed.
    #[error("inference: {0}")]
    Inference(String),
}

impl crate::fault::Classify for EmbedError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            EmbedError::RuntimeMissing { .. }
            | EmbedError::Runtime { .. }
            | EmbedError::Model { .. }
            | EmbedError::CudaUnavailable { .. } => Fault::Config,
            // Tokenising works on any UTF-8 text; a failure there is ours.
            EmbedError::Tokenizer(_) => Fault::Bug,
            // A failed run is most often memory (a GPU or host under pressure): it passes.
            EmbedError::Inference(_) => Fault::Transient,
        }
    }
}

/// A loaded model. Cheap to clone; shared by all pipelines.
#[derive(Clone)]
pub struct Embedder {
    inner: Arc<Inner>,
}

struct Inner {
    tokenizer: Tokenizer,
    model: Mutex<Model>,
    /// Whether the model has a `token_type_ids` input (BERT does, some exports drop it).
    wants_token_type_ids: bool,
    /// Whether the output is already pooled (rank 2).
    output_is_pooled: bool,
    output_name: String,
    dimension: usize,
    shape: ShapeChoice,
    identity: String,
    /// Texts run through the model since loading (the probe and any calibration included): lets the bench and tests
    /// check that unchanged rows are not embedded again.
    texts_embedded: AtomicU64,
    /// Model runs and the nanoseconds they took (inference and pooling), since loading.
    runs: AtomicU64,
    run_nanos: AtomicU64,
}

/// How much the model has run since it was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelUsage {
    /// Texts embedded.
    pub texts: u64,
    /// Model runs (batches).
    pub runs: u64,
    /// Seconds inside runs.
    pub seconds: f64,
}

impl ModelUsage {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &ModelUsage) -> ModelUsage {
        ModelUsage { texts: self.texts - earlier.texts, runs: self.runs - earlier.runs, seconds: self.seconds - earlier.seconds }
    }
}

/// The session and the input buffers its runs borrow (one run at a time: ONNX Runtime runs are
/// `&mut`).
struct Model {
    session: Session,
    inputs: InputBuffers,
}

/// Row-major `batch × sequence` inputs of one run, kept between runs so that a run allocates
/// nothing once the buffers have grown to the largest batch.
#[derive(Default)]
struct InputBuffers {
    ids: Vec<i64>,
    mask: Vec<i64>,
    /// All zeros (single-segment texts); only ever grows.
    type_ids: Vec<i64>,
}

impl InputBuffers {
    /// Lays `rows` (token ids, each at most `sequence` long) out padded to `sequence`.
    fn fill(&mut self, rows: &[&[u32]], sequence: usize) {
        let cells = rows.len() * sequence;
        self.ids.clear();
        self.ids.resize(cells, 0);
        self.mask.clear();
        self.mask.resize(cells, 0);
        if self.type_ids.len() < cells {
            self.type_ids.resize(cells, 0);
        }
        for (row, ids) in rows.iter().enumerate() {
            let start = row * sequence;
            for (cell, &id) in self.ids[start..start + ids.len()].iter_mut().zip(ids.iter()) {
                *cell = i64::from(id);
            }
            self.mask[start..start + ids.len()].fill(1);
        }
    }
}

/// How [`Embedder::load`] picks the batch budget when `batch_tokens` or `max_batch_texts` is 0.
#[derive(Debug, Clone)]
pub enum ShapePolicy {
    /// The device's fixed default ([`EmbeddingSettings::batch_budget`]); no measurement.
    DeviceDefault,
    /// Measure on this host ([`calibrate`]), reusing a measurement kept in the cache.
    Calibrate(Option<ShapeCache>),
}
impl Embedder {
    /// Loads ONNX Runtime (once per process), the tokenizer and the model described by `settings`
    /// (whose paths the config made absolute); the search for a `.venv` holding ONNX Runtime starts
    /// in `base_dir`. Runs one probe text to learn the vector dimension. Unconfigured batch limits
    /// take the device's default (see [`Embedder::load_with`] to measure them).
    pub fn load(settings: &EmbeddingSettings, base_dir: &Path) -> Result<Self, EmbedError> {
        Self::load_with(settings, base_dir, &ShapePolicy::DeviceDefault)
    }

    /// [`Embedder::load`], then the batch budget: configured values win; what is unconfigured
    /// (0) comes from `policy` — the device default, or a calibration on this host (well under a
    /// second of model time; kept in the cache and reused while host, threads, runtime and model
    /// are the same).
    pub fn load_with(settings: &EmbeddingSettings, base_dir: &Path, policy: &ShapePolicy) -> Result<Self, EmbedError> {
        let model_dir = settings.model_dir.clone();
        let library = locate_runtime(settings.ort_library.clone(), base_dir)?;
        let environment = init_runtime(&library)?;
        let tokenizer = load_tokenizer(&model_dir, settings.max_tokens)?;
        let model_file = model_dir.join(match settings.precision {
            Precision::Fp32 => "model.onnx",
            Precision::Int8 => "model.int8.onnx",
        });
        let session = build_session(environment, &model_file, settings)?;
        let wants_token_type_ids = session.inputs().iter().any(|input| input.name() == "token_type_ids");
        let output = session
            .outputs()
            .iter()
            .find(|output| matches!(output.name(), "sentence_embedding" | "last_hidden_state"))
            .or_else(|| session.outputs().first())
            .ok_or_else(|| EmbedError::Model { path: model_file.clone(), message: "the model has no outputs".to_owned() })?;
        let output_is_pooled = matches!(output.dtype(), ValueType::Tensor { shape, .. } if shape.len() == 2);
        let output_name = output.name().to_owned();
        let identity = model_identity(&model_dir, settings.precision, settings.max_tokens);
        let (batch_tokens, max_batch_texts) = settings.batch_budget();
        let mut embedder = Self {
            inner: Arc::new(Inner {
                tokenizer,
                model: Mutex::new(Model { session, inputs: InputBuffers::default() }),
                wants_token_type_ids,
                output_is_pooled,
                output_name,
                dimension: 0,
                shape: ShapeChoice {
                    shape: BatchShape { batch_tokens, max_batch_texts },
                    source: ShapeSource::DeviceDefault,
                    calibration: None,
                },
                identity,
                texts_embedded: AtomicU64::new(0),
                runs: AtomicU64::new(0),
                run_nanos: AtomicU64::new(0),
            }),
        };
        let probe = embedder.embed_blocking(&["dimension probe"])?;
        Arc::get_mut(&mut embedder.inner).expect("not shared yet").dimension = probe[0].len();
        let shape = embedder.choose_shape(settings, &library, policy)?;
        Arc::get_mut(&mut embedder.inner).expect("not shared yet").shape = shape;
        Ok(embedder)
    }

    /// The batch budget for `settings` under `policy` (see [`Embedder::load_with`]).
    fn choose_shape(&self, settings: &EmbeddingSettings, library: &Path, policy: &ShapePolicy) -> Result<ShapeChoice, EmbedError> {
        let default = self.inner.shape.shape;
        let configured = |measured: BatchShape| BatchShape {
            batch_tokens: if settings.batch_tokens == 0 { measured.batch_tokens } else { default.batch_tokens },
            max_batch_texts: if settings.max_batch_texts == 0 { measured.max_batch_texts } else { default.max_batch_texts },
        };
        if settings.batch_tokens != 0 && settings.max_batch_texts != 0 {
            return Ok(ShapeChoice { shape: default, source: ShapeSource::Configured, calibration: None });
        }
        let ShapePolicy::Calibrate(cache) = policy else {
            return Ok(ShapeChoice { shape: default, source: ShapeSource::DeviceDefault, calibration: None });
        };
        let key = CalibrationKey::for_this_host(session_threads(settings), settings.device, library, &self.inner.identity);
        if let Some(calibration) = cache.as_ref().and_then(|cache| cache.get(&key)) {
            return Ok(ShapeChoice { shape: configured(calibration.shape), source: ShapeSource::Cached, calibration: Some(calibration) });
        }
        let calibration = self.calibrate(key, settings)?;
        if let Some(cache) = cache {
            if let Err(error) = cache.put(&calibration) {
                tracing::warn!(path = %cache.path().display(), %error, "cannot keep the batch calibration; it runs again at the next start");
            }
        }
        Ok(ShapeChoice { shape: configured(calibration.shape), source: ShapeSource::Calibrated, calibration: Some(calibration) })
    }

    /// Measures the ladder of [`calibrate::ladder`] on synthetic sequences (see [`calibrate`]).
    fn calibrate(&self, key: CalibrationKey, settings: &EmbeddingSettings) -> Result<Calibration, EmbedError> {
        let sequence = synthetic_sequence(&self.inner.tokenizer)?;
        let (points, model_seconds) = calibrate::measure(&calibrate::ladder(settings.device), calibrate::CALIBRATION_BUDGET, |lengths| {
            let rows: Vec<&[u32]> = lengths.iter().map(|&length| &sequence[..length.min(sequence.len())]).collect();
            let started = std::time::Instant::now();
            self.run(&rows)?;
            Ok(started.elapsed())
        })?;
        let shape = calibrate::choose(&points, settings.max_tokens).unwrap_or(self.inner.shape.shape);
        Ok(Calibration { key, points, shape, model_seconds, measured_at: crate::timestamp::now_rfc3339() })
    }

    /// The batch budget in force and where it came from.
    pub fn shape_choice(&self) -> &ShapeChoice {
        &self.inner.shape
    }

    /// Length of every vector this model returns.
    pub fn dimension(&self) -> usize {
        self.inner.dimension
    }

    /// `<model dir name>:<precision>:<max_tokens>`: recorded with a collection so that vectors of
    /// different models are never mixed.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// Embeds `texts` on a blocking thread; vectors come back in input order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let embedder = self.clone();
        tokio::task::spawn_blocking(move || {
            let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.embed_blocking(&borrowed)
        })
        .await
        .map_err(|join_error| EmbedError::Inference(format!("embedding task failed: {join_error}")))?
    }

    /// Embeds `texts` on the calling thread (CPU-bound: never call from async code).
    pub fn embed_blocking(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self.encode(texts)?;
        self.embed_encoded(&encodings)
    }

    /// Tokenises `texts` (truncated to `max_tokens`, unpadded), in input order. The first half of
    /// [`Embedder::embed_blocking`]; the bench times it apart from inference.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoding>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.tokenizer.encode_batch(texts.to_vec(), true).map_err(|error| EmbedError::Tokenizer(error.to_string()))
    }

    /// Runs the model on tokenised texts, batched by [`plan_batches`]; vectors come back in input
    /// order. The second half of [`Embedder::embed_blocking`] (CPU-bound).
    pub fn embed_encoded(&self, encodings: &[Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let lengths: Vec<usize> = encodings.iter().map(|encoding| encoding.get_ids().len().max(1)).collect();
        let mut vectors = vec![Vec::new(); encodings.len()];
        let BatchShape { batch_tokens, max_batch_texts } = self.inner.shape.shape;
        for batch in plan_batches(&lengths, batch_tokens, max_batch_texts) {
            let rows: Vec<&[u32]> = batch.iter().map(|&index| encodings[index].get_ids()).collect();
            let batch_vectors = self.run(&rows)?;
            for (index, vector) in batch.into_iter().zip(batch_vectors) {
                vectors[index] = vector;
            }
        }
        Ok(vectors)
    }

    /// `(batch_tokens, max_batch_texts)` in force ([`Embedder::shape_choice`]).
    pub fn batch_budget(&self) -> (usize, usize) {
        (self.inner.shape.shape.batch_tokens, self.inner.shape.shape.max_batch_texts)
    }

    /// Runs exactly these texts as one model run (padded to the longest), no batching of its own:
    /// the bench's fixed-batch reference. Vectors in input order.
    pub fn embed_one_batch(&self, encodings: &[&Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows: Vec<&[u32]> = encodings.iter().map(|encoding| encoding.get_ids()).collect();
        self.run(&rows)
    }

    /// How many texts this model (all clones of this `Embedder`) has embedded since it was loaded,
    /// the load's one-text probe and calibration included.
    pub fn texts_embedded(&self) -> u64 {
        self.usage().texts
    }

    /// Texts, runs and model seconds since loading (all clones of this `Embedder`).
    pub fn usage(&self) -> ModelUsage {
        ModelUsage {
            texts: self.inner.texts_embedded.load(Ordering::Relaxed),
            runs: self.inner.runs.load(Ordering::Relaxed),
            seconds: self.inner.run_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// One inference call on token ids (one row per text, unpadded), padded to the longest.
    fn run(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = std::time::Instant::now();
        let outcome = self.run_untimed(rows);
        self.inner.texts_embedded.fetch_add(rows.len() as u64, Ordering::Relaxed);
        self.inner.runs.fetch_add(1, Ordering::Relaxed);
        self.inner.run_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        outcome
    }

    fn run_untimed(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let pace = crate::failpoint::model_pace();
        if pace == crate::failpoint::ModelPace::Instant && self.inner.dimension > 0 {
            return Ok(rows.iter().map(|ids| paced_vector(ids, self.inner.dimension)).collect());
        }
        let inference = |error: ort::Error| EmbedError::Inference(error.to_string());
        let batch = rows.len();
        let sequence = rows.iter().map(|ids| ids.len()).max().unwrap_or(1).max(1);
        let cells = batch * sequence;
        let mut model = self.inner.model.lock().map_err(|_| EmbedError::Inference("session lock poisoned".to_owned()))?;
        let Model { session, inputs: buffers } = &mut *model;
        buffers.fill(rows, sequence);
        let shape = [batch, sequence];
        let mut inputs = vec![("input_ids", view(shape, &buffers.ids[..cells])?), ("attention_mask", view(shape, &buffers.mask[..cells])?)];
        if self.inner.wants_token_type_ids {
            inputs.push(("token_type_ids", view(shape, &buffers.type_ids[..cells])?));
        }
        let outputs = session.run(inputs).map_err(inference)?;
        if let crate::failpoint::ModelPace::Slowed(delay) = pace {
            std::thread::sleep(delay);
        }
        let (output_shape, values) = outputs[self.inner.output_name.as_str()].try_extract_tensor::<f32>().map_err(inference)?;
        let vectors = if self.inner.output_is_pooled {
            let hidden = output_shape[1] as usize;
            values.chunks(hidden).map(|row| l2_normalised(row.to_vec())).collect()
        } else {
            let hidden = output_shape[2] as usize;
            rows.iter()
                .enumerate()
                .map(|(row, ids)| l2_normalised(mean_pool_row(&values[row * sequence * hidden..], ids.len().max(1), hidden)))
                .collect()
        };
        Ok(vectors)
    }
}

/// `data` lent to ONNX Runtime as a `shape` tensor (no copy).
fn view(shape: [usize; 2], data: &[i64]) -> Result<SessionInputValue<'_>, EmbedError> {
    TensorRef::from_array_view((shape, data)).map(SessionInputValue::from).map_err(|error| EmbedError::Inference(error.to_string()))
}

/// A deterministic unit vector for token `ids`, in place of the model's when the test pace is
/// [`crate::failpoint::ModelPace::Instant`]: equal texts get equal vectors.
fn paced_vector(ids: &[u32], dimension: usize) -> Vec<f32> {
    let mut vector = vec![0f32; dimension];
    for (position, &id) in ids.iter().enumerate() {
        vector[(id as usize).wrapping_mul(31).wrapping_add(position) % dimension] += 1.0;
    }
    l2_normalised(vector)
}

/// `<model dir name>:<precision>:<max_tokens>`, e.g. `all-MiniLM-L6-v2:int8:256`: two settings
/// that give different vectors give different identities.
pub fn model_identity(model_dir: &Path, precision: Precision, max_tokens: usize) -> String {
    let precision = match precision {
        Precision::Fp32 => "fp32",
        Precision::Int8 => "int8",
    };
    format!("{}:{precision}:{max_tokens}", model_dir.file_name().and_then(|name| name.to_str()).unwrap_or("model"))
}

/// Splits texts of the given token `lengths` into inference batches: indices sorted by length
/// (longest first), each batch at most `max_texts` long and with `len × longest ≤ budget` (a text
/// longer than the budget still gets a batch of its own). Every index appears exactly once.
pub fn plan_batches(lengths: &[usize], budget: usize, max_texts: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&left, &right| lengths[right].cmp(&lengths[left]).then(left.cmp(&right)));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for index in order {
        let longest = current.first().map_or(lengths[index], |&first| lengths[first]);
        if !current.is_empty() && ((current.len() + 1) * longest > budget || current.len() == max_texts) {
            batches.push(std::mem::take(&mut current));
        }
        current.push(index);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Mean of the first `tokens` token vectors of one sequence (its real tokens; padding follows
/// them), `hidden_states` starting at the sequence's first token.
fn mean_pool_row(hidden_states: &[f32], tokens: usize, hidden: usize) -> Vec<f32> {
    let mut sum = vec![0f32; hidden];
    for token in hidden_states[..tokens * hidden].chunks_exact(hidden) {
        for (total, value) in sum.iter_mut().zip(token) {
            *total += value;
        }
    }
    let divisor = tokens as f32;
    sum.iter_mut().for_each(|value| *value /= divisor);
    sum
}

/// A sequence of [`calibrate::LONGEST_SEQUENCE`] word pieces of ordinary English from the
/// model's own tokenizer (ids differ between vocabularies; the cost does not depend on them).
fn synthetic_sequence(tokenizer: &Tokenizer) -> Result<Vec<u32>, EmbedError> {
    let text = "the quick brown fox jumps over the lazy dog while a patient reader measures how fast a small model turns sentences into vectors on this machine today";
    let encoding = tokenizer.encode(text, true).map_err(|error| EmbedError::Tokenizer(error.to_string()))?;
    let mut ids = encoding.get_ids().to_vec();
    let filler = ids.get(1).copied().unwrap_or(0);
    ids.resize(calibrate::LONGEST_SEQUENCE, filler);
    Ok(ids)
}

/// ONNX Runtime intra-op threads for `settings` (0 = one per core).
fn session_threads(settings: &EmbeddingSettings) -> usize {
    if settings.threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        settings.threads
    }
}

fn l2_normalised(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt().max(1e-12);
    vector.iter_mut().for_each(|value| *value /= norm);
    vector
}

/// The ONNX Runtime library: `configured`, else `$ORT_DYLIB_PATH`, else the PyPI wheel in the
/// project's `.venv` (see [`crate::settings::venv_roots`]).
pub fn locate_runtime(configured: Option<PathBuf>, base_dir: &Path) -> Result<PathBuf, EmbedError> {
    let mut looked = Vec::new();
    let explicit = configured.or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path);
        }
        return Err(EmbedError::RuntimeMissing { looked: format!("{} does not exist", path.display()) });
    }
    for root in crate::settings::venv_roots(base_dir) {
        let site_packages = root.join(".venv/lib");
        looked.push(site_packages.display().to_string());
        let Ok(pythons) = std::fs::read_dir(&site_packages) else { continue };
        for python in pythons.flatten() {
            let capi = python.path().join("site-packages/onnxruntime/capi");
            let Ok(files) = std::fs::read_dir(&capi) else { continue };
            let mut candidates: Vec<PathBuf> = files
                .flatten()
                .map(|file| file.path())
                .filter(|path| path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with("libonnxruntime.so")))
                .collect();
            candidates.sort();
            if let Some(found) = candidates.into_iter().next() {
                return Ok(found);
            }
        }
    }
    Err(EmbedError::RuntimeMissing {
        looked: format!("embedding.ort_library and ORT_DYLIB_PATH unset; no wheel under {}", looked.join(", ")),
    })
}

/// Loads the library and creates the process-wide environment (ONNX Runtime allows one per
/// process); later calls return the same environment, and refuse a different library path.
fn init_runtime(library: &Path) -> Result<&'static ort::environment::Environment, EmbedError> {
    static RUNTIME: std::sync::OnceLock<(PathBuf, Result<ort::environment::Environment, String>)> = std::sync::OnceLock::new();
    let runtime_error = |message: String| EmbedError::Runtime { path: library.to_owned(), message };
    let (loaded_path, environment) = RUNTIME.get_or_init(|| {
        let environment = ort::init_from(library)
            .map_err(|error| error.to_string())
            .and_then(|builder| builder.with_name("vecdrop").build().map_err(|error| error.to_string()));
        (library.to_owned(), environment)
    });
    if loaded_path != library {
        return Err(runtime_error(format!("another ONNX Runtime ({}) is already loaded in this process", loaded_path.display())));
    }
    environment.as_ref().map_err(|message| runtime_error(message.clone()))
}

fn load_tokenizer(model_dir: &Path, max_tokens: usize) -> Result<Tokenizer, EmbedError> {
    let path = model_dir.join("tokenizer.json");
    let model_error = |message: String| EmbedError::Model { path: path.clone(), message };
    if !path.is_file() {
        return Err(model_error("missing; run `make setup` (scripts/export_minilm_onnx.py converts all-MiniLM-L6-v2), or point embedding.model_dir at an HF-layout ONNX model".to_owned()));
    }
    let mut tokenizer = Tokenizer::from_file(&path).map_err(|error| model_error(error.to_string()))?;
    // The shipped tokenizer.json truncates at 128 and pads to a fixed length; sentence-transformers
    // truncates at max_seq_length and pads per batch, and so do we.
    tokenizer
        .with_truncation(Some(TruncationParams { max_length: max_tokens, ..TruncationParams::default() }))
        .map_err(|error| model_error(error.to_string()))?;
    tokenizer.with_padding(None::<PaddingParams>);
    Ok(tokenizer)
}

fn build_session(
    environment: &ort::environment::Environment,
    model_file: &Path,
    settings: &EmbeddingSettings,
) -> Result<Session, EmbedError> {
    let model_error = |message: String| EmbedError::Model { path: model_file.to_owned(), message };
    if !model_file.is_file() {
        let hint = match settings.precision {
            Precision::Fp32 => "run `make setup` to convert all-MiniLM-L6-v2",
            Precision::Int8 => "run `make setup` (it also writes the quantised model.int8.onnx), or set precision = \"fp32\"",
        };
        return Err(model_error(format!("missing; {hint}")));
    }
    let threads = session_threads(settings);
    let mut builder = Session::builder(environment)
        .map_err(|error| model_error(error.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|error| model_error(error.to_string()))?
        .with_intra_threads(threads)
        .map_err(|error| model_error(error.to_string()))?
        .with_intra_op_spinning(settings.intra_op_spinning)
        .map_err(|error| model_error(error.to_string()))?;
    if settings.device == Device::Cuda {
        use ort::ep::ExecutionProvider;
        let available = ort::ep::CUDA::is_available().map_err(|error| EmbedError::CudaUnavailable { message: error.to_string() })?;
        if !available {
            return Err(EmbedError::CudaUnavailable { message: "this ONNX Runtime build has no CUDA execution provider".to_owned() });
        }
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|error| EmbedError::CudaUnavailable { message: error.to_string() })?;
    }
    builder.commit_from_file(model_file).map_err(|error| model_error(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_budget_and_cover_every_text_once() {
        let lengths = [5, 100, 7, 30, 30, 2, 250, 9, 1, 64];
        for budget in [256, 300, 512, 1000, 4096] {
            for max_texts in [1, 2, 3, 8, 100] {
                let batches = plan_batches(&lengths, budget, max_texts);
                let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
                seen.sort();
                assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
                for batch in &batches {
                    let longest = batch.iter().map(|&index| lengths[index]).max().unwrap();
                    assert!(batch.len() <= max_texts);
                    assert!(batch.len() == 1 || batch.len() * longest <= budget, "{batch:?} over {budget}");
                }
            }
        }
    }

    #[test]
    fn batches_group_similar_lengths() {
        let batches = plan_batches(&[3, 50, 4, 51], 110, 10);
        assert_eq!(batches, vec![vec![3, 1], vec![2, 0]]);
    }

    #[test]
    fn pooling_ignores_padding() {
        // Two sequences of length 2, hidden 2; the second has one padded token with huge values.
        let hidden = [1.0, 3.0, 3.0, 5.0, 2.0, 2.0, 100.0, 100.0];
        assert_eq!(mean_pool_row(&hidden, 2, 2), vec![2.0, 4.0]);
        assert_eq!(mean_pool_row(&hidden[4..], 1, 2), vec![2.0, 2.0]);
        let normalised = l2_normalised(vec![3.0, 4.0]);
        assert_eq!(normalised, vec![0.6, 0.8]);
    }

    #[test]
    fn input_buffers_pad_rows_and_are_reused() {
        let mut buffers = InputBuffers::default();
        buffers.fill(&[&[7, 8, 9], &[5]], 3);
        assert_eq!(buffers.ids, vec![7, 8, 9, 5, 0, 0]);
        assert_eq!(buffers.mask, vec![1, 1, 1, 1, 0, 0]);
        assert!(buffers.type_ids.iter().all(|&id| id == 0) && buffers.type_ids.len() >= 6);
        let capacity = buffers.ids.capacity();
        buffers.fill(&[&[4], &[3, 2]], 2);
        assert_eq!((buffers.ids.as_slice(), buffers.mask.as_slice()), (&[4, 0, 3, 2][..], &[1, 0, 1, 1][..]));
        assert_eq!(buffers.ids.capacity(), capacity, "a smaller batch reuses the buffer");
    }

    #[test]
    fn precision_and_truncation_are_part_of_the_model_identity() {
        let dir = Path::new("/models/all-MiniLM-L6-v2");
        assert_eq!(model_identity(dir, Precision::Fp32, 256), "all-MiniLM-L6-v2:fp32:256");
        assert_eq!(model_identity(dir, Precision::Int8, 256), "all-MiniLM-L6-v2:int8:256");
        assert_ne!(model_identity(dir, Precision::Fp32, 128), model_identity(dir, Precision::Fp32, 256));
    }

    #[test]
    fn missing_runtime_says_how_to_get_it() {
        let error = locate_runtime(Some(PathBuf::from("/nonexistent/libonnxruntime.so")), Path::new("/nonexistent")).unwrap_err();
        assert!(error.to_string().contains("make setup"), "{error}");
    }
}
