//! One queue in front of the one model: requests from every file in flight share its batches.
//!
//! A file's embed stage tokenises its batch on a blocking thread of its own, then queues the
//! encodings. The model's thread takes the oldest request and, without waiting, every request
//! already queued behind it (up to [`GATHER_BATCHES`] model batches of texts), runs them through
//! [`Embedder::embed_encoded`] as one window — which sorts by length and cuts by the token budget —
//! and hands each request its own vectors, in its own order. Nothing waits for company: one big
//! file's batches go straight through; many small files fill each other's batches because they
//! queue while the model runs.

use std::sync::{mpsc, Arc, OnceLock};
use std::time::Instant;

use tokenizers::Encoding;
use tokio::sync::oneshot;

use super::{EmbedError, Embedder};

/// At most this many model batches (of `max_batch_texts` each) are gathered into one window.
const GATHER_BATCHES: usize = 4;

/// Vectors for one request, in its order.
type Answer = Result<Vec<Vec<f32>>, EmbedError>;

/// One request: a file's tokenised texts and where its vectors go.
struct Request {
    encodings: Vec<Encoding>,
    reply: oneshot::Sender<Answer>,
}

/// The queue in front of a model. Cheap to clone; the model's thread ends when the last clone is
/// dropped.
#[derive(Clone)]
pub struct EmbedQueue {
    embedder: Embedder,
    requests: mpsc::Sender<Request>,
    /// When the model's thread took its first request (start-up is counted up to it).
    first_batch: Arc<OnceLock<Instant>>,
}

impl EmbedQueue {
    /// Starts the model's thread for `embedder`.
    pub fn start(embedder: Embedder) -> Self {
        let (requests, receiver) = mpsc::channel();
        let model = embedder.clone();
        let first_batch = Arc::new(OnceLock::new());
        let first = Arc::clone(&first_batch);
        std::thread::Builder::new()
            .name("vecdrop-embed".to_owned())
            .spawn(move || serve(&model, &receiver, &first))
            .expect("the embedding thread can be started");
        Self { embedder, requests, first_batch }
    }

    /// When the model's thread began its first batch of queued texts, if it has.
    pub fn first_batch_at(&self) -> Option<Instant> {
        self.first_batch.get().copied()
    }

    /// Embeds `texts`: tokenised here (on a blocking thread), run by the model's thread together
    /// with whatever else is queued. Vectors come back in input order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let embedder = self.embedder.clone();
        let encodings = tokio::task::spawn_blocking(move || {
            let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.encode(&borrowed)
        })
        .await
        .map_err(|error| EmbedError::Inference(format!("tokenising task failed: {error}")))??;
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request { encodings, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> EmbedError {
    EmbedError::Inference("the embedding thread stopped".to_owned())
}

/// The model's thread: serves windows of queued requests until every sender is gone.
fn serve(embedder: &Embedder, requests: &mpsc::Receiver<Request>, first_batch: &OnceLock<Instant>) {
    let (_, max_batch_texts) = embedder.batch_budget();
    while let Ok(first) = requests.recv() {
        first_batch.get_or_init(Instant::now);
        let window = gather(first, requests, GATHER_BATCHES * max_batch_texts);
        answer(embedder, window);
    }
}

/// `first` and the requests queued behind it, until `limit` texts (the first alone may exceed it).
fn gather(first: Request, requests: &mpsc::Receiver<Request>, limit: usize) -> Vec<Request> {
    let mut texts = first.encodings.len();
    let mut window = vec![first];
    while texts < limit {
        match requests.try_recv() {
            Ok(request) => {
                texts += request.encodings.len();
                window.push(request);
            }
            Err(_) => break,
        }
    }
    window
}

/// Runs the window's texts through the model and sends each request its share.
fn answer(embedder: &Embedder, window: Vec<Request>) {
    let sizes: Vec<usize> = window.iter().map(|request| request.encodings.len()).collect();
    let mut replies = Vec::with_capacity(window.len());
    let mut encodings = Vec::with_capacity(sizes.iter().sum());
    for request in window {
        encodings.extend(request.encodings);
        replies.push(request.reply);
    }
    match embedder.embed_encoded(&encodings) {
        Ok(vectors) => {
            let mut vectors = vectors.into_iter();
            for (reply, size) in replies.into_iter().zip(sizes) {
                // A requester that gave up (its import stopped) is simply not answered.
                let _ = reply.send(Ok(vectors.by_ref().take(size).collect()));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
