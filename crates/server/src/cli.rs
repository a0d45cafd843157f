//! The `warren` command: parse configuration, set up logging, run until SIGINT/SIGTERM, then
//! close every client connection with 320 CONNECTION_FORCED.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Config};

/// Entry point of the `warren` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = &cli.check_data_dir {
        return match crate::fsck::check_data_dir(dir) {
            Ok(c) => {
                print!("{}", c.text);
                ExitCode::from(if c.clean { 0 } else { 1 })
            }
            Err(e) => {
                eprintln!("warren: cannot check {}: {e}", dir.display());
                ExitCode::from(2)
            }
        };
    }
    let config = match Config::from_cli(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
            tracing::error!("cannot create data dir {}: {e}", config.data_dir.display());
            return ExitCode::FAILURE;
        }
        let running = match crate::start(config).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                eprintln!("warren: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
