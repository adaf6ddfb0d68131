//! The baseline for imports of rows that already carry vectors: what a bare script does with
//! milvus-sdk-rust — the columns of `batch_rows` rows built beforehand, `upsert`, repeat, `flush` — with no
//! reading, mapping, retries or ledger. The closing flush is the import's own
//! ([`MilvusSink::flush`], ~1.5 s shorter than the SDK's `flush` with its 1 s polls), so that both
//! sides of the vectors ratio pay the same barrier. Also the bench's housekeeping on its own collections
//! (wait for index builds to finish between phases, drop at the end), which `MilvusSink` does not
//! offer because imports never need it.

use std::time::{Duration, Instant};

use milvus::v2::prelude::{
    ClientV2, ConnectConfig, DescribeIndexRequest, DropCollectionRequest, FieldData, InsertRequest, TelemetryConfig, UpsertRequest,
};

use super::corpus::{vector_for, CorpusSpec, Document};
use super::BenchError;
use crate::mapping::{row_hash, ScalarValue};
use crate::settings::ROW_HASH_FIELD;
use crate::sink::{CollectionSpec, MilvusSink};

/// How long [`BareClient::wait_for_index`] waits for Milvus to index a phase's rows.
const INDEX_WAIT: Duration = Duration::from_secs(300);

/// Seconds of a bare upsert loop: the upserts, and the closing flush.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopTimes {
    /// Rows Milvus acknowledged.
    pub rows: u64,
    /// Upserts plus flush.
    pub total_seconds: f64,
    /// The flush alone.
    pub flush_seconds: f64,
}

/// A plain SDK client.
pub struct BareClient {
    client: ClientV2,
}

impl BareClient {
    /// Connects to the Milvus server at `uri`.
    pub async fn connect(uri: &str, token: &str) -> Result<Self, BenchError> {
        let mut config = ConnectConfig::new()
            .uri(uri.to_owned())
            .connect_timeout(Duration::from_secs(30))
            .rpc_timeout(Duration::from_secs(120))
            .telemetry(TelemetryConfig::new().enabled(false));
        if !token.is_empty() {
            config = config.token(token.to_owned());
        }
        let client = ClientV2::new(&config).await.map_err(|error| BenchError::milvus("connect", uri, error))?;
        Ok(Self { client })
    }

    /// Upserts `documents` with their [`vector_for`] vectors into `spec`'s (existing, loaded)
    /// collection, `batch_rows` rows per request, then flushes: the rows and columns an import of
    /// the bench's Parquet file writes. The columns are built before the clock starts (the import
    /// it is compared with reads prepared vectors too), so only the requests and the flush are timed.
    pub async fn upsert_loop(
        &self,
        spec: &CollectionSpec,
        corpus: &CorpusSpec,
        documents: impl Iterator<Item = Document>,
        batch_rows: usize,
        flusher: &MilvusSink,
    ) -> Result<LoopTimes, BenchError> {
        let mut requests = Vec::new();
        let mut first_ordinal = 0;
        let mut documents = documents.peekable();
        while documents.peek().is_some() {
            let batch: Vec<Document> = documents.by_ref().take(batch_rows).collect();
            requests.push(columns(spec, corpus, &batch, first_ordinal));
            first_ordinal += batch.len();
        }
        let started = Instant::now();
        let mut rows = 0u64;
        for columns in requests {
            let insert = InsertRequest::builder()
                .collection_name(spec.collection.name.clone())
                .columns(columns)
                .build()
                .map_err(|error| BenchError::milvus("upsert", &spec.collection.name, error))?;
            let request = UpsertRequest::builder()
                .insert(insert)
                .build()
                .map_err(|error| BenchError::milvus("upsert", &spec.collection.name, error))?;
            let response = self.client.upsert(request).await.map_err(|error| BenchError::milvus("upsert", &spec.collection.name, error))?;
            rows += response.upsert_count() as u64;
        }
        let flush_started = Instant::now();
        flusher.flush(&spec.collection.name).await?;
        Ok(LoopTimes { rows, total_seconds: started.elapsed().as_secs_f64(), flush_seconds: flush_started.elapsed().as_secs_f64() })
    }

    /// Waits until Milvus has indexed every flushed row of `collection` (index builds run on the
    /// same cores and would otherwise slow the next phase down); returns the seconds waited.
    pub async fn wait_for_index(&self, collection: &str) -> Result<f64, BenchError> {
        let started = Instant::now();
        loop {
            let request = DescribeIndexRequest::builder()
                .collection_name(collection.to_owned())
                .build()
                .map_err(|error| BenchError::milvus("describe_index", collection, error))?;
            let response =
                self.client.describe_index(request).await.map_err(|error| BenchError::milvus("describe_index", collection, error))?;
            let pending: i64 = response.indexes().iter().map(|index| index.get_pending_rows()).sum();
            if pending == 0 {
                return Ok(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > INDEX_WAIT {
                tracing::warn!(collection, pending, "index still building; going on");
                return Ok(started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Drops `collection` (the bench's own).
    pub async fn drop_collection(&self, collection: &str) -> Result<(), BenchError> {
        let request = DropCollectionRequest::builder()
            .collection_name(collection.to_owned())
            .build()
            .map_err(|error| BenchError::milvus("drop_collection", collection, error))?;
        self.client.drop_collection(request).await.map_err(|error| BenchError::milvus("drop_collection", collection, error))
    }
}

/// The columns of `batch` (rows `first_ordinal..`), in the collection's field order: key, text,
/// row hash, category, vector.
fn columns(spec: &CollectionSpec, corpus: &CorpusSpec, batch: &[Document], first_ordinal: usize) -> Vec<FieldData> {
    let vectors: Vec<Vec<f32>> =
        (first_ordinal..first_ordinal + batch.len()).map(|ordinal| vector_for(corpus.seed, ordinal, corpus.dimension)).collect();
    let hashes = batch
        .iter()
        .zip(&vectors)
        .map(|(document, vector)| row_hash(&document.text, &[ScalarValue::Varchar(document.category.to_owned())], Some(vector)))
        .collect();
    vec![
        FieldData::varchar(spec.collection.primary_key.clone(), batch.iter().map(|document| document.id.clone()).collect()),
        FieldData::varchar(spec.collection.text_field.clone(), batch.iter().map(|document| document.text.clone()).collect()),
        FieldData::int64(ROW_HASH_FIELD, hashes),
        FieldData::varchar("category", batch.iter().map(|document| document.category.to_owned()).collect()),
        FieldData::float_vector(spec.collection.vector_field.clone(), vectors),
    ]
}
