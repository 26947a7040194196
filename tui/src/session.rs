//! One run of the terminal shop on one terminal, whichever it is: the
//! local one (`shop-tui`) or an SSH client's (`shop-ssh`). The caller
//! gives a writer for the screen, the screen's size and the input events
//! (a resize is an [`Event::Resize`]); [`run`] draws, reads, talks to the
//! shop, and returns when the customer quits, the input ends or `stop`
//! completes, leaving the screen as it found it.
//!
//! Raw mode is the caller's business: the local terminal's is set by
//! `shop-tui`, an SSH client sets its own.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute, queue, style};
use ratatui::backend::{Backend, ClearType, CrosstermBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Rect, Size};
use ratatui::{Terminal, TerminalOptions, Viewport};
use shop_client::Trust;
use shop_client::tokens::Tokens;
use shop_client::words::Clock;
use shop_shared::time::Timestamp;
use tokio::sync::mpsc;

use crate::app::{Action, App, Effect};
use crate::network::{self, Command, Settings};
use crate::ui;

/// How often countdowns and highlights move.
const TICK: Duration = Duration::from_millis(250);

/// Who the session is, where the shop is, and how to show it.
pub struct Options {
    /// The shop's WebSocket address (`shop_client::websocket_url`).
    pub gateway: String,
    /// Whose token to use from `tokens` (a profile name).
    pub profile: String,
    pub tokens: Tokens,
    /// The certificates trusted over TLS (`--ca-cert`).
    pub trust: Trust,
    /// The time zone times are shown in.
    pub clock: Clock,
    /// Colours; without them (`NO_COLOR`) states show in reverse video and bold.
    pub color: bool,
    /// Whether `O` may open a browser on this machine. Over SSH the
    /// customer's browser is on another machine: `O` then shows the pay
    /// box, whose link (clickable in most terminals) and QR code work
    /// anywhere.
    pub browser: bool,
    /// An operator's token to connect with instead of the profile's; never
    /// saved (`SHOP_OPERATOR_TOKEN`).
    pub operator_token: Option<String>,
    /// Whether an operator may sign in (with `operator_token` or a
    /// profile's saved operator token): not over SSH, where every session
    /// is a customer's.
    pub operators: bool,
}

/// Events waiting for the shop: whoever feeds [`run`] waits, or drops
/// keys, while this many are queued, so a terminal sending faster than the
/// shop reads them (a flood of keys over SSH) is not held in memory.
pub const QUEUED_EVENTS: usize = 256;

/// Runs the shop on the terminal behind `writer`, `size` (columns, rows)
/// large, until the customer quits (`q`, Ctrl-C), `events` ends, or `stop`
/// completes. The screen is switched to the alternate screen with mouse
/// reporting and bracketed paste on (so pasted text arrives as text, never
/// as keys), and back on every way out. `events` is best made with
/// [`QUEUED_EVENTS`] places.
///
/// # Errors
///
/// Writing to the terminal failed (for a remote terminal: the connection
/// dropped).
pub async fn run<W: Write>(
    options: Options,
    writer: W,
    size: (u16, u16),
    events: mpsc::Receiver<Event>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let viewport = Viewport::Fixed(Rect::new(0, 0, size.0, size.1));
    let screen = Screen {
        inner: CrosstermBackend::new(writer),
        size: Size::new(size.0, size.1),
    };
    let mut terminal = Terminal::with_options(screen, TerminalOptions { viewport })?;
    execute!(
        terminal.backend_mut().inner,
        EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste,
        cursor::Hide
    )?;
    let result = serve(options, &mut terminal, size, events, stop).await;
    let restored = execute!(
        terminal.backend_mut().inner,
        DisableMouseCapture,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        cursor::Show
    );
    result.and(restored)
}

async fn serve<W: Write>(
    options: Options,
    terminal: &mut Terminal<Screen<W>>,
    (width, height): (u16, u16),
    mut events: mpsc::Receiver<Event>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    terminal.clear()?;
    let (actions, mut incoming) = mpsc::unbounded_channel::<Action>();
    let ticks = spawn_ticks(actions.clone());
    let commands = network::spawn(
        Settings {
            gateway: options.gateway.clone(),
            profile: options.profile,
            tokens: options.tokens,
            trust: options.trust,
            operator_token: options.operator_token,
            operators: options.operators,
        },
        actions.clone(),
    );

    let mut app = App::new(&options.gateway, Timestamp::now());
    app.clock = options.clock;
    app.color = options.color;
    app.browser = options.browser;
    app.update(Action::Resize { width, height });
    tokio::pin!(stop);
    let result = loop {
        terminal.draw(|frame| ui::draw(&app, frame))?;
        let screen = Rect::new(0, 0, app.size.0, app.size.1);
        if let Some((url, pieces)) = ui::pay_link(&app, screen) {
            for (column, row, piece) in pieces {
                write_hyperlink(
                    &mut terminal.backend_mut().inner,
                    column,
                    row,
                    &url,
                    &piece,
                    app.color,
                )?;
            }
        }
        let first = tokio::select! {
            action = incoming.recv() => action,
            event = events.recv() => event.map(Action::Input),
            () = &mut stop => None,
        };
        let Some(first) = first else { break Ok(()) };
        // Take everything already waiting before drawing again.
        let mut batch = vec![first];
        while let Ok(event) = events.try_recv() {
            batch.push(Action::Input(event));
        }
        while let Ok(action) = incoming.try_recv() {
            batch.push(action);
        }
        for action in batch {
            if let Action::Input(Event::Resize(width, height)) = action {
                terminal.backend_mut().size = Size::new(width, height);
                terminal.resize(Rect::new(0, 0, width, height))?;
            }
            for effect in app.update(action) {
                carry_out(effect, &commands, &actions);
            }
        }
        if app.quit {
            break Ok(());
        }
    };
    ticks.abort();
    result
}

/// crossterm's backend on any writer, with the size the caller says:
/// crossterm's own would ask this process's terminal, which for an SSH
/// session is not the customer's (and may not exist).
struct Screen<W: Write> {
    inner: CrosstermBackend<W>,
    size: Size,
}

impl<W: Write> Backend for Screen<W> {
    type Error = std::io::Error;

    fn draw<'a, I>(&mut self, content: I) -> std::io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.inner.draw(content)
    }

    fn hide_cursor(&mut self) -> std::io::Result<()> {
        self.inner.hide_cursor()
    }

    fn show_cursor(&mut self) -> std::io::Result<()> {
        self.inner.show_cursor()
    }

    fn get_cursor_position(&mut self) -> std::io::Result<Position> {
        // Only an inline viewport asks; this one is fixed.
        Ok(Position::ORIGIN)
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> std::io::Result<()> {
        self.inner.set_cursor_position(position)
    }

    fn clear(&mut self) -> std::io::Result<()> {
        self.inner.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> std::io::Result<()> {
        self.inner.clear_region(clear_type)
    }

    fn size(&self) -> std::io::Result<Size> {
        Ok(self.size)
    }

    fn window_size(&mut self) -> std::io::Result<WindowSize> {
        Ok(WindowSize {
            columns_rows: self.size,
            pixels: Size::default(),
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Backend::flush(&mut self.inner)
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
        Effect::Admin {
            idempotency_key,
            change,
        } => {
            let _ = commands.send(Command::Admin {
                idempotency_key,
                change,
            });
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
fn write_hyperlink<W: Write>(
    backend: &mut CrosstermBackend<W>,
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
    Write::flush(backend)
}

fn spawn_ticks(actions: mpsc::UnboundedSender<Action>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(TICK);
        loop {
            ticks.tick().await;
            if actions.send(Action::Tick(Timestamp::now())).is_err() {
                break;
            }
        }
    })
}
