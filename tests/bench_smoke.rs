//! `vecdrop bench --smoke --json` against the test Milvus: every phase runs and reports numbers a
//! real measurement can produce. Speed targets are the bench's own output (see `make bench`),
//! never asserted here: this machine is shared and timings are noise at smoke size.

mod support;

use serde_json::Value;

const PHASES: [&str; 11] = [
    "model_best_fixed",
    "model_fp32",
    "model_int8",
    "import_embedded",
    "sdk_upsert",
    "import_vectors",
    "reimport_changed",
    "daemon_one_file",
    "daemon_small_files",
    "bulk_baseline_upsert",
    "bulk_import",
];

/// Rows of the small-files phases in `--smoke` mode (one file, then ten files of ten rows).
const SMOKE_SMALL_FILES_ROWS: f64 = 100.0;

fn run_smoke_bench() -> Value {
    let config = support::TestConfig::new(&support::unique_collection("bench_unused"), "");
    let output = config.run("bench", &["--smoke", "--json", "--milvus-uri", &support::milvus_uri()]);
    assert!(output.status.success(), "bench failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("bench --json printed no JSON: {error}"))
}

fn number(value: &Value, key: &str) -> f64 {
    value[key].as_f64().unwrap_or_else(|| panic!("{key} missing or not a number in {value}"))
}

#[test]
fn smoke_bench_measures_every_phase_with_sane_numbers() {
    let report = run_smoke_bench();
    let phases = report["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases.iter().map(|phase| phase["name"].as_str().unwrap()).collect();
    assert_eq!(names, PHASES);
    let text_rows = number(&report["corpus"], "text_rows");
    let vector_rows = number(&report["corpus"], "vector_rows");
    for phase in phases {
        let (items, seconds, rate) = (number(phase, "items"), number(phase, "seconds"), number(phase, "per_second"));
        assert!(items > 0.0 && seconds > 0.0, "{phase}");
        assert!((rate - items / seconds).abs() <= 1e-6 * rate, "{phase}");
        // Two CPU cores embed hundreds of texts per second and Milvus takes thousands of rows;
        // a million per second would mean nothing was done.
        assert!(rate < 1e6, "{phase}");
        let peak_mb = number(phase, "peak_rss_bytes") / 1_048_576.0;
        assert!((20.0..4096.0).contains(&peak_mb), "peak {peak_mb} MB in {phase}");
    }
    let phase = |name: &str| phases.iter().find(|phase| phase["name"] == name).unwrap();
    for model in ["model_fp32", "model_int8"] {
        assert_eq!(number(phase(model), "items"), text_rows);
        assert!(number(phase(model), "tokens_per_second") > 2.0 * number(phase(model), "per_second"), "texts have > 2 tokens");
    }
    assert_eq!(number(phase("import_embedded"), "items"), text_rows);
    // The SDK loop / vectors import and the two daemon phases run twice each (A B B A).
    for paired in ["sdk_upsert", "import_vectors", "daemon_one_file", "daemon_small_files"] {
        let rounds = phase(paired)["rounds_per_second"].as_array().unwrap_or_else(|| panic!("{paired} has rounds"));
        assert_eq!(rounds.len(), 2, "{paired}");
        assert!(rounds.iter().all(|rate| rate.as_f64().is_some_and(|rate| rate > 0.0)), "{paired}");
    }
    assert_eq!(number(phase("import_embedded"), "texts_embedded"), text_rows, "a first import embeds every row");
    assert_eq!(number(phase("sdk_upsert"), "items"), 2.0 * vector_rows);
    assert!(number(phase("sdk_upsert"), "flush_seconds") < number(phase("sdk_upsert"), "seconds"));
    assert_eq!(number(phase("import_vectors"), "items"), 2.0 * vector_rows);
    assert_eq!(number(phase("import_vectors"), "texts_embedded"), 0.0, "rows with vectors skip the model");
    assert_eq!(number(phase("reimport_changed"), "items"), text_rows);
    let changed = number(&report, "reimport_changed_rows");
    assert!(changed > 0.0 && changed < text_rows, "changed rows {changed} of {text_rows}");
    assert_eq!(
        number(phase("reimport_changed"), "texts_embedded"),
        changed,
        "a re-import embeds exactly the rows whose text changed; unchanged rows skip the model"
    );
    for daemon_phase in ["daemon_one_file", "daemon_small_files"] {
        assert_eq!(number(phase(daemon_phase), "items"), 2.0 * SMOKE_SMALL_FILES_ROWS, "the same rows both ways, twice");
    }
    for bulk_phase in ["bulk_baseline_upsert", "bulk_import"] {
        assert_eq!(number(phase(bulk_phase), "items"), 2_000.0, "the same 2,000 rows with vectors both ways");
        assert_eq!(number(phase(bulk_phase), "texts_embedded"), 0.0, "{bulk_phase}: rows with vectors skip the model");
    }

    // Ratios are reported, not judged: at smoke size they are noise. `make bench` (full mode)
    // checks the targets and fails when one is missed.
    let ratios = &report["ratios"];
    for ratio in [
        "embedded_import_vs_model",
        "embedded_import_vs_model_without_flush",
        "vectors_import_vs_sdk",
        "int8_speedup",
        "reimport_speedup",
        "small_files_vs_one_file",
        "model_vs_best_fixed",
        "import_vs_best_fixed",
        "import_vs_best_fixed_without_flush",
        "bulk_vs_upsert",
        "bulk_completed_vs_upsert",
    ] {
        assert!(number(ratios, ratio).is_finite() && number(ratios, ratio) > 0.0, "{ratio} is reported: {ratios}");
    }
    assert!(number(&report["fp32_quality"], "min_cosine") >= 0.999, "{}", report["fp32_quality"]);
    let int8 = &report["int8_quality"];
    assert!(number(int8, "min_cosine") <= number(int8, "mean_cosine") && number(int8, "min_cosine") > 0.9, "{int8}");
    assert!(number(&report, "mean_tokens") > 10.0);
    assert_eq!(report["targets"].as_array().map(Vec::len), Some(6), "{}", report["targets"]);

    // The ladder tried every fixed batch size on the same sample; its fastest size is the
    // reference, measured again in each round beside the fp32 and int8 models (whose totals
    // cover every text once); the import is bracketed by the reference and fp32 model again.
    let fixed = report["fixed_batches"].as_array().expect("fixed_batches");
    let sizes: Vec<f64> = fixed.iter().map(|run| number(run, "batch")).collect();
    assert_eq!(sizes, vec![4.0, 8.0, 16.0, 32.0, 64.0, 128.0]);
    let best = phase("model_best_fixed");
    let fastest = fixed.iter().max_by(|left, right| {
        (number(left, "tokens") / number(left, "seconds")).total_cmp(&(number(right, "tokens") / number(right, "seconds")))
    });
    assert_eq!(number(best, "batch"), number(fastest.unwrap(), "batch"), "{best} runs the ladder's fastest size");
    let rounds = report["model_rounds"].as_array().expect("model_rounds");
    assert_eq!(rounds.len(), 2, "smoke: two windows of 128 texts, two rounds");
    assert_eq!(number(best, "items"), 2.0 * number(fixed.first().unwrap(), "texts"), "the sample once per round");
    for round in rounds {
        for rate in ["reference", "fp32", "int8"] {
            assert!(number(round, rate) > 0.0, "{round}");
        }
    }
    let bracket = &report["import_bracket"];
    for side in ["before", "after"] {
        assert!(number(&bracket[side], "reference") > 0.0 && number(&bracket[side], "fp32") > 0.0, "{bracket}");
    }
    assert_eq!(number(&bracket["before"], "fp32"), number(rounds.last().unwrap(), "fp32"), "before = the last round");
    let shape = &report["environment"]["batch_shape"];
    assert_eq!(shape["source"], "calibrated", "{shape}");
    assert_eq!(number(&shape["shape"], "batch_tokens"), number(&report["environment"], "batch_tokens"));
    assert!(shape["calibration"]["points"].as_array().is_some_and(|points| points.len() >= 3), "{shape}");
}
