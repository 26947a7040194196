//! The shop on one SSH session channel: [`start`] runs `shop_tui::run`
//! with the channel as its screen, and returns where the channel's input
//! goes. The screen's bytes go to the client through a bounded queue: a
//! client that stops reading its screen for that long ends its session
//! rather than making the server hold ever more frames for it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::Event;
use russh::ChannelId;
use russh::server::Handle;
use shop_client::tokens::Tokens;
use shop_shared::sync::lock;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::connection::Lifecycle;
use crate::server::Shared;

/// Frames (one drawing each) waiting for the client; past this the
/// session ends.
const QUEUED_FRAMES: usize = 64;

/// What the connection needs to feed a running shop.
pub struct Running {
    /// Keys, clicks and resizes for the shop; dropped, the shop ends.
    /// Bounded: keys a client sends while the shop is this far behind are
    /// dropped.
    pub events: mpsc::Sender<Event>,
    /// When the customer last pressed a key (or clicked).
    pub touched: Arc<Mutex<Instant>>,
    /// A resize that found `events` full, sent before the next events:
    /// unlike a key, the newest size must not be lost.
    pub pending_resize: Option<Event>,
}

impl Running {
    /// Queues `events` without waiting (the connection's output goes
    /// through the same loop): keys beyond what the shop has not read yet
    /// are dropped, no one types 256 keys ahead; a resize is kept until
    /// there is room. Returns false when the shop has ended.
    pub fn queue(&mut self, events: impl IntoIterator<Item = Event>) -> bool {
        let waiting = self.pending_resize.take();
        for event in waiting.into_iter().chain(events) {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    if matches!(event, Event::Resize(..)) {
                        self.pending_resize = Some(event);
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }
}

/// How the terminal is, from the client's `pty-req` and `env` requests.
#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    pub size: (u16, u16),
    pub color: bool,
}

/// Why a session ended, when the customer did not end it.
enum Ending {
    Quit,
    Idle,
    Stopping,
}

/// Starts the shop for `profile` on `channel`. The task that runs it is
/// watched: a panic is logged and the channel closed, and either way the
/// connection is told the shop ended.
pub fn start(
    handle: Handle,
    channel: ChannelId,
    terminal: Terminal,
    profile: String,
    shared: Arc<Shared>,
    stopping: watch::Receiver<bool>,
    lifecycle: Arc<Lifecycle>,
) -> Running {
    let (events, incoming) = mpsc::channel(shop_tui::QUEUED_EVENTS);
    let touched = Arc::new(Mutex::new(Instant::now()));
    let place = Place {
        handle: handle.clone(),
        channel,
        terminal,
        profile: profile.clone(),
        shared,
    };
    let shop = tokio::spawn(serve(place, stopping, incoming, touched.clone()));
    tokio::spawn(async move {
        if let Err(error) = shop.await {
            tracing::error!(customer = %profile, %error, "a shop session failed");
            let _ = handle.close(channel).await;
        }
        lifecycle.ended.notify_one();
    });
    Running {
        events,
        touched,
        pending_resize: None,
    }
}

/// Where a shop runs: whose it is and which channel it draws on.
struct Place {
    handle: Handle,
    channel: ChannelId,
    terminal: Terminal,
    profile: String,
    shared: Arc<Shared>,
}

/// The shop on its channel until it ends, then the goodbye, the exit
/// status and the channel's close.
async fn serve(
    place: Place,
    mut stopping: watch::Receiver<bool>,
    incoming: mpsc::Receiver<Event>,
    touched: Arc<Mutex<Instant>>,
) {
    let Place {
        handle,
        channel,
        terminal,
        profile,
        shared,
    } = place;
    let (frames, mut queued) = mpsc::channel::<Vec<u8>>(QUEUED_FRAMES);
    let sender = handle.clone();
    let forward = tokio::spawn(async move {
        while let Some(frame) = queued.recv().await {
            if sender.data(channel, frame).await.is_err() {
                break;
            }
        }
    });
    let options = shop_tui::Options {
        gateway: shared.gateway.clone(),
        profile: profile.clone(),
        tokens: Tokens::in_dir(shared.tokens_dir.clone()),
        trust: shared.trust.clone(),
        clock: shared.clock,
        color: terminal.color,
        browser: false,
        // SSH sessions are customers' only.
        operator_token: None,
        operators: false,
    };
    let writer = ChannelWriter {
        buffer: Vec::new(),
        frames,
    };
    let mut ending = Ending::Quit;
    let stop = async {
        tokio::select! {
            () = stopped(&mut stopping) => ending = Ending::Stopping,
            () = idle(&touched, shared.idle_timeout) => ending = Ending::Idle,
        }
    };
    let result = shop_tui::run(options, writer, terminal.size, incoming, stop).await;
    // The writer is gone with `run`: what it queued goes out, then the goodbye.
    let _ = forward.await;
    let goodbye = match ending {
        Ending::Quit => None,
        Ending::Idle => Some(format!(
            "shop: closed after {} without a key press; connect again to go on shopping.",
            humantime::format_duration(shared.idle_timeout)
        )),
        Ending::Stopping => {
            Some("shop: the SSH server is stopping; connect again in a moment.".to_owned())
        }
    };
    if let Some(text) = goodbye {
        let _ = handle
            .data(channel, format!("{text}\r\n").into_bytes())
            .await;
    }
    let status = match &result {
        Ok(()) => 0,
        Err(error) => {
            tracing::info!(customer = %profile, %error, "session lost its terminal");
            1
        }
    };
    let _ = handle.exit_status_request(channel, status).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
    tracing::info!(customer = %profile, "session ended");
}

/// Completes once the server is stopping (or gone without saying so).
pub async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Completes once nothing was pressed for `timeout`.
async fn idle(touched: &Mutex<Instant>, timeout: Duration) {
    loop {
        let due = *lock(touched) + timeout;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due).await;
    }
}

/// The screen of one session: bytes gather until a flush (ratatui flushes
/// once per drawing), then go to the client as one frame.
struct ChannelWriter {
    buffer: Vec<u8>,
    frames: mpsc::Sender<Vec<u8>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let frame = std::mem::take(&mut self.buffer);
        self.frames.try_send(frame).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the SSH client does not read its screen",
            ),
            mpsc::error::TrySendError::Closed(_) => std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the SSH connection is closed",
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_beyond_a_full_queue_are_dropped_but_the_newest_size_is_kept() {
        use crossterm::event::{KeyCode, KeyEvent};
        let key = |c| Event::Key(KeyEvent::from(KeyCode::Char(c)));
        let (events, mut incoming) = mpsc::channel(2);
        let mut running = Running {
            events,
            touched: Arc::new(Mutex::new(Instant::now())),
            pending_resize: None,
        };
        assert!(running.queue([key('a'), key('b'), key('c')]));
        assert!(running.queue([Event::Resize(80, 24)]));
        assert!(running.queue([Event::Resize(120, 40)]));
        assert_eq!(incoming.try_recv().ok(), Some(key('a')));
        assert_eq!(incoming.try_recv().ok(), Some(key('b')));
        assert!(incoming.try_recv().is_err(), "c was dropped");
        // The next keys find room: the newest size goes first.
        assert!(running.queue([key('d')]));
        assert_eq!(incoming.try_recv().ok(), Some(Event::Resize(120, 40)));
        assert_eq!(incoming.try_recv().ok(), Some(key('d')));
        drop(incoming);
        assert!(!running.queue([key('e')]), "the shop has ended");
    }

    #[tokio::test]
    async fn a_flush_sends_one_frame_and_a_client_that_does_not_read_ends_the_session() {
        let (frames, mut queued) = mpsc::channel(2);
        let mut writer = ChannelWriter {
            buffer: Vec::new(),
            frames,
        };
        writer.write_all(b"ab").expect("written");
        writer.write_all(b"c").expect("written");
        writer.flush().expect("flushed");
        writer.flush().expect("nothing to send is no frame");
        assert_eq!(queued.recv().await, Some(b"abc".to_vec()));
        for _ in 0..2 {
            writer.write_all(b"x").expect("written");
            writer.flush().expect("queued");
        }
        writer.write_all(b"y").expect("written");
        let full = writer.flush().expect_err("the queue is full");
        assert_eq!(full.kind(), std::io::ErrorKind::TimedOut);
        drop(queued);
        writer.write_all(b"z").expect("written");
        assert_eq!(
            writer.flush().expect_err("closed").kind(),
            std::io::ErrorKind::BrokenPipe
        );
    }

    #[tokio::test]
    async fn idle_waits_for_the_last_key_press_plus_the_timeout() {
        let touched = Arc::new(Mutex::new(Instant::now()));
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let pressing = touched.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            *lock(&pressing) = Instant::now();
        });
        idle(&touched, timeout).await;
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
}
