//! The `vecdrop` binary: parses the command line, sets up logging, runs a command, maps its
//! outcome to an exit code (0 ok, 1 fatal, 2 usage/config, 3 records dead-lettered).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::{ArgAction, CommandFactory, Parser, Subcommand, ValueEnum};
use vecdrop::commands::{self, CommandError};
use vecdrop::settings::Settings;

/// Shown after `vecdrop --help`: the environment variables and the exit codes.
const AFTER_HELP: &str = "\
Environment:
  VECDROP_CONFIG          the config file when --config is not given
                          (then ./vecdrop.toml, then /etc/vecdrop/vecdrop.toml)
  VECDROP_LOG             a tracing filter, e.g. `debug` or `vecdrop=debug,tonic=info`;
                          when set it wins over -v / -q
  VECDROP__SECTION__KEY   overrides a config key, e.g. VECDROP__MILVUS__URI=http://db:19530

Exit codes: 0 success, 1 fatal error, 2 bad usage or config, 3 finished but some records were
dead-lettered.";

#[derive(Parser)]
#[command(
    name = "vecdrop",
    version,
    about = "Gets CSV, JSON, JSONL and Parquet files into Milvus, embedded, exactly once.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Config file (default: ./vecdrop.toml, then /etc/vecdrop/vecdrop.toml).
    #[arg(long, global = true, env = "VECDROP_CONFIG", value_name = "FILE", value_parser = config_path())]
    config: Option<PathBuf>,
    /// More log detail, repeatable: -v vecdrop's debug events, -vv its trace events and other
    /// crates' info, -vvv everything. $VECDROP_LOG wins when set.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log detail, repeatable: -q warnings only, -qq errors only. $VECDROP_LOG wins when set.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--config`'s value: a path. An empty one (most often an exported but empty `VECDROP_CONFIG`)
/// is refused with a hint rather than clap's "a value is required".
fn config_path() -> impl TypedValueParser<Value = PathBuf> {
    OsStringValueParser::new().try_map(|value| {
        if value.is_empty() {
            Err("the config path is empty: name a file, or unset VECDROP_CONFIG")
        } else {
            Ok(PathBuf::from(value))
        }
    })
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: drop folders, schedules, status endpoint.
    Run,
    /// Check the config, plugins, model, Milvus, each pipeline's collection and drop folders
    /// without importing or creating anything (exit 0 when all pass, 1 otherwise).
    Check,
    /// Import files once, with a progress bar and a summary.
    Import {
        /// Pipeline to use (required when the config has several).
        #[arg(long)]
        pipeline: Option<String>,
        /// Import again even if the same content was imported before; every row is embedded and
        /// written again (no unchanged-row skip).
        #[arg(long)]
        force: bool,
        /// Files to import; a directory stands for its files (sorted, not its subdirectories, no
        /// dotfiles or .part/.tmp/.crdownload names), a quoted glob pattern such as 'data/*.csv'
        /// for the files it matches (a pattern matching none is an error).
        #[arg(required = true, value_name = "PATH")]
        files: Vec<PathBuf>,
    },
    /// Per-file state from the ledger.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Embed TEXT and print the nearest rows.
    Search {
        /// Pipeline whose collection is searched.
        #[arg(long)]
        pipeline: Option<String>,
        /// Number of rows.
        #[arg(short = 'k', long = "limit", value_name = "N", default_value_t = 5)]
        limit: usize,
        /// One JSON object per hit.
        #[arg(long)]
        json: bool,
        /// What to look for.
        text: String,
    },
    /// Measure throughput: the model at its best fixed batch, raw fp32 and int8 models (in
    /// alternating rounds), import with embedding, bare SDK upserts, import of rows with vectors,
    /// re-import of a changed file, daemon, bulk import; ratios and peak memory per phase.
    Bench {
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
        /// Rows with vectors of the bulk-import phases, upserted and bulk-imported (default
        /// 200,000; smoke 2,000; 0 skips them).
        #[arg(long)]
        bulk_rows: Option<usize>,
        /// Words per generated text (default 25, about 39 word pieces).
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
    /// Print a completion script for SHELL to stdout, e.g.
    /// `vecdrop completions bash > ~/.local/share/bash-completion/completions/vecdrop`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, e.g. `vecdrop man | man -l -`.
    Man,
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
    init_logging(cli.log_format, verbosity_filter(cli.verbose, cli.quiet));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli.command, cli.config)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

async fn dispatch(command: Command, config: Option<PathBuf>) -> Result<u8, CommandError> {
    let config = config.as_deref();
    match command {
        Command::Run => commands::run(load_settings(config)?, shutdown_signal()).await,
        Command::Check => commands::check(load_settings(config)?).await,
        Command::Import { pipeline, force, files } => commands::import(load_settings(config)?, pipeline.as_deref(), force, &files).await,
        Command::Status { json } => commands::status(&load_settings(config)?, json),
        Command::Search { pipeline, limit, json, text } => {
            if limit == 0 {
                return Err(CommandError::Usage("-k/--limit must be at least 1".to_owned()));
            }
            commands::search(load_settings(config)?, pipeline.as_deref(), limit, &text, json).await
        }
        Command::Bench { milvus_uri, smoke, json, json_out, rows, vector_rows, bulk_rows, words, batch_rows, work_dir, keep } => {
            let milvus_uri = milvus_uri.filter(|uri| !uri.is_empty());
            commands::bench(commands::BenchArgs {
                config: config.map(Path::to_path_buf),
                milvus_uri,
                smoke,
                json,
                json_out,
                rows,
                vector_rows,
                bulk_rows,
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
        Command::Completions { shell } => print_completions(shell),
        Command::Man => print_man_page(),
    }
}

/// The settings from `config` (or where [`Settings::load`] looks); which file it was is logged at
/// DEBUG (`-v`).
fn load_settings(config: Option<&Path>) -> Result<Settings, CommandError> {
    let settings = Settings::load(config)?;
    tracing::debug!(config = %settings.path.display(), pipelines = settings.pipelines.len(), "config loaded");
    Ok(settings)
}

/// Writes the completion script for `shell` to stdout.
fn print_completions(shell: clap_complete::Shell) -> Result<u8, CommandError> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vecdrop", &mut script);
    write_stdout(&script)
}

/// Writes the man page (roff) to stdout.
fn print_man_page() -> Result<u8, CommandError> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page).expect("writing to memory cannot fail");
    write_stdout(&page)
}

/// Writes `bytes` to stdout; a reader that stopped early (`vecdrop man | head`) is no error.
fn write_stdout(bytes: &[u8]) -> Result<u8, CommandError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(commands::EXIT_OK),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(commands::EXIT_OK),
        Err(error) => Err(CommandError::Other(format!("writing to stdout: {error}"))),
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

/// The `tracing` filter for `-v` (`verbose`) and `-q` (`quiet`) counts. By default vecdrop's own
/// events show from INFO and other crates' (scheduler, gRPC, ONNX Runtime) from WARN; each `-v`
/// opens one level more, each `-q` closes one.
fn verbosity_filter(verbose: u8, quiet: u8) -> &'static str {
    match i16::from(verbose) - i16::from(quiet) {
        ..=-2 => "error",
        -1 => "warn",
        0 => "warn,vecdrop=info",
        1 => "warn,vecdrop=debug",
        2 => "info,vecdrop=trace",
        _ => "trace",
    }
}

/// Logs to stderr in `format`, filtered by `$VECDROP_LOG` when it is set (and valid), else by
/// `fallback` (from `-v` / `-q`).
fn init_logging(format: LogFormat, fallback: &str) {
    let filter = match std::env::var("VECDROP_LOG") {
        Ok(value) if !value.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&value).unwrap_or_else(|error| {
            eprintln!("warning: VECDROP_LOG={value:?} is not a valid filter ({error}); using {fallback:?}");
            tracing_subscriber::EnvFilter::new(fallback)
        }),
        _ => tracing_subscriber::EnvFilter::new(fallback),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn each_v_opens_and_each_q_closes_one_log_level() {
        assert_eq!(verbosity_filter(0, 0), "warn,vecdrop=info");
        assert_eq!(verbosity_filter(1, 0), "warn,vecdrop=debug");
        assert_eq!(verbosity_filter(2, 0), "info,vecdrop=trace");
        assert_eq!(verbosity_filter(3, 0), "trace");
        assert_eq!(verbosity_filter(9, 0), "trace");
        assert_eq!(verbosity_filter(0, 1), "warn");
        assert_eq!(verbosity_filter(0, 2), "error");
        assert_eq!(verbosity_filter(0, 7), "error");
    }

    #[test]
    fn config_is_global_and_search_takes_k_or_limit() {
        for args in [["vecdrop", "--config", "a.toml", "status"], ["vecdrop", "status", "--config", "a.toml"]] {
            assert_eq!(Cli::try_parse_from(args).unwrap().config.as_deref(), Some(Path::new("a.toml")));
        }
        for args in [["vecdrop", "search", "-k", "3", "x"], ["vecdrop", "search", "--limit", "3", "x"]] {
            let Command::Search { limit, .. } = Cli::try_parse_from(args).unwrap().command else { panic!("search") };
            assert_eq!(limit, 3);
        }
        assert!(Cli::try_parse_from(["vecdrop", "search", "--k", "3", "x"]).is_err(), "--k is gone");
        assert!(Cli::try_parse_from(["vecdrop", "-v", "-q", "status"]).is_err(), "-v and -q conflict");
    }
}
