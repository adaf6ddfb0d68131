//! Vectors of different models never share a collection: the model identity recorded at creation
//! (`<model dir>:<precision>:<max_tokens>`) is checked whenever an import opens the collection.

mod support;

#[test]
fn importing_with_int8_into_an_fp32_collection_is_refused_with_both_identities() {
    let collection = support::unique_collection("precision_mix");
    let config = support::TestConfig::new(&collection, "id_field = \"id\"");
    let first = support::write_file(config.dir.path(), "first.csv", "id,text\n1,filled by the fp32 model\n");
    assert!(config.run("import", &[first.to_str().unwrap()]).status.success());

    let fp32_config = std::fs::read_to_string(&config.path).unwrap();
    std::fs::write(&config.path, fp32_config.replace("[embedding]\n", "[embedding]\nprecision = \"int8\"\n")).unwrap();
    let second = support::write_file(config.dir.path(), "second.csv", "id,text\n2,would be embedded by the int8 model\n");
    let output = config.run("import", &[second.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("filled by model {}", support::MODEL_IDENTITY))
            && stderr.contains("loads all-MiniLM-L6-v2:int8:256")
            && stderr.contains("cannot be mixed"),
        "{stderr}"
    );
}
