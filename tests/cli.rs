//! The command line itself: help, completions, the man page, where the config comes from, log
//! levels, and `vecdrop import` with directories and glob patterns. Only the import of a
//! directory and a pattern needs Milvus; the rest runs against an address nothing listens on.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{connect_sink, csv_with_vectors, milvus_uri, unique_collection, write_file, TestConfig};

/// Nothing listens here: Milvus is refused at once, so `check` fails fast after the checks that
/// need no server.
const NO_MILVUS: &str = "http://127.0.0.1:1";

/// `vecdrop ARGS…` from the repository root, with none of the caller's `VECDROP_*` variables
/// that change what is tested, plus `envs`.
fn vecdrop(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vecdrop"));
    command.args(args).current_dir(support::root()).env_remove("VECDROP_CONFIG").env_remove("VECDROP_LOG");
    for (name, value) in envs {
        command.env(name, value);
    }
    support::logged(&format!("vecdrop {args:?}"), command.output().expect("vecdrop runs"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A config whose model directory does not exist and whose Milvus does not answer; with
/// `plugin`, it loads the XML example plugin (which logs "plugin loaded" at INFO).
fn offline_config(plugin: bool) -> TestConfig {
    let plugins = if plugin { format!("[[plugins]]\npath = \"{}\"\n", support::plugin_wasm("xml").display()) } else { String::new() };
    TestConfig::from_toml(&format!(
        "[milvus]\nuri = \"{NO_MILVUS}\"\nconnect_timeout = \"1s\"\n\n[embedding]\nmodel_dir = \"no-such-model\"\n\n[state]\ndir = \"state\"\n\n{plugins}\n[[pipelines]]\nname = \"test\"\ncollection = \"cli_offline\"\n"
    ))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn help_names_the_environment_variables() {
    let help = vecdrop(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    let text = stdout(&help);
    for expected in ["VECDROP_CONFIG", "VECDROP_LOG", "--config", "--verbose", "--quiet", "completions", "man"] {
        assert!(text.contains(expected), "--help lacks {expected}");
    }
    let import_help = stdout(&vecdrop(&["import", "--help"], &[]));
    assert!(import_help.contains("VECDROP_CONFIG"), "the global --config shows in each verb's help");
    let search_help = stdout(&vecdrop(&["search", "--help"], &[]));
    assert!(search_help.contains("-k, --limit <N>"), "{search_help}");
}

#[test]
fn completions_are_printed_for_every_shell() {
    let bash = vecdrop(&["completions", "bash"], &[]);
    assert_eq!(bash.status.code(), Some(0));
    let script = stdout(&bash);
    assert!(script.contains("vecdrop") && script.contains("import") && script.contains("--config"), "{script}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let output = vecdrop(&["completions", shell], &[]);
        assert_eq!(output.status.code(), Some(0), "{shell}");
        assert!(stdout(&output).contains("vecdrop"), "{shell}");
    }
    assert_eq!(vecdrop(&["completions", "tcsh"], &[]).status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn the_man_page_is_roff() {
    let output = vecdrop(&["man"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let page = stdout(&output);
    assert!(page.lines().any(|line| line.starts_with(".TH vecdrop")), "no .TH header:\n{page}");
    for expected in ["import", "VECDROP_CONFIG", "VECDROP_LOG"] {
        assert!(page.contains(expected), "the man page lacks {expected}");
    }
}

#[test]
fn vecdrop_config_names_the_config_file() {
    let config = offline_config(false);
    let output = vecdrop(&["check"], &[("VECDROP_CONFIG", path_str(&config.path))]);
    assert_eq!(output.status.code(), Some(1), "the model and Milvus checks fail");
    let report = stdout(&output);
    assert!(report.contains(&format!("ok    config: {}", config.path.display())), "{report}");
    let model_dir = config.dir.path().join("no-such-model");
    let model_line = report.lines().find(|line| line.starts_with("FAIL  model")).expect("a model line");
    assert!(model_line.contains(path_str(&model_dir)), "the model error names the configured directory: {model_line}");

    // An empty VECDROP_CONFIG is a usage error that says so.
    let output = vecdrop(&["status"], &[("VECDROP_CONFIG", "")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("VECDROP_CONFIG"), "the error names the variable");

    // --config wins over VECDROP_CONFIG.
    let missing = config.dir.path().join("absent.toml");
    let output = vecdrop(&["check", "--config", path_str(&missing)], &[("VECDROP_CONFIG", path_str(&config.path))]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(path_str(&missing)));
}

#[test]
fn config_goes_before_or_after_the_verb() {
    let config = offline_config(false);
    for args in [["--config", path_str(&config.path), "status"], ["status", "--config", path_str(&config.path)]] {
        let output = vecdrop(&args, &[]);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(stdout(&output).contains("no files imported yet"), "{args:?}");
    }
    let missing = config.dir.path().join("absent.toml");
    for args in [["--config", path_str(&missing), "status"], ["status", "--config", path_str(&missing)]] {
        let output = vecdrop(&args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(path_str(&missing)), "{args:?}: the error names the file");
    }
}

#[test]
fn quiet_and_verbose_set_the_log_level_and_vecdrop_log_wins() {
    let config = offline_config(true);
    let check = |flags: &[&str], envs: &[(&str, &str)]| {
        let mut args = vec!["check", "--config", path_str(&config.path)];
        args.extend_from_slice(flags);
        let output = vecdrop(&args, envs);
        assert_eq!(output.status.code(), Some(1), "{flags:?}");
        stderr(&output)
    };
    let default = check(&[], &[]);
    assert!(default.contains("plugin loaded") && default.contains("INFO"), "INFO by default");
    assert!(!default.contains("DEBUG"), "no DEBUG by default");

    let quiet = check(&["-q"], &[]);
    assert!(!quiet.contains("INFO") && !quiet.contains("plugin loaded"), "-q hides INFO");

    let verbose = check(&["-v"], &[]);
    assert!(verbose.contains("DEBUG") && verbose.contains("config loaded"), "-v shows DEBUG");
    assert!(verbose.contains("plugin loaded"));

    let overridden = check(&["-v"], &[("VECDROP_LOG", "error")]);
    assert!(!overridden.contains("DEBUG") && !overridden.contains("INFO"), "VECDROP_LOG wins over -v");
    let invalid = check(&["-q"], &[("VECDROP_LOG", "vecdrop=loud")]);
    assert!(invalid.contains("VECDROP_LOG") && !invalid.contains("INFO"), "an invalid VECDROP_LOG is reported, -q applies");
}

#[test]
fn a_pattern_matching_nothing_is_a_usage_error_naming_it() {
    let config = offline_config(false);
    let pattern = config.dir.path().join("*.nothing");
    let output = vecdrop(&["import", "--config", path_str(&config.path), path_str(&pattern)], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(&format!("{}: no file matches", pattern.display())), "the error names the pattern");
    let empty = config.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = vecdrop(&["import", "--config", path_str(&config.path), path_str(&empty)], &[]);
    assert_eq!(output.status.code(), Some(2), "a directory with nothing to import too");
    assert!(stderr(&output).contains(path_str(&empty)));
}

#[tokio::test(flavor = "multi_thread")]
async fn import_takes_a_directory_and_a_glob_pattern() {
    let collection = unique_collection("cli_paths");
    let config = TestConfig::new(&collection, "id_field = \"id\"");
    let sink = connect_sink(&milvus_uri()).await.unwrap();

    // A directory: its files, sorted, not its subdirectory, dotfiles or partial downloads.
    let dir = config.dir.path().join("incoming");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    write_file(&dir, "b.csv", &csv_with_vectors("b", 4).0);
    write_file(&dir, "a.csv", &csv_with_vectors("a", 3).0);
    write_file(&dir, ".hidden.csv", &csv_with_vectors("hidden", 2).0);
    write_file(&dir, "c.csv.part", &csv_with_vectors("part", 2).0);
    write_file(&dir.join("sub"), "d.csv", &csv_with_vectors("sub", 2).0);
    let output = config.run("import", &[path_str(&dir)]);
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<String> = stdout(&output).lines().filter(|line| line.contains("rows imported")).map(str::to_owned).collect();
    assert!(lines[0].starts_with(&format!("{}: 3 rows imported", dir.join("a.csv").display())), "{lines:?}");
    assert!(lines[1].starts_with(&format!("{}: 4 rows imported", dir.join("b.csv").display())), "{lines:?}");
    assert!(lines[2].starts_with("total: 7 rows imported"), "{lines:?}");
    assert_eq!(sink.count(&collection).await.unwrap(), 7);

    // A pattern (quoted: vecdrop expands it, not the shell).
    let exports = config.dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    write_file(&exports, "x1.csv", &csv_with_vectors("x1", 5).0);
    write_file(&exports, "x2.csv", &csv_with_vectors("x2", 6).0);
    write_file(&exports, "y.csv", &csv_with_vectors("y", 2).0);
    let output = config.run("import", &[path_str(&exports.join("x*.csv"))]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("total: 11 rows imported"));
    assert_eq!(sink.count(&collection).await.unwrap(), 18, "x1 and x2, not y");
}
