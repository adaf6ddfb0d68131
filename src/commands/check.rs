//! `vecdrop check`: everything `vecdrop run` needs before it takes a file — the config, the
//! plugins, the model, Milvus and each pipeline's collection, drop folders and schedule paths —
//! checked without importing or creating anything, one line per check.

use std::path::Path;

use super::{connect_milvus, load_embedder, load_plugins, CommandError, EXIT_FATAL, EXIT_OK};
use crate::bulk::store::StagingStore;
use crate::discover::schedule::expand;
use crate::settings::{PipelineSettings, Settings};
use crate::sink::{CollectionSpec, ImportApi, MilvusSink};

/// A sentence embedded once to prove the model runs, not only loads.
const PROBE_TEXT: &str = "vecdrop checks that the model embeds this sentence.";

/// Runs every check and prints `ok` / `FAIL` lines. Returns [`EXIT_OK`] when all pass and
/// [`EXIT_FATAL`] otherwise; a config that does not load never gets here (exit 2 from
/// [`Settings::load`]).
pub async fn check(settings: Settings) -> Result<u8, CommandError> {
    let mut report = Report::default();
    report.pass("config", &format!("{} ({} pipelines)", settings.path.display(), settings.pipelines.len()));
    match load_plugins(&settings).await {
        Ok(registry) if registry.format_names().is_empty() => report.pass("plugins", "none configured"),
        Ok(registry) => report.pass("plugins", &format!("formats {:?}", registry.format_names())),
        Err(error) => report.fail("plugins", &error.to_string()),
    }
    let embedder = match load_embedder(&settings).await {
        Ok(embedder) => match embedder.embed(vec![PROBE_TEXT.to_owned()]).await {
            Ok(vectors) if vectors.len() == 1 && vectors[0].len() == embedder.dimension() => {
                report.pass("model", &format!("{} ({}-d, embeds)", embedder.identity(), embedder.dimension()));
                report.pass("model batch", &embedder.shape_choice().describe());
                Some(embedder)
            }
            Ok(_) => {
                report.fail("model", "the probe text came back with the wrong shape");
                None
            }
            Err(error) => {
                report.fail("model", &format!("loads but cannot embed: {error}"));
                None
            }
        },
        Err(error) => {
            report.fail("model", &error.to_string());
            None
        }
    };
    match connect_milvus(&settings).await {
        Ok(sink) => {
            report.pass("milvus", &settings.milvus.uri);
            if let Some(embedder) = &embedder {
                for pipeline in &settings.pipelines {
                    let spec = CollectionSpec::of(pipeline, embedder.dimension(), embedder.identity());
                    check_collection(&mut report, &sink, pipeline, &spec).await;
                }
            }
            for pipeline in &settings.pipelines {
                check_bulk_import(&mut report, &sink, pipeline).await;
            }
        }
        Err(error) => report.fail("milvus", &error.to_string()),
    }
    for pipeline in &settings.pipelines {
        check_sources(&mut report, pipeline);
    }
    print!("{}", report.text);
    if report.failures == 0 {
        println!("all {} checks passed", report.checks);
        Ok(EXIT_OK)
    } else {
        println!("{} of {} checks failed", report.failures, report.checks);
        Ok(EXIT_FATAL)
    }
}

async fn check_collection(report: &mut Report, sink: &MilvusSink, pipeline: &PipelineSettings, spec: &CollectionSpec) {
    let subject = format!("pipeline {}", pipeline.name);
    match sink.inspect_collection(spec).await {
        Ok(true) => report.pass(&subject, &format!("collection {} exists and fits (fields, model)", spec.collection.name)),
        Ok(false) => {
            report.pass(&subject, &format!("collection {} does not exist yet; the first import creates it", spec.collection.name));
            report.detail(&format!("schema it would create: {}", spec.describe_new()));
        }
        Err(error) => report.fail(&subject, &error.to_string()),
    }
}

/// A pipeline with `bulk_import`: which import API the server offers (none: the pipeline upserts)
/// and whether the staging location can be written (folder) or answers (bucket).
async fn check_bulk_import(report: &mut Report, sink: &MilvusSink, pipeline: &PipelineSettings) {
    let Some(bulk) = &pipeline.bulk_import else { return };
    let subject = format!("pipeline {} bulk import", pipeline.name);
    match sink.import_api().await {
        Ok(ImportApi::Unsupported { version }) => {
            report.pass(&subject, &format!("the server ({version}) has no bulk import: files of ≥ {} rows are upserted", bulk.min_rows))
        }
        Ok(api) => report.pass(&subject, &format!("files of ≥ {} rows through the {} import API", bulk.min_rows, api.label())),
        Err(error) => report.fail(&subject, &error.to_string()),
    }
    let subject = format!("pipeline {} bulk staging", pipeline.name);
    let probed = match StagingStore::open(&bulk.staging) {
        Ok(store) => store.probe().await,
        Err(error) => Err(error),
    };
    match probed {
        Ok(detail) => report.pass(&subject, &detail),
        Err(error) => report.fail(&subject, &error.to_string()),
    }
}

/// Drop folders must be directories vecdrop can write (files are moved out of them); schedule
/// globs should match something (a pattern matching nothing is reported, not failed: the export
/// may not have run yet).
fn check_sources(report: &mut Report, pipeline: &PipelineSettings) {
    for folder in &pipeline.watch {
        let subject = format!("pipeline {} watch", pipeline.name);
        match writable_directory(folder) {
            Ok(()) => report.pass(&subject, &folder.display().to_string()),
            Err(reason) => report.fail(&subject, &format!("{}: {reason}", folder.display())),
        }
    }
    if let Some(schedule) = &pipeline.schedule {
        let files = expand(&schedule.paths, schedule.links);
        let detail = format!("\"{}\" ({}): {:?} match {} file(s) now", schedule.cron, schedule.timezone, schedule.paths, files.len());
        report.pass(&format!("pipeline {} schedule", pipeline.name), &detail);
    }
}

fn writable_directory(folder: &Path) -> Result<(), String> {
    let metadata = std::fs::metadata(folder).map_err(|error| format!("{error} (create it, or fix `watch`)"))?;
    if !metadata.is_dir() {
        return Err("not a directory".to_owned());
    }
    let probe = folder.join(format!(".vecdrop-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|error| format!("not writable: {error} (imported files are moved out of it)"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[derive(Default)]
struct Report {
    text: String,
    checks: usize,
    failures: usize,
}

impl Report {
    fn pass(&mut self, subject: &str, detail: &str) {
        self.checks += 1;
        self.text.push_str(&format!("ok    {subject}: {detail}\n"));
    }

    /// A line under the last check, not counted.
    fn detail(&mut self, text: &str) {
        self.text.push_str(&format!("        {text}\n"));
    }

    fn fail(&mut self, subject: &str, detail: &str) {
        self.checks += 1;
        self.failures += 1;
        self.text.push_str(&format!("FAIL  {subject}: {detail}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_folder_must_exist_and_be_a_writable_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(writable_directory(dir.path()), Ok(()));
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "the probe file is removed");
        let missing = writable_directory(&dir.path().join("absent")).unwrap_err();
        assert!(missing.contains("create it"), "{missing}");
        let file = dir.path().join("file.csv");
        std::fs::write(&file, "a\n").unwrap();
        assert_eq!(writable_directory(&file), Err("not a directory".to_owned()));
    }

    #[test]
    fn the_report_counts_failures() {
        let mut report = Report::default();
        report.pass("config", "x");
        report.fail("milvus", "unreachable");
        assert_eq!((report.checks, report.failures), (2, 1));
        assert_eq!(report.text, "ok    config: x\nFAIL  milvus: unreachable\n");
    }
}
