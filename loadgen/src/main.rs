//! `sluice-loadgen`: the mock OpenAI upstream (`sluice-loadgen mock`) used by Sluice's tests and
//! benchmarks, and the load generator (`sluice-loadgen run`).
//!
//! Output contract: `mock` writes only its ready line (`listening on ADDR`) to stdout; `run`
//! writes only its results table there. Logs go to stderr (`RUST_LOG` filters them; default
//! `info` for `mock`, `warn` for `run`, whose progress line shares stderr).
#![forbid(unsafe_code)]

mod mock;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "sluice-loadgen",
    version,
    about = "Load generator and mock OpenAI upstream for Sluice"
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
    /// Generate load against an OpenAI-compatible endpoint (chat, completions, embeddings;
    /// streamed or not) and report TTFT, inter-token latency, time per output token, latency,
    /// throughput and errors by class. Exit status: 0 the run completed (even with request
    /// errors), 1 nothing could be sent (no request got a response), 2 bad arguments.
    Run(run::RunArgs),
}

fn init_logging(default: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_logging("warn");
            run::run(args)
        }
        Command::Mock(args) => {
            init_logging("info");
            match mock::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sluice-loadgen mock: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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

    /// Checks that subcommand `name` documents every one of its flags and mentions each of
    /// `words` in its long help.
    fn assert_documented(name: &str, words: &[&str]) {
        let mut cmd = Cli::command();
        let sub = cmd.find_subcommand_mut(name).unwrap();
        let help = sub.render_long_help().to_string();
        for word in words {
            assert!(help.contains(word), "{word} missing from --help:\n{help}");
        }
        for arg in sub.get_arguments() {
            if arg.get_id() != "help" {
                assert!(
                    arg.get_help().is_some(),
                    "{} has no help text",
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn help_documents_every_run_flag_and_the_exit_status() {
        assert_documented(
            "run",
            &[
                "--url",
                "--model",
                "--endpoint",
                "--concurrency",
                "--duration",
                "--requests",
                "--rate",
                "--arrival",
                "--seed",
                "--stream",
                "--no-include-usage",
                "--prompt-tokens",
                "--max-tokens",
                "--api-key",
                "--header",
                "--warmup",
                "--timeout",
                "--stall-threshold",
                "--workers",
                "--io-driver",
                "--source-ips",
                "--json",
                "--quiet",
                "Exit status",
            ],
        );
    }

    #[test]
    fn help_documents_every_mock_flag() {
        assert_documented(
            "mock",
            &[
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
            ],
        );
    }
}
