//! The bench's own data: deterministic "seed-like" short documents (the generator of
//! `scripts/gen_seed_csv.py`: topic templates, so texts read like the example data) written as a
//! CSV to embed, the same CSV with every hundredth text changed (re-import), and a Parquet file
//! whose rows carry precomputed unit vectors (import without the model).
//!
//! Everything is a pure function of the [`CorpusSpec`]: two runs of the bench import the same
//! bytes, and [`vector_for`] gives the bare SDK loop exactly the vectors the Parquet file holds.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::BenchError;

/// Rows of the Parquet file encoded per row group.
const PARQUET_ROW_GROUP: usize = 8192;

const TOPICS: [(&str, [&str; 6], [&str; 5]); 6] = [
    (
        "cooking",
        ["sourdough loaf", "tomato sauce", "risotto", "curry", "omelette", "pastry"],
        ["needs a hot oven", "tastes better with fresh herbs", "takes patience to stir", "is best served warm", "freezes well"],
    ),
    (
        "databases",
        ["index", "query planner", "transaction log", "replica", "vector index", "shard"],
        ["speeds up lookups", "keeps writes durable", "balances the load", "answers similarity queries", "recovers after a crash"],
    ),
    (
        "finance",
        ["index fund", "mortgage rate", "savings account", "bond yield", "startup valuation", "household budget"],
        ["rose sharply this quarter", "depends on inflation", "rewards patience", "carries hidden fees", "was revised downwards"],
    ),
    (
        "science",
        ["telescope", "enzyme", "particle collider", "glacier", "vaccine trial", "fossil"],
        [
            "revealed an unexpected pattern",
            "confirmed the hypothesis",
            "needs more data",
            "surprised the researchers",
            "was published this week",
        ],
    ),
    (
        "sports",
        ["marathon", "football match", "tennis final", "cycling stage", "swim relay", "chess tournament"],
        [
            "ended in a close finish",
            "drew a record crowd",
            "was decided by a single point",
            "tested every athlete's endurance",
            "was delayed by rain",
        ],
    ),
    (
        "travel",
        ["mountain village", "coastal road", "night train", "old harbour", "desert camp", "island ferry"],
        ["offers stunning views", "is crowded in summer", "is quiet in winter", "is reachable only by foot", "serves excellent local food"],
    ),
];
const OPENERS: [&str; 6] =
    ["Reportedly, the", "In our notes, the", "According to the survey, the", "Everyone agrees the", "Last year the", "The"];

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CorpusSpec {
    /// Documents in the CSV that is embedded.
    pub text_rows: usize,
    /// Rows of the Parquet file with precomputed vectors.
    pub vector_rows: usize,
    /// Words per text, at least (clauses are added until a text has this many).
    pub words_per_text: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Length of every vector.
    pub dimension: usize,
}

/// One generated document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Primary key, `bench-0000042` (stable across the changed copy).
    pub id: String,
    /// The text to embed.
    pub text: String,
    /// Its topic, kept as a scalar field.
    pub category: &'static str,
}

/// `spec.text_rows` documents, deterministic in `spec.seed`.
pub fn documents(spec: &CorpusSpec) -> Vec<Document> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    (0..spec.text_rows).map(|ordinal| document(&mut rng, ordinal, spec.words_per_text)).collect()
}

/// The rows of the Parquet file, generated lazily: the same sequence [`write_parquet_with_vectors`]
/// writes, so the bare SDK loop upserts exactly the rows the import reads.
pub fn vector_documents(spec: &CorpusSpec) -> impl Iterator<Item = Document> {
    let mut rng = StdRng::seed_from_u64(spec.seed.rotate_left(32));
    let words_per_text = spec.words_per_text;
    (0..spec.vector_rows).map(move |ordinal| document(&mut rng, ordinal, words_per_text))
}

fn document(rng: &mut StdRng, ordinal: usize, words_per_text: usize) -> Document {
    let (category, subjects, predicates) = TOPICS[ordinal % TOPICS.len()];
    let mut pick = |choices: &[&'static str]| choices[rng.random_range(0..choices.len())];
    let mut text = format!("{} {} {}", pick(&OPENERS), pick(&subjects), pick(&predicates));
    let note = format!(" (note {ordinal}).");
    while text.split_whitespace().count() + 2 < words_per_text {
        text.push_str(&format!(", and the {} {}", pick(&subjects), pick(&predicates)));
    }
    text.push_str(&note);
    Document { id: format!("bench-{ordinal:07}"), text, category }
}

/// The documents with every `every`-th text (ordinals 0, every, 2·every, …) changed and the
/// others untouched: the "1 % of rows changed" file of the re-import phase.
pub fn with_changed_texts(documents: &[Document], every: usize) -> Vec<Document> {
    documents
        .iter()
        .enumerate()
        .map(|(ordinal, document)| {
            if ordinal % every.max(1) == 0 {
                Document { text: format!("{} Revised after review.", document.text), ..document.clone() }
            } else {
                document.clone()
            }
        })
        .collect()
}

/// How many rows [`with_changed_texts`] changes.
pub fn changed_count(rows: usize, every: usize) -> usize {
    rows.div_ceil(every.max(1))
}

/// Writes `documents` as a CSV with the columns `id,text,category`.
pub fn write_csv(path: &Path, documents: &[Document]) -> Result<(), BenchError> {
    let io_error = |source: std::io::Error| BenchError::Io { path: path.to_owned(), source };
    let mut writer = csv::Writer::from_path(path).map_err(|error| io_error(std::io::Error::other(error)))?;
    let mut write = |record: [&str; 3]| writer.write_record(record).map_err(|error| io_error(std::io::Error::other(error)));
    write(["id", "text", "category"])?;
    for document in documents {
        write([&document.id, &document.text, document.category])?;
    }
    writer.flush().map_err(io_error)
}

/// Writes `documents` as JSON Lines with the keys `id`, `text` and `category`.
pub fn write_jsonl(path: &Path, documents: &[Document]) -> Result<(), BenchError> {
    let lines: String = documents
        .iter()
        .map(|document| serde_json::json!({ "id": document.id, "text": document.text, "category": document.category }).to_string() + "\n")
        .collect();
    std::fs::write(path, lines).map_err(|source| BenchError::Io { path: path.to_owned(), source })
}

/// The unit vector of row `ordinal`: uniform components, L2-normalised, deterministic in `seed`.
pub fn vector_for(seed: u64, ordinal: usize, dimension: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed ^ (ordinal as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let vector: Vec<f32> = (0..dimension).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt().max(1e-12);
    vector.into_iter().map(|value| value / norm).collect()
}

/// Writes `spec.vector_rows` documents with their [`vector_for`] vectors as a Parquet file with the
/// columns `id, text, category` (UTF-8) and `embedding` (`list<float>`), row group by row group so
/// memory stays flat.
pub fn write_parquet_with_vectors(path: &Path, spec: &CorpusSpec) -> Result<(), BenchError> {
    let io_error = |message: String| BenchError::Io { path: path.to_owned(), source: std::io::Error::other(message) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("embedding", DataType::List(Arc::new(Field::new("item", DataType::Float32, true))), false),
    ]));
    let file = File::create(path).map_err(|source| BenchError::Io { path: path.to_owned(), source })?;
    let mut writer = ArrowWriter::try_new(BufWriter::new(file), schema.clone(), None).map_err(|error| io_error(error.to_string()))?;
    let mut documents = vector_documents(spec).enumerate().peekable();
    while documents.peek().is_some() {
        let (mut ids, mut texts, mut categories) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let mut vectors = ListBuilder::new(Float32Builder::with_capacity(PARQUET_ROW_GROUP * spec.dimension));
        for (ordinal, document) in documents.by_ref().take(PARQUET_ROW_GROUP) {
            ids.append_value(&document.id);
            texts.append_value(&document.text);
            categories.append_value(document.category);
            vectors.values().append_slice(&vector_for(spec.seed, ordinal, spec.dimension));
            vectors.append(true);
        }
        let columns: Vec<ArrayRef> =
            vec![Arc::new(ids.finish()), Arc::new(texts.finish()), Arc::new(categories.finish()), Arc::new(vectors.finish())];
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|error| io_error(error.to_string()))?;
        writer.write(&batch).map_err(|error| io_error(error.to_string()))?;
        writer.flush().map_err(|error| io_error(error.to_string()))?;
    }
    writer.close().map_err(|error| io_error(error.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(words_per_text: usize) -> CorpusSpec {
        CorpusSpec { text_rows: 250, vector_rows: 20, words_per_text, seed: 7, dimension: 8 }
    }

    #[test]
    fn documents_are_deterministic_and_long_enough() {
        for words in [5, 20, 40] {
            let first = documents(&spec(words));
            assert_eq!(first, documents(&spec(words)));
            assert!(first.iter().all(|document| document.text.split_whitespace().count() >= words), "{words}");
            assert_eq!(first[3].id, "bench-0000003");
        }
        assert_ne!(documents(&spec(20)), documents(&CorpusSpec { seed: 8, ..spec(20) }));
    }

    #[test]
    fn one_in_a_hundred_texts_change_and_ids_stay() {
        let original = documents(&spec(20));
        let changed = with_changed_texts(&original, 100);
        let differing: Vec<usize> = (0..250).filter(|&index| original[index].text != changed[index].text).collect();
        assert_eq!(differing, vec![0, 100, 200]);
        assert_eq!(differing.len(), changed_count(250, 100));
        assert!(original.iter().zip(&changed).all(|(left, right)| left.id == right.id && left.category == right.category));
    }

    #[test]
    fn vectors_are_unit_length_and_reproducible() {
        let vector = vector_for(7, 42, 384);
        assert_eq!(vector.len(), 384);
        let norm: f32 = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(vector, vector_for(7, 42, 384));
        assert_ne!(vector, vector_for(7, 43, 384));
    }

    #[test]
    fn parquet_file_holds_the_rows_and_their_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.parquet");
        let spec = spec(10);
        write_parquet_with_vectors(&path, &spec).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap().build().unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), spec.vector_rows);
        let embedding = batches[0].column(3).as_any().downcast_ref::<arrow_array::ListArray>().unwrap().value(5);
        let values = embedding.as_any().downcast_ref::<arrow_array::Float32Array>().unwrap().values().to_vec();
        assert_eq!(values, vector_for(spec.seed, 5, spec.dimension));
        let texts = batches[0].column(1).as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        let expected: Vec<String> = vector_documents(&spec).map(|document| document.text).collect();
        assert_eq!(texts.iter().map(|text| text.unwrap().to_owned()).collect::<Vec<_>>(), expected);
    }
}
