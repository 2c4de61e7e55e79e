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

/// Reads bytes as the proxy reads what a client sends, without I/O: the request
/// head, its Host field, the target's form, trace context and body framing, then
/// a chunked body's framing; and the same bytes as an upstream's response head.
/// Returns how many bytes the request's head and body took, or why it was
/// refused. `cargo xtask fuzz` feeds it mutated requests.
///
/// # Errors
/// What the proxy answers 400 for (or would close an upstream connection for).
pub fn read_request(input: &[u8]) -> Result<usize, &'static str> {
    use h1::Fields as _;
    let mut response = bytes::BytesMut::from(input);
    if let Ok(Some(head)) = h1::Head::response(&mut response) {
        h1::response_framing(&head, false)?;
    }
    let mut buf = bytes::BytesMut::from(input);
    let head = match h1::Head::request(&mut buf) {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(0),
        Err(e) => return Err(e.describe()),
    };
    let _ = trace::at_edge(&head);
    let _ = head.get("x-request-id");
    let _ = proxy::origin_form(head.target());
    if h1::request_host(&head)?.is_none() && head.minor == 1 {
        return Err("no Host field");
    }
    let used = head.bytes().len();
    match h1::request_framing(&head)? {
        h1::Framing::Chunked => {
            let mut chunks = h1::Chunked::default();
            let n = chunks.scan(&buf).map_err(|e| e.0)?;
            Ok(used + n)
        }
        h1::Framing::Length(n) => {
            Ok(used + buf.len().min(usize::try_from(n).unwrap_or(usize::MAX)))
        }
        h1::Framing::Empty | h1::Framing::UntilClose => Ok(used),
    }
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response bodies of the admin API.
pub(crate) type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
