//! Collections made by others, with schema features vecdrop does not create itself: a dynamic
//! field and a partition key (Milvus ≥ 2.3). vecdrop writes into them as into its own. Part of the
//! compatibility table in the README.

mod support;

use milvus::v2::prelude::{
    ClientV2, CollectionSchema, ConnectConfig, CreateCollectionRequest, CreateIndexRequest, DataType, FieldSchema, IndexParam, IndexType,
    MetricType, TelemetryConfig,
};
use support::{connect_sink, milvus_uri, unique_collection, TestConfig, MODEL_IDENTITY};

/// Creates `collection` the way a pymilvus user would: vecdrop's fields, plus a dynamic field and
/// `category` as the partition key.
async fn create_foreign_collection(collection: &str) {
    let config = ConnectConfig::new().uri(milvus_uri()).telemetry(TelemetryConfig::new().enabled(false));
    let client = ClientV2::new(&config).await.unwrap();
    let varchar = |name: &str, length: u32| FieldSchema::new().name(name.to_owned()).data_type(DataType::VarChar).max_length(length);
    let schema = CollectionSchema::new()
        .description(format!("created by hand; model={MODEL_IDENTITY}"))
        .enable_dynamic_field(true)
        .add_field(varchar("id", 512).primary_key(true).auto_id(false))
        .add_field(varchar("text", 65_535))
        .add_field(FieldSchema::new().name("_vecdrop_hash".to_owned()).data_type(DataType::Int64))
        .add_field(varchar("category", 64).partition_key(true))
        .add_field(FieldSchema::new().name("embedding".to_owned()).data_type(DataType::FloatVector).dimension(384));
    let request = CreateCollectionRequest::builder().collection_name(collection.to_owned()).schema(schema).build().unwrap();
    client.create_collection(request).await.unwrap();
    let index = IndexParam::new()
        .field_name("embedding".to_owned())
        .index_name("embedding_index".to_owned())
        .index_type(IndexType::AutoIndex)
        .metric_type(MetricType::Cosine);
    let request =
        CreateIndexRequest::builder().collection_name(collection.to_owned()).index_params(vec![index]).sync(false).build().unwrap();
    client.create_index(request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collection_with_a_dynamic_field_and_a_partition_key_is_written_like_its_own() {
    let collection = unique_collection("foreign");
    create_foreign_collection(&collection).await;
    let config = TestConfig::new(&collection, "id_field = \"id\"\n[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 64 }");
    let check = config.run("check", &[]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
    let path = config.dir.path().join("rows.csv");
    std::fs::write(&path, "id,text,category\na1,a row about boats,boats\na2,a row about trains,trains\na3,another boat row,boats\n")
        .unwrap();
    let output = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(&collection).await.unwrap(), 3);
    let hits = config.run("search", &["boats"]);
    assert_eq!(hits.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&hits.stdout).contains("a1"), "{}", String::from_utf8_lossy(&hits.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_import_writes_into_a_collection_with_a_dynamic_field_and_a_partition_key() {
    // vecdrop stages no `$meta` column (it declares no dynamic fields): Milvus imports the file
    // into a collection that has one all the same, and routes rows by the partition key.
    let collection = unique_collection("foreign_bulk");
    create_foreign_collection(&collection).await;
    let config = TestConfig::new(
        &collection,
        "id_field = \"id\"\nbulk_import = { min_rows = 1, staging = \"staging\", poll_interval = \"200ms\" }\n[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 64 }",
    );
    let path = config.dir.path().join("rows.csv");
    std::fs::write(&path, "id,text,category\nb1,a row about boats,boats\nb2,a row about trains,trains\nb3,another boat row,boats\n")
        .unwrap();
    let output = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bulk import: submitted"), "the bulk path was taken");
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(&collection).await.unwrap(), 3);
}
