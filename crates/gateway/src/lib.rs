//! The ingress data plane: one listener in front of many services.
//!
//! Requests are routed by host and path to a service; the service's selector
//! (a label map, as on a Kubernetes Service) picks its live endpoints, so a
//! blue -> green switch is one admin call that touches only that service.
//!
//! Every request takes the current routing table (an immutable [`table::Table`]
//! behind an `Arc`) once, so it sees one configuration generation from routing
//! to endpoint choice, and keeps the endpoint it started on whatever changes
//! meanwhile. A change builds the next table from the old one, sharing every
//! other service's pools, and swaps it in. The hot path knows nothing of the
//! governance crates; configuration is read with `scan`'s line-keeping YAML
//! loader so errors carry `file:line`.

pub mod config;
mod server;
pub mod state;
pub mod table;
pub mod trace;

pub use config::{ConfigError, parse};
pub use server::{Error, Gateway, Options, run};
