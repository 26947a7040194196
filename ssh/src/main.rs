//! `shop-ssh`: parses settings, starts the SSH server, stops on Ctrl-C or
//! SIGTERM (every session is told and its terminal restored).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use shop_ssh::Server;
use shop_ssh::config::Config;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Before any thread exists: the only time the local offset can be read.
    let clock = shop_client::words::Clock::local();
    let config = Config::parse();
    let filter = EnvFilter::try_from_env("SHOP_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,russh=warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shop-ssh: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, clock)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shop-ssh: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, clock: shop_client::words::Clock) -> anyhow::Result<()> {
    let gateway = config.gateway.clone();
    let server = Server::build(config, clock).await?;
    let address = server.local_addr();
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "shop-ssh listening on {address} (ssh -p {} {}) · shop at {gateway} · host key {}",
        address.port(),
        address.ip(),
        server.fingerprint()
    )?;
    stdout.flush()?;
    server.run_until_stopped(shutdown_signal()).await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("stopping");
}
