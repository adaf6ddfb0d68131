//! `etc/vecdrop.toml` is the configuration reference: every key of every section of the settings
//! structs appears in it (set or commented out), and every key it shows is one the structs accept.
//! A key added to the code without documentation fails here.

use std::collections::{BTreeMap, BTreeSet};

use serde_aux::serde_introspection::serde_introspect;
use vecdrop::settings::raw::{
    DaemonSettings, EmbeddingSettings, FieldSpec, ImportSettings, RawBulkImport, RawIndex, RawMilvus, RawPipeline, RawPlugin, RawSettings,
    RawTls, StateSettings, StatusSettings,
};

/// The sections of the reference and the keys each struct accepts.
fn sections() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("", serde_introspect::<RawSettings>()),
        ("milvus", serde_introspect::<RawMilvus>()),
        ("milvus.tls", serde_introspect::<RawTls>()),
        ("import", serde_introspect::<ImportSettings>()),
        ("embedding", serde_introspect::<EmbeddingSettings>()),
        ("state", serde_introspect::<StateSettings>()),
        ("status", serde_introspect::<StatusSettings>()),
        ("daemon", serde_introspect::<DaemonSettings>()),
        ("pipelines", serde_introspect::<RawPipeline>()),
        ("pipelines.index", serde_introspect::<RawIndex>()),
        ("pipelines.bulk_import", serde_introspect::<RawBulkImport>()),
        ("plugins", serde_introspect::<RawPlugin>()),
    ])
}

/// Section → keys shown in the reference, commented out or not (`# key = …` counts). Lines of
/// prose are told from commented keys by their shape: `key = value` with a lower-case key.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/vecdrop.toml")).unwrap();
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(header) = line.strip_prefix('[').and_then(|rest| rest.split(']').next()) {
            section = header.trim_start_matches('[').to_owned();
            keys.entry(section.clone()).or_default();
            continue;
        }
        let Some((key, _)) = line.split_once('=') else { continue };
        let key = key.trim();
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            keys.entry(section.clone()).or_default().insert(key.to_owned());
        }
    }
    keys
}

/// Keys replaced by others and still accepted with a warning: documented in prose next to their
/// successor ("Was connect_timeout_secs = 60, …") rather than as keys.
const DEPRECATED: [&str; 3] = ["connect_timeout_secs", "max_attempts", "chunk_time_ms"];

#[test]
fn every_settings_key_is_documented_in_the_reference() {
    let documented = documented();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/vecdrop.toml")).unwrap();
    let mut missing = Vec::new();
    for (section, fields) in sections() {
        for field in fields {
            if DEPRECATED.contains(field) {
                assert!(text.contains(field), "deprecated key {field} is mentioned where its successor is documented");
                continue;
            }
            let as_section = if section.is_empty() { field.to_string() } else { format!("{section}.{field}") };
            let shown = documented.get(section).is_some_and(|keys| keys.contains(*field)) || documented.contains_key(&as_section);
            if !shown {
                missing.push(as_section);
            }
        }
    }
    assert!(missing.is_empty(), "keys missing from etc/vecdrop.toml (document them there): {missing:?}");
}

#[test]
fn every_documented_key_is_one_the_settings_accept() {
    let sections = sections();
    let field_spec: BTreeSet<&str> = serde_introspect::<FieldSpec>().iter().copied().collect();
    let mut unknown = Vec::new();
    for (section, keys) in documented() {
        // `[pipelines.fields]` maps field names to FieldSpec tables; `[plugins.config]` is free-form.
        if section == "plugins.config" {
            continue;
        }
        for key in keys {
            let accepted = match sections.get(section.as_str()) {
                Some(fields) => fields.contains(&key.as_str()),
                None if section == "pipelines.fields" => true,
                None => false,
            };
            if !accepted {
                unknown.push(format!("[{section}] {key}"));
            }
        }
    }
    assert!(unknown.is_empty(), "etc/vecdrop.toml shows keys the settings do not accept: {unknown:?}");
    assert!(field_spec.contains("max_length") && field_spec.contains("optional"));
}
