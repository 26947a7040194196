//! End-to-end tests: the real `shop-backend` started on a free port with a
//! fresh data directory, driven only through the WebSocket protocol and
//! HTTP, as customers drive it.

mod bad_input;
mod browser;
mod catalog;
mod connections;
mod faults;
mod harness;
mod history;
mod kafka;
mod limits;
mod local_checkout;
mod pages;
mod race;
mod redelivery;
mod restart;
mod saga;
mod scoping;
mod stripe;
mod stripe_stub;
