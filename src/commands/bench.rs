//! `vecdrop bench`: generates a corpus, measures the model, the imports and a bare SDK loop on
//! this machine, and prints the table (or JSON) with the ratios ARCHITECTURE.md sets targets for ("Performance targets").

use std::path::PathBuf;

use super::{CommandError, EXIT_OK};
use crate::bench::{self, BenchError, BenchOptions};
use crate::settings::raw::RawSettings;
use crate::settings::{Settings, SettingsError};

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct BenchArgs {
    /// Config file; without one (and none at the default places) the defaults are used, relative
    /// to the working directory.
    pub config: Option<PathBuf>,
    /// Milvus server; overrides the config's `milvus.uri`.
    pub milvus_uri: Option<String>,
    /// Small corpus (seconds), for `make test`.
    pub smoke: bool,
    /// Print the report as JSON instead of the table.
    pub json: bool,
    /// Also write the report as JSON to this file.
    pub json_out: Option<PathBuf>,
    /// Texts to embed (default 10,000; smoke 256).
    pub rows: Option<usize>,
    /// Rows with precomputed vectors (default 100,000; smoke 2,000).
    pub vector_rows: Option<usize>,
    /// Rows with vectors of the bulk-import phases (default 200,000; smoke 2,000; 0 skips them).
    pub bulk_rows: Option<usize>,
    /// Words per generated text (default 25, about 37 word pieces).
    pub words: Option<usize>,
    /// Rows per pipeline batch and SDK request (default 512; smoke 128).
    pub batch_rows: Option<usize>,
    /// Where the generated files go (default: a fresh directory under the system's temp dir,
    /// removed afterwards).
    pub work_dir: Option<PathBuf>,
    /// Keep the generated files and the bench's collections.
    pub keep: bool,
}

/// Runs the bench and prints its report.
pub async fn bench(args: BenchArgs) -> Result<u8, CommandError> {
    let mut settings = settings_for(&args)?;
    if let Some(uri) = &args.milvus_uri {
        settings.milvus.uri = uri.clone();
    }
    let temporary = args.work_dir.is_none();
    let work_dir = args.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("vecdrop-bench-{}", std::process::id())));
    let mut options = if args.smoke { BenchOptions::smoke(work_dir.clone()) } else { BenchOptions::full(work_dir.clone()) };
    options.corpus.text_rows = args.rows.unwrap_or(options.corpus.text_rows);
    options.corpus.vector_rows = args.vector_rows.unwrap_or(options.corpus.vector_rows);
    options.corpus.words_per_text = args.words.unwrap_or(options.corpus.words_per_text);
    options.bulk_rows = args.bulk_rows.unwrap_or(options.bulk_rows);
    options.batch_rows = args.batch_rows.unwrap_or(options.batch_rows);
    options.keep_collections = args.keep;
    if options.corpus.text_rows == 0 || options.corpus.vector_rows == 0 || options.batch_rows == 0 || options.corpus.words_per_text == 0 {
        return Err(CommandError::Usage("--rows, --vector-rows, --words and --batch-rows must be at least 1".to_owned()));
    }
    let outcome = bench::run(&settings, &options).await;
    if temporary && !args.keep {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    let report = outcome.map_err(|error| match error {
        BenchError::Usage(message) => CommandError::Usage(message),
        other => CommandError::Other(format!("bench: {other}")),
    })?;
    if let Some(path) = &args.json_out {
        let text = serde_json::to_string_pretty(&report).expect("the report serialises");
        std::fs::write(path, text + "\n").map_err(|error| CommandError::Other(format!("{}: {error}", path.display())))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("the report serialises"));
    } else {
        print!("{}", report.table());
    }
    Ok(EXIT_OK)
}

/// The config file's settings, or the defaults when no file is given or found.
fn settings_for(args: &BenchArgs) -> Result<Settings, CommandError> {
    match Settings::load(args.config.as_deref()) {
        Ok(settings) => Ok(settings),
        Err(SettingsError::NotFound) => {
            let base_dir = std::env::current_dir().map_err(|error| CommandError::Other(error.to_string()))?;
            let path = base_dir.join("vecdrop.toml");
            Ok(Settings::from_raw(RawSettings::default(), &base_dir, &path).expect("the defaults are valid"))
        }
        Err(error) => Err(error.into()),
    }
}
