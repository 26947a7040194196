//! `shop-backend`: parses settings, starts the shop, stops on Ctrl-C or
//! SIGTERM.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use shop_backend::config::{Cli, Command, EmbeddedArgs};
use shop_backend::{Application, Node, Service};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's allocator. Side by side on the build
/// machine (100,000 orders at full speed, then 200 orders/s): the backend
/// used 168 CPU seconds against 200, and held 123 MB against 134 MB
/// afterwards; glibc keeps what a burst freed in its per-thread arenas
/// (docs/performance.md, "Memory per connected customer").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("SHOP_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    // jemalloc returns freed memory to the system after a decay of 10 s,
    // but only when some thread allocates; with its background threads the
    // memory a burst took goes back after the burst, even if the process
    // is idle then (jemalloc(3), `background_thread`).
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(%error, "jemalloc's background threads did not start; freed memory goes back to the system only as the backend allocates");
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shop-backend: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (services, args) = match cli.command {
        None => return run_embedded(cli.embedded).await,
        Some(Command::All(args)) => (Service::ALL.to_vec(), args),
        Some(Command::Gateway(args)) => (vec![Service::Gateway], args),
        Some(Command::Order(args)) => (vec![Service::Order], args),
        Some(Command::Stock(args)) => (vec![Service::Stock], args),
        Some(Command::Payment(args)) => (vec![Service::Payment], args),
        Some(Command::OperatorToken(args)) => {
            let token = shop_backend::gateway::token::operator_token(&args)?;
            let mut stdout = std::io::stdout();
            writeln!(stdout, "{token}")?;
            return Ok(stdout.flush()?);
        }
    };
    // Starting waits for Kafka and PostgreSQL as long as needed; a signal
    // meanwhile stops it.
    let node = tokio::select! {
        node = Node::build(&services, args) => node?,
        _ = shutdown_signal() => return Ok(()),
    };
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "shop-backend {} listening on {}://{}",
        node.label(),
        node.scheme(),
        node.local_addr()
    )?;
    stdout.flush()?;
    node.run_until_stopped(shutdown_signal()).await
}

async fn run_embedded(config: EmbeddedArgs) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let app = Application::build(config).await?;
    let address = app.local_addr();
    let mut stdout = std::io::stdout();
    let scheme = app.scheme();
    let ws = if scheme == "https" { "wss" } else { "ws" };
    writeln!(stdout, "shop-backend listening on {scheme}://{address}")?;
    writeln!(
        stdout,
        "  WebSocket {ws}://{address}/ws · checkout {}/checkout/… · data in {}",
        app.public_url(),
        data_dir.display()
    )?;
    stdout.flush()?;
    app.run_until_stopped(shutdown_signal()).await
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
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("stopping");
}
