//! The `vecdrop` binary: parses the command line, sets up logging, runs a command, maps its
//! outcome to an exit code (0 ok, 1 fatal, 2 usage/config, 3 records dead-lettered).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use vecdrop::commands::{self, CommandError};
use vecdrop::settings::Settings;

#[derive(Parser)]
#[command(name = "vecdrop", version, about = "Gets CSV, JSON, JSONL and Parquet files into Milvus, embedded, exactly once.")]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: drop folders, schedules, status endpoint.
    Run {
        /// Config file (default: $VECDROP_CONFIG, ./vecdrop.toml, /etc/vecdrop/vecdrop.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check the config, plugins, model, Milvus, each pipeline's collection and drop folders
    /// without importing or creating anything (exit 0 when all pass, 1 otherwise).
    Check {
        /// Config file (default: $VECDROP_CONFIG, ./vecdrop.toml, /etc/vecdrop/vecdrop.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Import files once, with a progress bar and a summary.
    Import {
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Pipeline to use (required when the config has several).
        #[arg(long)]
        pipeline: Option<String>,
        /// Import again even if the same content was imported before; every row is embedded and
        /// written again (no unchanged-row skip).
        #[arg(long)]
        force: bool,
        /// Files to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Per-file state from the ledger.
    Status {
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Embed TEXT and print the nearest rows.
    Search {
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Pipeline whose collection is searched.
        #[arg(long)]
        pipeline: Option<String>,
        /// Number of rows.
        #[arg(short, long, default_value_t = 5)]
        k: usize,
        /// One JSON object per hit.
        #[arg(long)]
        json: bool,
        /// What to look for.
        text: String,
    },
    /// Measure throughput: raw model, import with embedding, bare SDK upserts, import of rows with
    /// vectors, int8 model, re-import of a changed file; ratios and peak memory per phase.
    Bench {
        /// Config file (optional: without one the defaults are used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Milvus server (overrides the config's milvus.uri).
        #[arg(long, env = "MILVUS_URI")]
        milvus_uri: Option<String>,
        /// Small corpus: seconds, for the test suite.
        #[arg(long)]
        smoke: bool,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write the JSON report to this file.
        #[arg(long)]
        json_out: Option<PathBuf>,
        /// Texts to embed (default 10000; smoke 256).
        #[arg(long)]
        rows: Option<usize>,
        /// Rows with precomputed vectors (default 100000; smoke 2000).
        #[arg(long)]
        vector_rows: Option<usize>,
        /// Words per generated text (default 25, about 37 word pieces).
        #[arg(long)]
        words: Option<usize>,
        /// Rows per pipeline batch and SDK request (default 512; smoke 128).
        #[arg(long)]
        batch_rows: Option<usize>,
        /// Directory for the generated files (default: a temporary one).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Keep the generated files and the bench's collections.
        #[arg(long)]
        keep: bool,
    },
    /// WASM format plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a plugin in its sandbox; print its name, version, formats and schema.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Config handed to the plugin's `open`, as a JSON object (as `[[plugins]] config`).
        #[arg(long)]
        plugin_config: Option<String>,
    },
}

fn main() -> ExitCode {
    commands::mark_process_start();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

async fn dispatch(command: Command) -> Result<u8, CommandError> {
    match command {
        Command::Run { config } => commands::run(Settings::load(config.as_deref())?, shutdown_signal()).await,
        Command::Check { config } => commands::check(Settings::load(config.as_deref())?).await,
        Command::Import { config, pipeline, force, files } => {
            commands::import(Settings::load(config.as_deref())?, pipeline.as_deref(), force, &files).await
        }
        Command::Status { config, json } => commands::status(&Settings::load(config.as_deref())?, json),
        Command::Search { config, pipeline, k, json, text } => {
            if k == 0 {
                return Err(CommandError::Usage("-k must be at least 1".to_owned()));
            }
            commands::search(Settings::load(config.as_deref())?, pipeline.as_deref(), k, &text, json).await
        }
        Command::Bench { config, milvus_uri, smoke, json, json_out, rows, vector_rows, words, batch_rows, work_dir, keep } => {
            let milvus_uri = milvus_uri.filter(|uri| !uri.is_empty());
            commands::bench(commands::BenchArgs {
                config,
                milvus_uri,
                smoke,
                json,
                json_out,
                rows,
                vector_rows,
                words,
                batch_rows,
                work_dir,
                keep,
            })
            .await
        }
        Command::Plugin { command: PluginCommand::Check { file, plugin_config } } => {
            commands::plugin_check(&file, plugin_config.as_deref()).await
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    // Cancel-safe: whichever signal comes first ends the wait; the other is not needed again.
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VECDROP_LOG")
        // vecdrop's own events at INFO; every other crate (scheduler, gRPC, ONNX Runtime) at WARN.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,vecdrop=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
