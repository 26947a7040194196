//! The terminal shop as a library: stock, cart and orders update live as
//! anyone buys; pay by link or QR code; everything through the gateway's
//! WebSocket protocol.
//!
//! [`session::run`] draws the shop on any terminal it is given: a writer
//! for the screen, its size and a stream of input events. `shop-tui` gives
//! it the local terminal; `shop-ssh` gives it an SSH channel, with
//! [`input::Decoder`] turning the bytes the SSH client sends into events.
//!
//! Inside, [`app::App`] holds the state and turns actions into effects,
//! `ui::draw` only renders, and `network` owns the connection to the shop.

mod app;
#[cfg(test)]
mod fixtures;
pub mod input;
mod keys;
mod layout;
mod network;
mod qr;
pub mod session;
mod ui;

pub use session::{Options, QUEUED_EVENTS, run};
