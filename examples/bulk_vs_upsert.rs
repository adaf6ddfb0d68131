//! How much faster is Milvus's bulk import than upserts for rows that already carry vectors?
//! Writes `rows` rows of 384-d vectors into two fresh collections of the same server: once through
//! `MilvusSink::upsert` in batches of 512 plus the closing flush, once staged as Parquet
//! (`bulk::StagingWriter`) and bulk-imported until the task completes (and again until the rows
//! are visible to queries). Index building is not waited for on either side.
//!
//! ```text
//! cargo run --release --example bulk_vs_upsert -- http://127.0.0.1:19530 [rows] [staging dir]
//! ```

use std::time::{Duration, Instant};

use vecdrop::bulk::StagingWriter;
use vecdrop::format::RecordPosition;
use vecdrop::mapping::Row;
use vecdrop::settings::{CollectionSettings, IndexSettings, IndexType, KeyType, Metric, MilvusSettings, Secret};
use vecdrop::sink::{CollectionSpec, ImportProgress, MilvusSink};

fn spec(name: &str) -> CollectionSpec {
    let collection = CollectionSettings {
        name: name.to_owned(),
        primary_key: "id".into(),
        key_type: None,
        text_field: "text".into(),
        text_max_length: 256,
        vector_field: "embedding".into(),
        scalar_fields: Vec::new(),
        index: IndexSettings { index_type: IndexType::Flat, metric: Metric::Cosine, params: Default::default() },
    };
    CollectionSpec { collection, dimension: 384, model_identity: "bulk-vs-upsert".into() }
}

fn batch(start: usize, count: usize) -> (Vec<Row>, Vec<Vec<f32>>) {
    let rows = (start..start + count)
        .map(|index| Row {
            primary_key: format!("row-{index}"),
            text: format!("row {index} of the bulk comparison"),
            scalars: Vec::new(),
            row_hash: index as i64,
            position: RecordPosition { ordinal: index as u64, line: None, byte_offset: 0 },
            vector: None,
        })
        .collect();
    let vectors =
        (start..start + count).map(|index| (0..384).map(|dim| ((index * 131 + dim * 7) % 1000) as f32 / 1000.0).collect()).collect();
    (rows, vectors)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let uri = args.get(1).cloned().unwrap_or_else(|| "http://127.0.0.1:19530".to_owned());
    let total: usize = args.get(2).and_then(|value| value.parse().ok()).unwrap_or(200_000);
    let staging = args.get(3).cloned().unwrap_or_else(|| std::env::temp_dir().join("vecdrop-bulk-vs-upsert").display().to_string());
    let settings = MilvusSettings { uri, token: Secret::default(), ..MilvusSettings::default() };
    let sink = MilvusSink::connect(&settings, std::path::Path::new(".")).await.expect("Milvus answers");
    let suffix = std::process::id();

    let upserted = spec(&format!("bulk_vs_upsert_u_{suffix}"));
    sink.ensure_collection(&upserted).await.unwrap();
    let started = Instant::now();
    for start in (0..total).step_by(512) {
        let (rows, vectors) = batch(start, 512.min(total - start));
        sink.upsert(&upserted, &rows, &vectors).await.unwrap();
    }
    sink.flush(&upserted.collection.name).await.unwrap();
    let upsert_seconds = started.elapsed().as_secs_f64();

    let imported = spec(&format!("bulk_vs_upsert_b_{suffix}"));
    sink.ensure_collection(&imported).await.unwrap();
    let started = Instant::now();
    let mut writer =
        StagingWriter::create(std::path::Path::new(&staging).join(suffix.to_string()).as_path(), &imported, KeyType::Varchar).unwrap();
    for start in (0..total).step_by(4096) {
        let (rows, vectors) = batch(start, 4096.min(total - start));
        writer.write(&rows, &vectors).unwrap();
    }
    let staged = writer.finish().unwrap();
    let stage_seconds = started.elapsed().as_secs_f64();
    let files: Vec<String> = staged.files.iter().map(|file| file.display().to_string()).collect();
    for file in &files {
        let task = sink.submit_import(&imported.collection.name, file).await.unwrap();
        loop {
            match sink.import_state(&imported.collection.name, &task).await.unwrap() {
                ImportProgress::Running { .. } => tokio::time::sleep(Duration::from_millis(100)).await,
                ImportProgress::Done { .. } => break,
                ImportProgress::Failed { reason } => panic!("import failed: {reason}"),
            }
        }
    }
    let completed_seconds = started.elapsed().as_secs_f64();
    while sink.count(&imported.collection.name).await.unwrap() < total as u64 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let visible_seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&staged.dir);

    let rate = |seconds: f64| total as f64 / seconds;
    println!("rows: {total} with 384-d vectors");
    println!("upsert (512/request) + flush: {upsert_seconds:.1} s, {:.0} rows/s", rate(upsert_seconds));
    println!(
        "bulk import: staged in {stage_seconds:.1} s, task completed at {completed_seconds:.1} s ({:.0} rows/s), visible at {visible_seconds:.1} s ({:.0} rows/s)",
        rate(completed_seconds),
        rate(visible_seconds)
    );
    println!("ratio bulk (completed) / upsert: {:.2}", upsert_seconds / completed_seconds);
}
