//! Endpoint health: passive ejection after consecutive failures, and active HTTP checks.
//!
//! Each `(service, endpoint)` has one [`Cell`] that outlives configuration
//! generations, so a selector switch or a reload keeps what is known about an
//! endpoint. The request path only reads a cell (and writes it on a failure, or on
//! the first success after one); the checker task (run by `upkeep`) is
//! the only writer of the active state.

use crate::config::{Ejection, HealthCheck};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What is known about one endpoint of one service.
#[derive(Debug, Default)]
pub struct Cell {
    /// Consecutive failed requests since the last success or ejection.
    failures: AtomicU32,
    /// [`clock::monotonic_ms`] until which the endpoint is ejected; 0 when it never was.
    ejected_until: AtomicU64,
    /// Set by failed active checks, cleared by passing ones.
    failing_checks: AtomicBool,
    check_passes: AtomicU32,
    check_failures: AtomicU32,
}

/// Why an endpoint takes no traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Down {
    Ejected,
    FailingHealthChecks,
}

impl Cell {
    /// `None` when the endpoint may take a request now.
    pub fn down(&self, now: u64) -> Option<Down> {
        if self.failing_checks.load(Ordering::Relaxed) {
            Some(Down::FailingHealthChecks)
        } else if now < self.ejected_until.load(Ordering::Relaxed) {
            Some(Down::Ejected)
        } else {
            None
        }
    }

    /// True when the endpoint may take a request: as `down(now).is_none()`, with
    /// the clock read only for an endpoint that was ever ejected.
    pub fn serving(&self, now: &mut Option<u64>) -> bool {
        if self.failing_checks.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || *now.get_or_insert_with(clock::monotonic_ms) >= until
    }

    pub fn succeeded(&self) {
        // A read first: the common case (no failures) never writes the shared line.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failed request; the failure that reaches the threshold ejects.
    pub fn failed(&self, ejection: Option<&Ejection>) {
        let Some(ejection) = ejection else { return };
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= ejection.consecutive_failures {
            self.failures.store(0, Ordering::Relaxed);
            let until =
                clock::monotonic_ms() + u64::try_from(ejection.duration.as_millis()).unwrap_or(0);
            self.ejected_until.store(until, Ordering::Relaxed);
        }
    }

    pub(crate) fn checked(&self, passed: bool, check: &HealthCheck) {
        if passed {
            self.check_failures.store(0, Ordering::Relaxed);
            let n = self.check_passes.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= check.healthy_threshold {
                self.failing_checks.store(false, Ordering::Relaxed);
            }
        } else {
            self.check_passes.store(0, Ordering::Relaxed);
            let n = self.check_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= check.unhealthy_threshold {
                self.failing_checks.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Every cell, by service and endpoint; consulted only when a table is built.
#[derive(Debug, Default)]
pub struct Book {
    cells: Mutex<HashMap<(String, SocketAddr), Arc<Cell>>>,
}

impl Book {
    pub fn cell(&self, service: &str, address: SocketAddr) -> Arc<Cell> {
        self.cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((service.to_string(), address))
            .or_default()
            .clone()
    }
}

pub(crate) async fn probe(
    client: &Client<HttpConnector, Empty<Bytes>>,
    address: SocketAddr,
    check: &HealthCheck,
) -> bool {
    let Ok(request) = hyper::Request::get(format!("http://{address}{}", check.path))
        .header("user-agent", "bulkhead-gateway-health")
        .body(Empty::new())
    else {
        return false;
    };
    // The timeout never exceeds the interval, so checks of one endpoint do not pile up.
    let timeout = check.timeout.min(check.interval);
    tokio::time::timeout(timeout, async {
        match client.request(request).await {
            Ok(response) => {
                let ok = response.status().is_success();
                let _ = response.into_body().collect().await;
                ok
            }
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false)
}
