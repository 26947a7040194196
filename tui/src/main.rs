//! `shop-tui`: the terminal shop. Stock, cart and orders update live as
//! anyone buys; pay by link or QR code; everything through the gateway's
//! WebSocket protocol.
//!
//! The terminal, the input and tick tasks and the connection task live
//! here and in [`network`]; [`app::App`] holds the state and turns actions
//! into effects; [`ui::draw`] only renders.

mod app;
#[cfg(test)]
mod fixtures;
mod keys;
mod layout;
mod network;
mod qr;
mod ui;

use std::io::IsTerminal;
use std::io::{Stdout, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, EventStream};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute, queue, style};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use shop_client::tokens::{Tokens, is_valid_profile};
use shop_client::{Trust, websocket_url};
use shop_shared::time::Timestamp;
use tokio::sync::mpsc;

use app::{Action, App, Effect};
use network::{Command, Settings};

/// How often countdowns and highlights move.
const TICK: Duration = Duration::from_millis(250);

/// The terminal shop: live stock, a cart, your orders, payment by link or QR code.
#[derive(Debug, Parser)]
#[command(
    name = "shop-tui",
    version,
    about,
    after_help = "Examples:\n  shop-tui\n  shop-tui --gateway http://shop.example:8080 --profile bob\n  NO_COLOR=1 shop-tui      states in reverse video and bold instead of colours\n\nNeeds a terminal of at least 60×16. Press ? inside for the keys of the\nfocused pane; the bottom line hints them. Placing an order shows the\ntotal and asks first. Times are in your local time zone (TZ)."
)]
struct Args {
    /// The shop's gateway: http://host:port, ws://host:port/ws or host:port.
    #[arg(long, env = "SHOP_GATEWAY", default_value = "http://127.0.0.1:8080")]
    gateway: String,

    /// Which customer to be; the same profiles as the `shop` command.
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

/// Puts the terminal back as it was when dropped, on every way out.
struct TerminalGuard;

impl TerminalGuard {
    fn take() -> std::io::Result<TerminalGuard> {
        enable_raw_mode()?;
        let guard = TerminalGuard;
        execute!(
            std::io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            cursor::Hide
        )?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Ok(guard)
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
    let gateway = websocket_url(&args.gateway);
    let _guard = TerminalGuard::take()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;

    let (actions, mut incoming) = mpsc::unbounded_channel::<Action>();
    spawn_input(actions.clone());
    spawn_ticks(actions.clone());
    spawn_signals(actions.clone());
    let commands = network::spawn(
        Settings {
            gateway: gateway.clone(),
            profile: args.profile,
            tokens,
            trust,
        },
        actions.clone(),
    );

    let mut app = App::new(&gateway, Timestamp::now());
    app.clock = clock;
    // https://no-color.org: set and not empty.
    app.color = std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let size = terminal.size()?;
    app.update(Action::Resize {
        width: size.width,
        height: size.height,
    });
    loop {
        terminal.draw(|frame| ui::draw(&app, frame))?;
        let size = terminal.size()?;
        if let Some((url, pieces)) = ui::pay_link(&app, Rect::new(0, 0, size.width, size.height)) {
            for (column, row, piece) in pieces {
                write_hyperlink(terminal.backend_mut(), column, row, &url, &piece, app.color)?;
            }
        }
        let Some(first) = incoming.recv().await else {
            return Ok(());
        };
        // Take everything already waiting before drawing again.
        let mut batch = vec![first];
        while let Ok(action) = incoming.try_recv() {
            batch.push(action);
        }
        for action in batch {
            for effect in app.update(action) {
                carry_out(effect, &commands, &actions);
            }
        }
        if app.quit {
            return Ok(());
        }
    }
}

fn carry_out(
    effect: Effect,
    commands: &mpsc::UnboundedSender<Command>,
    actions: &mpsc::UnboundedSender<Action>,
) {
    match effect {
        Effect::PlaceOrder {
            lines,
            idempotency_key,
        } => {
            let _ = commands.send(Command::Place {
                lines,
                idempotency_key,
            });
        }
        Effect::CancelOrder(id) => {
            let _ = commands.send(Command::Cancel(id));
        }
        Effect::OpenBrowser(url) => {
            let actions = actions.clone();
            tokio::spawn(async move {
                if let Err(problem) = shop_client::browser::open(&url).await {
                    let _ = actions.send(Action::Failed(format!(
                        "could not open a browser ({problem}); p shows the link to copy"
                    )));
                }
            });
        }
    }
}

/// Writes `shown`, a piece of `url`, at (column, row) again, wrapped in an
/// OSC 8 hyperlink to `url`, so terminals that support it make it
/// clickable.
fn write_hyperlink(
    backend: &mut CrosstermBackend<Stdout>,
    column: u16,
    row: u16,
    url: &str,
    shown: &str,
    color: bool,
) -> std::io::Result<()> {
    queue!(backend, cursor::MoveTo(column, row))?;
    if color {
        queue!(backend, style::SetForegroundColor(style::Color::Cyan))?;
    }
    queue!(
        backend,
        style::SetAttribute(style::Attribute::Underlined),
        style::Print(format!("\x1b]8;;{url}\x1b\\{shown}\x1b]8;;\x1b\\")),
        style::SetAttribute(style::Attribute::Reset),
    )?;
    if color {
        queue!(backend, style::ResetColor)?;
    }
    backend.flush()
}

fn spawn_input(actions: mpsc::UnboundedSender<Action>) {
    tokio::spawn(async move {
        let mut events = EventStream::new();
        while let Some(event) = events.next().await {
            let Ok(event) = event else { break };
            // Keys become actions in the app, which knows whether the
            // filter is taking text.
            if actions.send(Action::Input(event)).is_err() {
                break;
            }
        }
    });
}

fn spawn_ticks(actions: mpsc::UnboundedSender<Action>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(TICK);
        loop {
            ticks.tick().await;
            if actions.send(Action::Tick(Timestamp::now())).is_err() {
                break;
            }
        }
    });
}

/// SIGTERM and SIGHUP quit cleanly, restoring the terminal.
fn spawn_signals(actions: mpsc::UnboundedSender<Action>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut terminate), Ok(mut hangup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
        let _ = actions.send(Action::Quit);
    });
    #[cfg(not(unix))]
    drop(actions);
}
