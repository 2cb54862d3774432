//! The `sluice` binary: `sluice` (embedded default config), `sluice run --config FILE`,
//! `sluice check --config FILE`.

use clap::{Parser, Subcommand};
use sluice_core::config::{self, Config, IoDriver, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a thread-per-core AI gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (with no --config: the embedded default, served by the built-in mock provider).
    Run(RunArgs),
    /// Validate a config file without starting: prints a summary, or every error with its location.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// TOML config file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// IO driver: auto (io_uring, falling back to epoll), uring or epoll. Overrides the config.
    #[arg(long)]
    io_driver: Option<IoDriver>,
    /// Number of worker threads. Overrides the config.
    #[arg(long)]
    workers: Option<usize>,
}

/// Installs the log subscriber. The returned hook applies a reloaded config's `log.level`
/// (unless `RUST_LOG` is set, which always wins); the format is fixed at start-up.
fn init_logging(cfg: &Config) -> Option<sluice_core::engine::ConfigHook> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_set = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&cfg.log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match cfg.log.format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init(),
        LogFormat::Text => {
            // Colours only for a person at a terminal, never into log files or pipes.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            registry
                .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
                .init()
        }
    }
    if env_set {
        return None;
    }
    Some(Box::new(move |cfg: &Config| {
        if let Ok(f) = EnvFilter::try_new(&cfg.log.level) {
            let _ = handle.reload(f);
        }
    }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config }) => match config::load_file(&config) {
            Ok(cfg) => match sluice_core::upstream::tls::build(&cfg).and_then(|_| {
                sluice_core::auth::Authenticator::new(&cfg)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }) {
                Ok(_) => {
                    println!("{}: OK", config.display());
                    println!("{}", cfg.summary());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: error: {e}", config.display());
                    eprintln!("{}: 1 error(s)", config.display());
                    ExitCode::from(1)
                }
            },
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{}: {} error(s)", config.display(), errors.0.len());
                ExitCode::from(1)
            }
        },
        Some(Command::Run(args)) => run(args),
        None => run(RunArgs::default()),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let loaded = match &args.config {
        Some(p) => config::load_file(p),
        None => Config::embedded_default(),
    };
    let mut cfg = match loaded {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    if let Some(d) = args.io_driver {
        cfg.server.io_driver = d;
    }
    if let Some(w) = args.workers {
        cfg.server.workers = w.max(1);
    }
    let on_config = init_logging(&cfg);
    if args.config.is_none() {
        tracing::info!("no --config given: running the embedded default (model `mock` on the built-in mock provider)");
    }
    match sluice_core::engine::run(sluice_core::engine::RunOptions {
        config: cfg,
        config_path: args.config,
        on_config,
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("sluice: {e}");
            ExitCode::from(1)
        }
    }
}
