//! `shop-shared`: what the parts of shop share.
//!
//! - [`money`], [`time`] and [`domain`]: the vocabulary (money in minor
//!   units, timestamps, products, orders, statuses).
//! - [`catalog`]: the changes an operator makes to products, and their
//!   audit record.
//! - [`events`]: the messages services exchange over the bus.
//! - [`protocol`]: the WebSocket protocol between clients and the gateway.
//! - [`sync`]: locks that survive a panic.
//!
//! No server logic lives here, and no client either: the async client of
//! the protocol, the token store and the browser opener are `shop-client`'s.

pub mod catalog;
pub mod domain;
pub mod events;
pub mod money;
pub mod protocol;
pub mod sync;
pub mod time;
