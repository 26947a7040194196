//! One SSH connection: who it is (its public key, nothing else), its one
//! session channel with a pseudo-terminal, and the shop running on it.
//!
//! Only `publickey` logs in: `none`, passwords and keyboard-interactive are
//! refused and told to use a key (the banner every client sees before
//! logging in says how to make one). A key is accepted as it is offered:
//! owning it is the whole identity ([`crate::identity`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::Event;
use russh::keys::{Algorithm, HashAlg};
use russh::server::{
    Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Pty};
use shop_shared::sync::lock;
use shop_tui::input::Decoder;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::server::Shared;
use crate::terminal::{self, Running, Terminal};

/// What every client is shown before logging in.
pub const BANNER: &str = "shop: your SSH key is your account here, no password needed.\r\n\
     It takes Ed25519 and ECDSA keys (not RSA). None yet? Make one with \
     `ssh-keygen -t ed25519` and connect again.\r\n";

/// How long a connection gets to close by itself once its shop ended or
/// the server began stopping; then it is cut.
pub const GRACE: Duration = Duration::from_secs(5);

/// How far a connection got, for its task's deadlines: a connection is
/// for one shop, so one that has not started it by the login deadline,
/// or lingers after it ended, is cut.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// A key logged in and the shop started on its terminal.
    pub started: AtomicBool,
    /// The shop ended (and its channel was closed).
    pub ended: Notify,
}

/// One connection's state, as russh calls it back.
pub struct Connection {
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// Where the connection is: the connection's task watches it.
    lifecycle: Arc<Lifecycle>,
    stopping: watch::Receiver<bool>,
    /// The customer: the profile named by the key's fingerprint.
    customer: Option<String>,
    session: Option<SessionChannel>,
}

/// The connection's session channel (one per connection: more are refused).
struct SessionChannel {
    id: ChannelId,
    terminal: Option<Terminal>,
    color: bool,
    shop: Option<(Running, Decoder)>,
}

impl Connection {
    pub fn new(
        peer: SocketAddr,
        shared: Arc<Shared>,
        lifecycle: Arc<Lifecycle>,
        stopping: watch::Receiver<bool>,
    ) -> Connection {
        Connection {
            peer,
            shared,
            lifecycle,
            stopping,
            customer: None,
            session: None,
        }
    }

    fn session_of(&mut self, channel: ChannelId) -> Option<&mut SessionChannel> {
        self.session
            .as_mut()
            .filter(|session| session.id == channel)
    }

    /// The shop running on `channel`, with its key decoder.
    fn shop_on(&mut self, channel: ChannelId) -> Option<&mut (Running, Decoder)> {
        self.session_of(channel)
            .and_then(|session| session.shop.as_mut())
    }
}

/// Ends a channel with a message on its screen and an exit status.
fn refuse(session: &mut Session, channel: ChannelId, message: &str) -> Result<(), russh::Error> {
    session.data(channel, format!("shop-ssh: {message}\r\n").into_bytes())?;
    session.exit_status_request(channel, 2)?;
    session.eof(channel)?;
    session.close(channel)
}

fn only_keys() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
        partial_success: false,
    }
}

/// The largest screen drawn, whatever the client claims: the shop keeps
/// two buffers of columns × rows cells, about 100 bytes a cell with what a
/// frame costs to write, so an unbounded claim (65535 × 65535) would be
/// gigabytes, and 1000 × 500 was 49 MB a session. 400 × 150 is about 6 MB,
/// and more than a full-screen terminal on a large monitor shows.
const MAX_COLUMNS: u32 = 400;
const MAX_ROWS: u32 = 150;

/// A screen size from the client (`pty-req`, `window-change`), capped.
fn screen_size(columns: u32, rows: u32) -> (u16, u16) {
    let capped = |value: u32, most: u32| u16::try_from(value.min(most)).unwrap_or(u16::MAX);
    (capped(columns, MAX_COLUMNS), capped(rows, MAX_ROWS))
}

impl Handler for Connection {
    type Error = russh::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(Some(BANNER.to_owned()))
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(only_keys())
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        tracing::info!(peer = %self.peer, user, "refused a password: only SSH keys log in");
        Ok(only_keys())
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(only_keys())
    }

    /// A key of a type the shop does not take (RSA) is refused when
    /// offered, before the client signs with it (or asks for its
    /// passphrase).
    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match offer.algorithm {
            Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => Auth::Accept,
            _ => only_keys(),
        })
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let customer = crate::identity::profile_of(key.public_key);
        tracing::info!(
            peer = %self.peer,
            fingerprint = %key.public_key.fingerprint(HashAlg::Sha256),
            "logged in with a key"
        );
        self.customer = Some(customer);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.session.is_some() || self.customer.is_none() {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.session = Some(SessionChannel {
            id: channel.id(),
            terminal: None,
            color: true,
            shop: None,
        });
        // The channel's own message queue is not read: this handler gets
        // every request and every byte.
        drop(channel);
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        columns: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.session_of(channel) {
            Some(open) if open.shop.is_none() => {
                open.terminal = Some(Terminal {
                    size: screen_size(columns, rows),
                    color: true,
                });
                session.channel_success(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // https://no-color.org, when the client sends it (SendEnv NO_COLOR).
        if name == "NO_COLOR"
            && !value.is_empty()
            && let Some(open) = self.session_of(channel)
        {
            open.color = false;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(customer), Some(open)) = (self.customer.clone(), self.session.as_mut()) else {
            return session.channel_failure(channel);
        };
        if open.id != channel || open.shop.is_some() {
            return session.channel_failure(channel);
        }
        let Some(mut terminal) = open.terminal else {
            session.channel_success(channel)?;
            return refuse(
                session,
                channel,
                "the shop needs a terminal: connect with `ssh -t` (or without -T)",
            );
        };
        terminal.color = open.color;
        session.channel_success(channel)?;
        tracing::info!(peer = %self.peer, customer = %customer, "session started");
        self.lifecycle.started.store(true, Ordering::Release);
        let running = terminal::start(
            session.handle(),
            channel,
            terminal,
            customer,
            self.shared.clone(),
            self.stopping.clone(),
            self.lifecycle.clone(),
        );
        open.shop = Some((running, Decoder::new()));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        refuse(
            session,
            channel,
            "the shop takes no commands: connect with `ssh -p PORT HOST` alone (for scripts, use the `shop` command)",
        )
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some((running, decoder)) = self.shop_on(channel) {
            let events = decoder.feed(data);
            if !events.is_empty() {
                *lock(&running.touched) = Instant::now();
            }
            // Waiting here would hold up the connection's output too (its
            // frames go through this same loop), ending a session that
            // reads its screen as one that does not.
            running.queue(events);
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        columns: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (columns, rows) = screen_size(columns, rows);
        if let Some((running, _)) = self.shop_on(channel) {
            running.queue([Event::Resize(columns, rows)]);
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // No more input: the shop ends (dropping its input ends it).
        if let Some(open) = self.session_of(channel) {
            open.shop = None;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.session.as_ref().is_some_and(|open| open.id == channel) {
            self.session = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screen_size_is_taken_as_claimed_up_to_a_bound() {
        assert_eq!(screen_size(120, 40), (120, 40));
        assert_eq!(screen_size(0, 0), (0, 0));
        assert_eq!(screen_size(u32::MAX, 65_535), (400, 150));
    }
}
