//! `sluice-loadgen`: the mock OpenAI upstream (`sluice-loadgen mock`) used by Sluice's tests and
//! benchmarks. (The load generator itself, `run`, comes with the benchmarking issue.)
//!
//! Output contract: the ready line (`listening on ADDR`) is the only thing written to stdout;
//! logs go to stderr (`RUST_LOG` filters them, default `info`).
#![forbid(unsafe_code)]

mod mock;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "sluice-loadgen",
    version,
    about = "Mock OpenAI upstream (and, later, load generator) for Sluice"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve an OpenAI-compatible mock upstream: chat completions, completions, embeddings and
    /// models in the exact OpenAI wire format, with pacing and fault injection for tests.
    Mock(mock::MockArgs),
}

fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Mock(args) => match mock::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice-loadgen mock: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_documents_every_mock_flag() {
        let mut cmd = Cli::command();
        let mock = cmd.find_subcommand_mut("mock").unwrap();
        let help = mock.render_long_help().to_string();
        for flag in [
            "--listen",
            "--workers",
            "--io-driver",
            "--tokens",
            "--tokens-per-second",
            "--itl-ms",
            "--ttft-ms",
            "--delay-headers-ms",
            "--fault-status",
            "--fault-rate",
            "--drop-after",
            "--stall-after",
            "--no-usage",
            "--require-key",
            "--models",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
        }
        for arg in mock.get_arguments() {
            if arg.get_id() != "help" {
                assert!(
                    arg.get_help().is_some(),
                    "{} has no help text",
                    arg.get_id()
                );
            }
        }
    }
}
