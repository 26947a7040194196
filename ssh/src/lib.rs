//! `shop-ssh`: the terminal shop served over SSH. A customer types
//! `ssh -p 2222 host` and the same panes, keys and live updates as
//! `shop-tui` appear, drawn by the same library (`shop_tui::run`) on the
//! SSH channel; nothing is installed on their side.
//!
//! - [`identity`]: the SSH key is the customer.
//! - [`host_key`]: the server's key, made once, kept in the data directory.
//! - [`limits`]: sessions at once, in total and per address.
//! - `connection`: one SSH connection (russh's handler); `terminal`: the
//!   shop on its session channel; `server`: the listener and shutdown.

pub mod config;
mod connection;
pub mod host_key;
pub mod identity;
pub mod limits;
mod server;
mod terminal;

pub use connection::BANNER;
pub use server::{Server, StartError};
