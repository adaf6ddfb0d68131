//! Integer ids as an INT64 primary key (`id_type = "int64"`), as most Milvus schemas and the
//! pymilvus scripts vecdrop replaces have them; an existing INT64 collection is written as such
//! when the config leaves `id_type` unset.

mod support;

use support::{connect_sink, milvus_uri, unique_collection, TestConfig};

#[tokio::test(flavor = "multi_thread")]
async fn integer_ids_become_an_int64_key_and_an_existing_int64_collection_is_respected() {
    let collection = unique_collection("int64_keys");
    let config = TestConfig::new(&collection, "id_field = \"id\"\nid_type = \"int64\"");
    let path = config.dir.path().join("products.csv");
    std::fs::write(
        &path,
        "id,text\n1,a kettle that boils water quickly\n2,a lamp for reading at night\n007,a spy novel set in winter\nx9,a row whose id is not an integer\n",
    )
    .unwrap();
    let first = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(3), "the non-integer id is dead-lettered");
    let dead = std::fs::read_to_string(config.state_dir().join("dead-letters/test.jsonl")).unwrap();
    assert!(dead.contains("x9") && dead.contains("INT64"), "{dead}");

    let sink = connect_sink(&milvus_uri()).await.unwrap();
    let mut spec = support::collection_spec(&config);
    sink.ensure_collection(&spec).await.unwrap();
    assert_eq!(sink.key_type(&spec), vecdrop::settings::KeyType::Int64);
    assert_eq!(sink.count(&collection).await.unwrap(), 3);
    let texts = sink.texts_by_key(&spec, &["1".into(), "7".into(), "2".into()]).await.unwrap();
    assert_eq!(texts["7"], "a spy novel set in winter", "\"007\" is stored as the integer 7");

    // A second pipeline on the same collection without id_type: the collection's INT64 key is
    // used; unchanged rows are recognised (the lookups match integer keys), a changed one written.
    let unset = TestConfig::new(&collection, "id_field = \"id\"");
    let next = unset.dir.path().join("products-v2.csv");
    std::fs::write(&next, "id,text\n1,a kettle that boils water quickly\n2,a lamp for reading in bed\n3,a new row\n").unwrap();
    let second = unset.run("import", &[next.to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(0));
    let printed = String::from_utf8_lossy(&second.stdout);
    assert!(printed.contains(": 2 rows imported"), "the unchanged row is skipped: {printed}");
    assert_eq!(sink.count(&collection).await.unwrap(), 4);
    spec.collection.key_type = None;
    let texts = sink.texts_by_key(&spec, &["2".into(), "3".into()]).await.unwrap();
    assert_eq!(texts["2"], "a lamp for reading in bed");

    // Asked for VARCHAR explicitly, the INT64 collection is refused by name.
    let varchar = TestConfig::new(&collection, "id_field = \"id\"\nid_type = \"varchar\"");
    let refused = varchar.run("import", &[next.to_str().unwrap()]);
    assert_ne!(refused.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("\"id\": expected VarChar, the collection has Int64"), "{stderr}");
}
