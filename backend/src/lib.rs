//! `shop-backend`: the four services of shop (gateway, order, stock,
//! payment), the buses they talk through, their storage and their HTTP.
//!
//! The services are written once against two seams, [`bus::Bus`] and
//! [`db::Db`]; [`app::Application`] wires them in embedded mode (one
//! process, in-process bus, SQLite).

pub mod app;
pub mod bus;
pub mod config;
pub mod db;
pub mod gateway;
pub mod http;
pub mod messaging;
pub mod metrics;
pub mod order;
pub mod payment;
pub mod runtime;
pub mod secrets;
pub mod service;
pub mod stock;
pub mod tasks;

pub use app::distributed::Node;
pub use app::embedded::{Application, Running};
pub use service::Service;
