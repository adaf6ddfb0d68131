//! Unchanged-row lookups against the real Milvus: once past its start-up window a sink reads with
//! bounded staleness, and what it wrote itself a moment ago is still seen (Milvus's own bounded
//! answer may lag by a time tick); deletes send lookups back to strong reads.

mod support;

use support::{collection_spec, connect_sink, milvus_uri, unique_collection, TestConfig};
use vecdrop::format::RecordPosition;
use vecdrop::mapping::Row;
use vecdrop::sink::recent::ReadPlan;

fn rows(keys: &[String], version: i64) -> (Vec<Row>, Vec<Vec<f32>>) {
    let rows = keys
        .iter()
        .enumerate()
        .map(|(ordinal, key)| Row {
            primary_key: key.clone(),
            text: format!("{key} in version {version}"),
            scalars: Vec::new(),
            row_hash: version,
            position: RecordPosition { ordinal: ordinal as u64, line: None, byte_offset: 0 },
            vector: None,
        })
        .collect();
    let mut vector = vec![0.0f32; 384];
    vector[0] = 1.0;
    (rows, vec![vector; keys.len()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_right_after_a_write_sees_it_and_a_delete_makes_lookups_strong() {
    let collection = unique_collection("lookups");
    let config = TestConfig::new(&collection, "id_field = \"id\"");
    let spec = collection_spec(&config);
    let mut sink = connect_sink(&milvus_uri()).await.unwrap();
    sink.ensure_collection(&spec).await.unwrap();
    let keys: Vec<String> = (0..50).map(|number| format!("k{number}")).collect();

    // Fresh from start, lookups are strong: an earlier process's last writes may be unseen by a
    // bounded read.
    let (_, plan) = sink.stored_hashes(&spec, &keys).await.unwrap();
    assert_eq!(plan, ReadPlan::Strong);

    sink.skip_strong_lookup_window();
    for version in 1..=5 {
        let (rows, vectors) = rows(&keys, version);
        assert_eq!(sink.upsert(&spec, &rows, &vectors).await.unwrap(), keys.len() as u64);
        // Milliseconds after the write: Milvus's bounded answer alone would still show the
        // previous version (or nothing) most of the time.
        let (stored, plan) = sink.stored_hashes(&spec, &keys).await.unwrap();
        assert_eq!(plan, ReadPlan::Bounded);
        let wrong: Vec<(&String, Option<&i64>)> =
            keys.iter().map(|key| (key, stored.get(key))).filter(|(_, hash)| *hash != Some(&version)).collect();
        assert!(wrong.is_empty(), "version {version}: lookups missed this process's own write: {wrong:?}");
    }

    sink.delete_keys(&spec, &keys[..10]).await.unwrap();
    let (stored, plan) = sink.stored_hashes(&spec, &keys).await.unwrap();
    assert_eq!(plan, ReadPlan::Strong, "deleted keys are not remembered one by one: strong reads for a while");
    assert_eq!(stored.len(), 40, "the deleted keys are gone: {stored:?}");
    assert!(keys[..10].iter().all(|key| !stored.contains_key(key)));
}
