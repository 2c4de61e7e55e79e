//! The routing table: one immutable value per configuration generation.
//!
//! A request takes the current table (an `Arc`) once and uses only it, so it sees
//! one generation from routing to endpoint choice. A change builds a new table that
//! shares every untouched service's pools with the old one.

use crate::config::{Config, PathMatch, Selection, Service, selects};
use hyper::header::HeaderMap;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Table {
    pub generation: u64,
    /// Sorted by precedence, best first; the first match wins.
    routes: Vec<CompiledRoute>,
    services: HashMap<String, Arc<Pools>>,
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    host: Option<String>,
    path: PathMatch,
    methods: Vec<String>,
    headers: Vec<(String, String)>,
    service: String,
}

/// A service's live endpoints, grouped by the selector that picked them.
#[derive(Debug)]
pub struct Pools {
    pools: Vec<Pool>,
    total_weight: u64,
    next: AtomicU64,
}

#[derive(Debug)]
struct Pool {
    /// The selector as `k=v,k=v`, for logs and the state API.
    name: String,
    weight: u64,
    endpoints: Vec<SocketAddr>,
    next: AtomicU64,
}

/// The endpoint chosen for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub address: SocketAddr,
    pub pool: String,
}

/// A service's live pools, as the state API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct PoolState {
    pub selector: String,
    pub weight: u64,
    pub endpoints: Vec<SocketAddr>,
}

impl Table {
    /// Builds the table for a whole configuration.
    pub fn build(config: &Config, generation: u64) -> Table {
        let services = config
            .services
            .iter()
            .map(|(name, service)| (name.clone(), Arc::new(Pools::build(service))))
            .collect();
        let mut routes: Vec<(usize, CompiledRoute)> = config
            .routes
            .iter()
            .map(|r| CompiledRoute {
                host: r.host.clone(),
                path: r.path.clone(),
                methods: r.methods.clone(),
                headers: r.headers.clone().into_iter().collect(),
                service: r.service.clone(),
            })
            .enumerate()
            .collect();
        // Exact path > longest prefix > host-specific > more header matches >
        // method-specific > file order (docs/gateway.md, "Precedence").
        routes.sort_by_key(|(i, r)| {
            let (exact, len) = match &r.path {
                PathMatch::Exact(_) => (1, 0),
                PathMatch::Prefix(p) => (0, p.len()),
            };
            let rank = (
                exact,
                len,
                r.host.is_some(),
                r.headers.len(),
                !r.methods.is_empty(),
            );
            (std::cmp::Reverse(rank), *i)
        });
        Table {
            generation,
            routes: routes.into_iter().map(|(_, r)| r).collect(),
            services,
        }
    }

    /// The next generation after a change to one service: every other service keeps
    /// its pools (and its round-robin position) by sharing them.
    pub fn with_service(&self, name: &str, service: &Service, generation: u64) -> Table {
        let mut services = self.services.clone();
        services.insert(name.to_string(), Arc::new(Pools::build(service)));
        Table {
            generation,
            routes: self.routes.clone(),
            services,
        }
    }

    /// The service a request goes to; `host` may carry a port, which is ignored.
    pub fn route(
        &self,
        method: &str,
        host: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<&str> {
        let host = host.map(|h| strip_port(h).to_ascii_lowercase());
        self.routes
            .iter()
            .find(|r| {
                r.host
                    .as_ref()
                    .is_none_or(|h| host.as_deref() == Some(h.as_str()))
                    && path_matches(&r.path, path)
                    && (r.methods.is_empty() || r.methods.iter().any(|m| m == method))
                    && r.headers.iter().all(|(name, value)| {
                        headers
                            .get_all(name.as_str())
                            .iter()
                            .any(|v| v.as_bytes() == value.as_bytes())
                    })
            })
            .map(|r| r.service.as_str())
    }

    /// The next endpoint of a service, round-robin within a pool and weighted across pools;
    /// `None` when the service is unknown or has no live endpoint.
    pub fn pick(&self, service: &str) -> Option<Pick> {
        self.services.get(service)?.pick()
    }

    /// A service's pools, shared between generations while the service is unchanged.
    pub fn pools(&self, service: &str) -> Option<&Arc<Pools>> {
        self.services.get(service)
    }

    /// Every service's live pools, for the state API.
    pub fn state(&self) -> std::collections::BTreeMap<&str, Vec<PoolState>> {
        self.services
            .iter()
            .map(|(name, pools)| (name.as_str(), pools.state()))
            .collect()
    }
}

impl Pools {
    fn build(service: &Service) -> Pools {
        let selectors = match &service.selection {
            Selection::Selector(s) => vec![(s, 1)],
            Selection::Weighted(w) => w.iter().map(|w| (&w.selector, w.weight)).collect(),
        };
        let pools: Vec<Pool> = selectors
            .into_iter()
            .map(|(selector, weight)| Pool {
                name: selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                weight: u64::from(weight),
                endpoints: service
                    .endpoints
                    .iter()
                    .filter(|e| !e.drained && selects(selector, &e.labels))
                    .map(|e| e.address)
                    .collect(),
                next: AtomicU64::new(0),
            })
            // A pool with no live endpoint or no weight takes no traffic; the rest share it.
            .filter(|p| p.weight > 0 && !p.endpoints.is_empty())
            .collect();
        Pools {
            total_weight: pools.iter().map(|p| p.weight).sum(),
            pools,
            next: AtomicU64::new(0),
        }
    }

    /// True when no endpoint is live.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    fn pick(&self) -> Option<Pick> {
        if self.pools.is_empty() {
            return None;
        }
        // Counting through the total weight gives each pool exactly its share per cycle.
        let mut slot = self.next.fetch_add(1, Ordering::Relaxed) % self.total_weight;
        let pool = self
            .pools
            .iter()
            .find(|p| {
                if slot < p.weight {
                    true
                } else {
                    slot -= p.weight;
                    false
                }
            })
            .unwrap_or(&self.pools[0]);
        let n = pool.next.fetch_add(1, Ordering::Relaxed) % pool.endpoints.len() as u64;
        Some(Pick {
            address: pool.endpoints[n as usize],
            pool: pool.name.clone(),
        })
    }

    fn state(&self) -> Vec<PoolState> {
        self.pools
            .iter()
            .map(|p| PoolState {
                selector: p.name.clone(),
                weight: p.weight,
                endpoints: p.endpoints.clone(),
            })
            .collect()
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn path_matches(matcher: &PathMatch, path: &str) -> bool {
    match matcher {
        PathMatch::Exact(p) => p == path,
        PathMatch::Prefix(p) => {
            path.starts_with(p.as_str())
                && (p.ends_with('/') || path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
        }
    }
}

#[cfg(test)]
mod tests;
