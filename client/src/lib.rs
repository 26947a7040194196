//! `shop-client`: the client side of shop, used by the CLI, the TUI, the
//! benchmark and the backend's tests.
//!
//! - [`Client`]: the async client of the gateway's WebSocket protocol
//!   (with [`ClientError`], [`Push`] and [`websocket_url`]).
//! - [`tokens`]: where clients keep customer tokens between runs.
//! - [`browser`]: opening a checkout page in the user's browser.
//! - [`text`]: text from the server made safe for a terminal, and measured
//!   in terminal columns.
//! - [`words`]: statuses, timeline events and times as people read them.
//! - [`Trust`]: which certificates a client trusts over TLS.
//!
//! The words it speaks (domain types, the protocol) are `shop-shared`'s;
//! the backend itself does not depend on this crate.

pub mod browser;
mod client;
pub mod text;
mod tls;
pub mod tokens;
pub mod words;

pub use client::{
    CONNECT_TIMEOUT, Client, ClientError, DEFAULT_REPLY_TIMEOUT, Push, TlsProblem, check_gateway,
    websocket_url,
};
pub use tls::{Trust, TrustError};
