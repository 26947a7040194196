//! `shop-shared`: what the parts of shop share.
//!
//! - [`money`], [`time`] and [`domain`]: the vocabulary (money in minor
//!   units, timestamps, products, orders, statuses).
//! - [`events`]: the messages services exchange over the bus.
//! - [`protocol`]: the WebSocket protocol between clients and the gateway.
//! - [`client`]: the async client of that protocol, used by the CLI, the
//!   TUI, the tests and the benchmark.
//!
//! - [`sync`]: locks that survive a panic.
//!
//! No server logic lives here.

pub mod browser;
pub mod client;
pub mod domain;
pub mod events;
pub mod money;
pub mod protocol;
pub mod sync;
pub mod time;
pub mod tokens;
