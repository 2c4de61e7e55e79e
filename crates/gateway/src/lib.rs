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
//!
//! What a request leaves behind (access-log line, span, counters) is recorded once
//! its response body has been sent, and handed to a writer thread and an exporter
//! task through bounded queues, so neither a slow disk nor a slow collector can
//! slow a request: when a queue is full the record is dropped and counted.

mod admin;
pub mod config;
mod h1;
pub mod health;
mod httproute;
mod load;
mod log;
pub mod metrics;
mod otlp;
mod proxy;
mod server;
pub mod state;
pub mod table;
pub mod trace;
mod upkeep;
mod upstream;
mod worker;

pub use config::ConfigError;
pub use load::parse;
pub use log::AccessLog;
pub use otlp::OtlpOptions;
pub use server::{Error, Gateway, Options, run};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response bodies of the admin API.
pub(crate) type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
