//! `shop-tui`: the terminal shop on this terminal. Parses the flags, puts
//! the terminal in raw mode and hands it to [`shop_tui::run`] with the
//! crossterm events of this terminal; the library does the rest.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use crossterm::event::{DisableMouseCapture, Event, EventStream};
use crossterm::terminal::{LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use crossterm::{cursor, execute};
use futures_util::StreamExt;
use shop_client::tokens::{Tokens, is_valid_profile};
use shop_client::{Trust, websocket_url};
use tokio::sync::mpsc;

/// The terminal shop: live stock, a cart, your orders, payment by link or QR code.
#[derive(Debug, Parser)]
#[command(
    name = "shop-tui",
    version,
    about,
    after_help = "Examples:\n  shop-tui\n  shop-tui --gateway http://shop.example:8080 --profile bob\n  shop-tui --profile ops     a profile signed in with `shop admin login`: operator mode\n  SHOP_OPERATOR_TOKEN=op1.… shop-tui      operator mode with that token (never saved)\n  NO_COLOR=1 shop-tui      states in reverse video and bold instead of colours\n\nNeeds a terminal of at least 60×16. Press ? inside for the keys of the\nfocused pane; the bottom line hints them. Placing an order shows the\ntotal and asks first. Times are in your local time zone (TZ)."
)]
struct Args {
    /// The shop's gateway: http://host:port, ws://host:port/ws or host:port.
    #[arg(
        long,
        env = "SHOP_GATEWAY",
        default_value = "http://127.0.0.1:8080",
        value_parser = shop_client::check_gateway
    )]
    gateway: String,

    /// Which customer to be (or operator, for a profile signed in with `shop admin login`); the same
    /// profiles as the `shop` command.
    #[arg(long, env = "SHOP_PROFILE", default_value = "default", value_parser = parse_profile)]
    profile: String,

    /// Also trust the certificate authority in this PEM file, for a shop served over TLS
    /// (https:// or wss://) with a certificate from a private CA. Mozilla's roots are always trusted.
    #[arg(long, env = "SHOP_CA_CERT", value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,
}

fn parse_profile(text: &str) -> Result<String, String> {
    if is_valid_profile(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a profile name: use letters, digits, '-' or '_'"
        ))
    }
}

fn main() -> ExitCode {
    // Before any thread exists: the only time the local offset can be read.
    let clock = shop_client::words::Clock::local();
    let args = Args::parse();
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        eprintln!(
            "shop-tui: needs a terminal: its input and output must be one (for scripts and pipes, use `shop`)"
        );
        return ExitCode::FAILURE;
    }
    let trust = match Trust::new(args.ca_cert.as_deref()) {
        Ok(trust) => trust,
        Err(error) => {
            eprintln!("shop-tui: {error}");
            return ExitCode::FAILURE;
        }
    };
    let tokens = match Tokens::locate() {
        Ok(tokens) => tokens,
        Err(error) => {
            eprintln!("shop-tui: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shop-tui: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, tokens, trust, clock)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shop-tui: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Puts the terminal back as it was when dropped, on every way out,
/// panics included.
struct TerminalGuard;

impl TerminalGuard {
    fn take() -> std::io::Result<TerminalGuard> {
        enable_raw_mode()?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Ok(TerminalGuard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        cursor::Show
    );
}

async fn run(
    args: Args,
    tokens: Tokens,
    trust: Trust,
    clock: shop_client::words::Clock,
) -> std::io::Result<()> {
    let _guard = TerminalGuard::take()?;
    let size = crossterm::terminal::size()?;
    let (events, incoming) = mpsc::channel(shop_tui::QUEUED_EVENTS);
    spawn_input(events);
    let options = shop_tui::Options {
        gateway: websocket_url(&args.gateway),
        profile: args.profile,
        tokens,
        trust,
        clock,
        // https://no-color.org: set and not empty.
        color: std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty()),
        browser: true,
        // An operator's token for this run only: read from the
        // environment, never a flag (which `ps` would show), never saved.
        operator_token: std::env::var("SHOP_OPERATOR_TOKEN")
            .ok()
            .filter(|token| !token.trim().is_empty()),
        operators: true,
    };
    shop_tui::run(options, std::io::stdout(), size, incoming, signalled()).await
}

fn spawn_input(events: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        let mut stream = EventStream::new();
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { break };
            // Keys become actions in the app, which knows whether the
            // filter is taking text.
            if events.send(event).await.is_err() {
                break;
            }
        }
    });
}

/// Completes on SIGTERM or SIGHUP, to quit cleanly, restoring the terminal.
async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut terminate), Ok(mut hangup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
}
