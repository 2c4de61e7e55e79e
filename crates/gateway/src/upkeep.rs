//! The running gateway's background upkeep: active health checks on schedule,
//! and closing idle upstream connections that died or aged out.
//!
//! Both walk what [`Shared`] holds (the current table, the registry), so they
//! live above the table and its parts: [`crate::health`] says what a check is
//! and what its verdict does to an endpoint, [`crate::upstream`] keeps the
//! connections; this module only decides when each runs.

use crate::health;
use crate::state::Shared;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

/// Runs active checks until the gateway is gone: every service with a `health`
/// section has all its endpoints (selected or not) checked every `interval`.
pub(crate) fn spawn_health_checks(shared: Weak<Shared>) {
    tokio::spawn(async move {
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut due: HashMap<String, Instant> = HashMap::new();
        // A 50 ms tick bounds how late a check starts; it is cheap when nothing is due.
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let table = shared.table();
            let now = Instant::now();
            for (service, pools) in table.services() {
                let Some(check) = pools.upstream.health.clone() else {
                    continue;
                };
                if due.get(service).is_some_and(|at| *at > now) {
                    continue;
                }
                due.insert(service.to_string(), now + check.interval);
                for (address, cell) in pools.all_endpoints() {
                    let (client, check, cell) = (client.clone(), check.clone(), cell.clone());
                    let address = *address;
                    tokio::spawn(async move {
                        let passed = health::probe(&client, address, &check).await;
                        cell.checked(passed, &check);
                    });
                }
            }
        }
    });
}

/// How often [`sweep_idle_connections`] looks.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Closes the idle connections the upstream has closed or that have idled past
/// the limit, every few seconds while the gateway lives: without it, the
/// connections to an endpoint that gets no more traffic (or left the
/// configuration) would stay open until a request for it came.
pub(crate) async fn sweep_idle_connections(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.registry.connections.sweep(Instant::now());
    }
}
