//! The operator kit in `contrib/`: the Grafana dashboard and the Prometheus alert rules have the
//! structure Grafana and Prometheus load, and every metric their PromQL names is one a real
//! `vecdrop run` serves at `/metrics` — with the OpenMetrics content type — once a file was
//! imported and a scheduled run ended.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use support::daemon::{daemon_sections, done_files, free_address, Daemon};
use support::{unique_collection, TestConfig};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn contrib(path: &str) -> PathBuf {
    support::root().join("contrib").join(path)
}

/// `contrib/prometheus/alerts.yml`, as Prometheus reads a rule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<AlertRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertRule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    pending: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn alert_rules() -> RuleFile {
    let text = std::fs::read_to_string(contrib("prometheus/alerts.yml")).expect("contrib/prometheus/alerts.yml");
    serde_yaml_ng::from_str(&text).expect("alerts.yml is a Prometheus rule file")
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(contrib("grafana/vecdrop.json")).expect("contrib/grafana/vecdrop.json");
    serde_json::from_str(&text).expect("vecdrop.json is JSON")
}

/// Every PromQL expression of the dashboard: panel targets and template variable queries.
fn dashboard_expressions(dashboard: &serde_json::Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().expect("panels");
    let targets = panels.iter().flat_map(|panel| panel["targets"].as_array().into_iter().flatten());
    let variables = dashboard["templating"]["list"].as_array().into_iter().flatten();
    targets
        .map(|target| &target["expr"])
        .chain(variables.map(|variable| if variable["query"].is_object() { &variable["query"]["query"] } else { &variable["query"] }))
        .filter_map(|expr| expr.as_str().map(str::to_owned))
        .collect()
}

/// The metric names in `expr`: identifiers starting with `vecdrop_`, outside quoted strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut characters = expr.char_indices().peekable();
    while let Some((start, character)) = characters.next() {
        if matches!(character, '"' | '\'' | '`') {
            skip_string(character, &mut characters);
        } else if character.is_ascii_alphabetic() || character == '_' || character == ':' {
            let mut end = start + character.len_utf8();
            while let Some(&(index, next)) = characters.peek() {
                if !(next.is_ascii_alphanumeric() || next == '_' || next == ':') {
                    break;
                }
                end = index + next.len_utf8();
                characters.next();
            }
            let identifier = &expr[start..end];
            if identifier.starts_with("vecdrop_") {
                names.insert(identifier.to_owned());
            }
        }
    }
    names
}

/// Consumes a string opened by `quote` (backslash escapes; none in backticks).
fn skip_string(quote: char, characters: &mut impl Iterator<Item = (usize, char)>) {
    let mut escaped = false;
    for (_, character) in characters {
        match character {
            '\\' if !escaped && quote != '`' => escaped = true,
            closing if closing == quote && !escaped => return,
            _ => escaped = false,
        }
    }
}

/// `Ok` when every `(`, `[` and `{` of `expr` outside quoted strings is closed in order.
fn balanced(expr: &str) -> Result<(), String> {
    let mut open = Vec::new();
    let mut characters = expr.char_indices();
    while let Some((index, character)) = characters.next() {
        match character {
            '"' | '\'' | '`' => skip_string(character, &mut characters),
            '(' | '[' | '{' => open.push((index, character)),
            ')' | ']' | '}' => {
                let expected = match character {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match open.pop() {
                    Some((_, opening)) if opening == expected => {}
                    other => return Err(format!("{character:?} at {index} closes {other:?}")),
                }
            }
            _ => {}
        }
    }
    match open.pop() {
        None => Ok(()),
        Some((index, opening)) => Err(format!("{opening:?} at {index} is never closed")),
    }
}

/// What `/metrics` lists: metric families with their type (`# TYPE` lines) and the names of the
/// samples present.
struct Exposition {
    families: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut families = BTreeMap::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = declaration.split_once(' ') {
                    families.insert(name.to_owned(), kind.trim().to_owned());
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                samples.insert(name.to_owned());
            }
        }
        Self { families, samples }
    }

    /// Why the series `name` (as PromQL names it: a counter with `_total`, a histogram's
    /// `_bucket` / `_count` / `_sum`) is not served, if it is not: its family must be declared with
    /// a type that has such a series, and a sample of it must be present.
    fn missing(&self, name: &str) -> Option<String> {
        let family_types: &[(&str, &[&str])] = &[
            ("_total", &["counter"]),
            ("_bucket", &["histogram", "gaugehistogram"]),
            ("_count", &["histogram", "summary"]),
            ("_sum", &["histogram", "summary"]),
            ("_created", &["counter", "histogram", "summary"]),
            ("_info", &["info"]),
        ];
        let declared = match self.families.get(name) {
            Some(kind) => matches!(kind.as_str(), "gauge" | "unknown" | "stateset").then_some(()),
            None => family_types.iter().find_map(|(suffix, kinds)| {
                let family = name.strip_suffix(suffix)?;
                kinds.contains(&self.families.get(family)?.as_str()).then_some(())
            }),
        };
        if declared.is_none() {
            return Some(format!("{name}: no metric family of a type with such a series"));
        }
        (!self.samples.contains(name)).then(|| format!("{name}: declared, but no sample"))
    }
}

/// GET `path` over a raw HTTP/1.0 connection: status, headers (names in lower case), body.
fn raw_get(address: &str, path: &str) -> (u16, BTreeMap<String, String>, String) {
    let mut stream = std::net::TcpStream::connect(address).expect("the status endpoint accepts");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split_whitespace().nth(1)).and_then(|code| code.parse().ok()).expect("a status");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn promql_names_are_found_outside_strings_and_brackets_must_balance() {
    let expr = r#"histogram_quantile(0.9, sum by (le) (rate(vecdrop_batch_embed_seconds_bucket{pipeline=~"vecdrop_x|(a"}[5m])))
        / on() time() - vecdrop_last_success_timestamp_seconds"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(names, ["vecdrop_batch_embed_seconds_bucket", "vecdrop_last_success_timestamp_seconds"]);
    assert!(balanced(expr).is_ok());
    assert!(balanced("sum(rate(x[5m])").is_err());
    assert!(balanced("x{a=\"b\"]").is_err());
    assert!(balanced("x)").is_err());

    let exposition = Exposition::parse(
        "# TYPE vecdrop_files counter\nvecdrop_files_total{outcome=\"x\"} 1\n# TYPE vecdrop_t_seconds histogram\n\
         vecdrop_t_seconds_bucket{le=\"+Inf\"} 1\n# TYPE vecdrop_q gauge\nvecdrop_q 0\n# TYPE vecdrop_empty counter\n# EOF\n",
    );
    for served in ["vecdrop_files_total", "vecdrop_t_seconds_bucket", "vecdrop_q"] {
        assert_eq!(exposition.missing(served), None, "{served}");
    }
    for absent in
        ["vecdrop_files", "vecdrop_q_total", "vecdrop_files_bucket", "vecdrop_t_seconds_count", "vecdrop_empty_total", "vecdrop_nope"]
    {
        assert!(exposition.missing(absent).is_some(), "{absent}");
    }
}

#[test]
fn alert_rules_have_the_structure_prometheus_loads() {
    let rules = alert_rules();
    assert!(!rules.groups.is_empty());
    let mut alerts = BTreeSet::new();
    for group in &rules.groups {
        assert!(!group.name.is_empty() && !group.rules.is_empty(), "group {}", group.name);
        for rule in &group.rules {
            assert!(alerts.insert(rule.alert.clone()), "alert {} is defined twice", rule.alert);
            assert!(rule.alert.starts_with("Vecdrop"), "{}", rule.alert);
            if let Err(error) = balanced(&rule.expr) {
                panic!("{}: expr is not balanced: {error}\n{}", rule.alert, rule.expr);
            }
            assert!(!metric_names(&rule.expr).is_empty(), "{} names no vecdrop metric", rule.alert);
            assert!(humantime::parse_duration(&rule.pending).is_ok(), "{}: for: {:?}", rule.alert, rule.pending);
            let severity = rule.labels.get("severity").map(String::as_str);
            assert!(matches!(severity, Some("critical" | "warning" | "info")), "{}: severity {severity:?}", rule.alert);
            for annotation in ["summary", "description"] {
                let text = rule.annotations.get(annotation).map(|text| text.trim()).unwrap_or_default();
                assert!(!text.is_empty(), "{}: annotations.{annotation}", rule.alert);
                assert_eq!(text.matches("{{").count(), text.matches("}}").count(), "{}: annotations.{annotation} templates", rule.alert);
            }
        }
    }
    for expected in ["VecdropImportStalled", "VecdropFilesFailing", "VecdropMilvusUnreachable", "VecdropDeadLettersGrowing"] {
        assert!(alerts.contains(expected), "{expected} is missing");
    }
    assert!(alerts.contains("VecdropRefusedDropFolderEntries"));
}

#[test]
fn every_dashboard_panel_queries_the_prometheus_input() {
    let dashboard = dashboard();
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(inputs.iter().any(|input| input["name"] == "DS_PROMETHEUS" && input["pluginId"] == "prometheus"), "{inputs:?}");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|version| version >= 36), "schemaVersion");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "{title}: duplicate id");
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}: datasource");
        let targets = panel["targets"].as_array().filter(|targets| !targets.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("{title}: no targets"));
        let mut references = BTreeSet::new();
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title}: a target without expr"));
            assert!(balanced(expr).is_ok(), "{title}: {expr}");
            assert!(!metric_names(expr).is_empty(), "{title}: {expr} names no vecdrop metric");
            assert!(references.insert(target["refId"].as_str().expect("refId").to_owned()), "{title}: duplicate refId");
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}: target datasource");
        }
    }
    let all: BTreeSet<String> = dashboard_expressions(&dashboard).iter().flat_map(|expr| metric_names(expr)).collect();
    for wanted in [
        "vecdrop_rows_imported_total",
        "vecdrop_rows_rejected_total",
        "vecdrop_rows_unchanged_total",
        "vecdrop_queue_depth",
        "vecdrop_files_in_flight",
        "vecdrop_batch_embed_seconds_bucket",
        "vecdrop_batch_upsert_seconds_bucket",
        "vecdrop_milvus_reachable",
        "vecdrop_last_success_timestamp_seconds",
        "vecdrop_schedule_last_success_timestamp_seconds",
        "vecdrop_refused_entries_total",
        "vecdrop_milvus_retries_total",
    ] {
        assert!(all.contains(wanted), "the dashboard does not show {wanted}");
    }
}

#[test]
fn the_daemon_serves_every_metric_the_dashboard_and_the_alerts_name() {
    let collection = unique_collection("operator_kit");
    let status = free_address();
    let config = TestConfig::with_sections(
        &collection,
        "id_field = \"id\"\nwatch = [\"drop\"]\npaths = [\"exports/*.csv\"]\nschedule = \"*/2 * * * * *\"",
        &daemon_sections(&status, ""),
    );
    let [drop, exports, outside] = ["drop", "exports", "outside"].map(|name| config.dir.path().join(name));
    for dir in [&drop, &exports, &outside] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(exports.join("faq.csv"), "id,text\nf1,how do lighthouses work\nf2,why are canals narrow\n").unwrap();
    let daemon = Daemon::start(&config, &status);
    std::fs::write(outside.join("notes.csv"), "id,text\nn1,a note about rivers\nn2,a note about mountains\n").unwrap();
    std::fs::rename(outside.join("notes.csv"), drop.join("notes.csv")).unwrap();

    let schedule_success = "vecdrop_schedule_last_success_timestamp_seconds{pipeline=\"test\"}";
    daemon.wait_for("the dropped file and a scheduled run", Duration::from_secs(180), |daemon| {
        done_files(&drop).contains("notes.csv") && daemon.metric_opt(schedule_success).is_some()
    });

    let (code, headers, body) = raw_get(daemon.status_address(), "/metrics");
    assert_eq!(code, 200, "{body}");
    assert_eq!(headers.get("content-type").map(String::as_str), Some(OPENMETRICS), "{headers:?}");
    assert!(body.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF:\n{body}");
    let exposition = Exposition::parse(&body);

    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for expr in dashboard_expressions(&dashboard()) {
        for name in metric_names(&expr) {
            wanted.entry(name).or_insert_with(|| "the dashboard".to_owned());
        }
    }
    for rule in alert_rules().groups.iter().flat_map(|group| &group.rules) {
        for name in metric_names(&rule.expr) {
            wanted.entry(name).or_insert_with(|| format!("alert {}", rule.alert));
        }
    }
    assert!(wanted.len() >= 15, "{wanted:?}");
    let missing: Vec<String> =
        wanted.iter().filter_map(|(name, user)| exposition.missing(name).map(|why| format!("{why} (used by {user})"))).collect();
    assert!(missing.is_empty(), "not served:\n{}\n/metrics:\n{body}", missing.join("\n"));

    let version = format!("vecdrop_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(daemon.metric_opt(&version), Some(1.0));
    let now = unix_now();
    for success in ["vecdrop_last_success_timestamp_seconds{pipeline=\"test\"}", schedule_success] {
        let at = daemon.metric_opt(success).unwrap_or_else(|| panic!("{success} is missing"));
        assert!(at > now - 300.0 && at <= now + 1.0, "{success} = {at}, now {now}");
    }
    assert!(daemon.metric("vecdrop_ledger_files{pipeline=\"test\",state=\"imported\"}") >= 2.0, "{}", daemon.diagnosis());
    assert_eq!(daemon.metric_opt("vecdrop_refused_entries_total{pipeline=\"test\",cause=\"symlink\"}"), Some(0.0));
    assert!(daemon.metric_opt("vecdrop_milvus_retries_total{operation=\"upsert\"}").is_some());
    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}
