//! Command-line interface: parsing and the thin glue from a command to the
//! library. `main.rs` only calls [`main_with_args`]. The operator commands
//! (admin API clients and `send`) live in [`ops`].

pub mod ops;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::{Gateway, Listeners};

/// Exit code for an invalid configuration (EX_CONFIG-like, as linkerd does).
pub const EXIT_CONFIG: u8 = 64;

/// hookgate: verify, dedupe and durably queue webhooks, then deliver them in order.
#[derive(Debug, Parser)]
#[command(name = "hookgate", version, about)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Config file.
        #[arg(long, short, default_value = "hookgate.toml")]
        config: PathBuf,
    },
    /// Validate a config file and exit (0 = valid).
    Check {
        /// Config file.
        #[arg(long, short, default_value = "hookgate.toml")]
        config: PathBuf,
    },
    /// Search, inspect and replay stored events (admin API).
    #[command(subcommand)]
    Events(ops::EventsCommand),
    /// List and redrive dead letters (admin API).
    #[command(subcommand)]
    DeadLetters(ops::DeadLettersCommand),
    /// List, pause and resume destinations (admin API).
    #[command(subcommand)]
    Destinations(ops::DestinationsCommand),
    /// Sign a body as a source's provider would and POST it to the gateway.
    Send(ops::SendArgs),
}

/// Runs the CLI and returns the process exit code.
pub fn main_with_args(cli: Cli) -> ExitCode {
    init_logging(cli.log_format);
    match cli.command {
        Command::Events(cmd) => run_ops(ops::events(cmd)),
        Command::DeadLetters(cmd) => run_ops(ops::dead_letters(cmd)),
        Command::Destinations(cmd) => run_ops(ops::destinations(cmd)),
        Command::Send(args) => run_ops(ops::send(args)),
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} sources, {} destinations)",
                    config.display(),
                    c.sources.len(),
                    c.destinations.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Serve { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hookgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs an operator command on a small runtime and maps its error to an
/// exit code: 64 for a bad config, 2 for bad usage, 1 otherwise.
fn run_ops(command: impl std::future::Future<Output = Result<(), ops::OpsError>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookgate: {e}");
            match e {
                ops::OpsError::Config(_) => ExitCode::from(EXIT_CONFIG),
                ops::OpsError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Open state, bind, serve until SIGINT/SIGTERM.
async fn serve(config: Config) -> anyhow::Result<()> {
    let gateway = Gateway::open(config.clone(), Clock::system())?;
    let listeners = Listeners::bind(&config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind: {e}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_on(shutdown.clone()));
    gateway.serve(listeners, shutdown).await
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn signal_on(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    token.cancel();
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
