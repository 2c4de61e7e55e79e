//! The routing table: one immutable value per configuration generation.
//!
//! A request takes the current table (an `Arc`) once and uses only it, so it sees
//! one generation from routing to endpoint choice. A change builds a new table that
//! shares every untouched service's pools with the old one.

use crate::config::{Config, Limits, PathMatch, Selection, Service, Upstream, selects};
use crate::h1::Fields;
use crate::health::{self, Cell, Down};
use crate::metrics::{Errors, Metrics, Stats};
use crate::upstream::Connections;
use crate::worker::{SHARDS, worker};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What outlives a table: counters, endpoint health, idle upstream connections.
#[derive(Debug)]
pub struct Registry {
    pub metrics: Arc<Metrics>,
    pub health: health::Book,
    pub connections: Connections,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new(1)
    }
}

impl Registry {
    /// A registry for `workers` worker runtimes, each with its own connections (0 counts as 1).
    pub fn new(workers: usize) -> Registry {
        Registry {
            metrics: Arc::default(),
            health: health::Book::default(),
            connections: Connections::new(workers),
        }
    }
}

#[derive(Debug)]
pub struct Table {
    pub generation: u64,
    pub limits: Limits,
    /// Sorted by precedence, best first; the first match wins.
    routes: Vec<CompiledRoute>,
    services: HashMap<String, Arc<Pools>>,
    /// Counts requests that matched no route (service and version "").
    pub unrouted: Arc<Stats>,
}

/// A route as the table matches it.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    pub name: Arc<str>,
    host: Option<String>,
    path: PathMatch,
    methods: Vec<String>,
    headers: Vec<(String, String)>,
    pub service: Arc<str>,
}

/// A service's live endpoints, grouped by the selector that picked them, and how to call them.
#[derive(Debug)]
pub struct Pools {
    pools: Vec<Pool>,
    total_weight: u64,
    next: Rotor,
    pub upstream: Upstream,
    /// Counts requests for the service that no endpoint served (version "").
    pub unserved: Arc<Stats>,
    pub errors: Arc<Errors>,
    /// Every endpoint of the service, selected or not: the health checker's list.
    all: Vec<(SocketAddr, Arc<Cell>)>,
}

#[derive(Debug)]
struct Pool {
    weight: u64,
    members: Vec<Arc<Member>>,
    next: Rotor,
}

/// A round-robin position per worker (each on its own cache line), so workers
/// choosing endpoints never write the same line; each still cycles exactly.
#[derive(Debug, Default)]
struct Rotor([Slot; SHARDS]);

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

impl Rotor {
    fn next(&self) -> u64 {
        self.0[worker() % self.0.len()]
            .0
            .fetch_add(1, Ordering::Relaxed)
    }
}

/// One live endpoint of a service, with what a request served by it updates.
#[derive(Debug)]
pub struct Member {
    pub address: SocketAddr,
    /// `address` as text, for the access log.
    pub address_text: Arc<str>,
    /// The endpoint's `version` label, "" when it has none.
    pub version: Arc<str>,
    /// The selector that picked it, as `k=v,k=v`.
    pub pool: Arc<str>,
    pub stats: Arc<Stats>,
    pub cell: Arc<Cell>,
}

/// Why no endpoint was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEndpoint {
    /// The selection picks no endpoint (or all are drained).
    NoneLive,
    /// Every live endpoint is ejected or failing health checks (or was already tried).
    AllDown,
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
    pub fn build(config: &Config, generation: u64, registry: &Registry) -> Table {
        let services = config
            .services
            .iter()
            .map(|(name, service)| {
                (
                    name.clone(),
                    Arc::new(Pools::build(name, service, registry)),
                )
            })
            .collect();
        let mut routes: Vec<(usize, CompiledRoute)> = config
            .routes
            .iter()
            .map(|r| CompiledRoute {
                name: r.name.as_str().into(),
                host: r.host.clone(),
                path: r.path.clone(),
                methods: r.methods.clone(),
                headers: r.headers.clone().into_iter().collect(),
                service: r.service.as_str().into(),
            })
            .enumerate()
            .collect();
        // Exact path > longest prefix > host-specific (exact before wildcard) > more header
        // matches > method-specific > file order (docs/gateway.md, "Precedence").
        routes.sort_by_key(|(i, r)| {
            let (exact, len) = match &r.path {
                PathMatch::Exact(_) => (1, 0),
                PathMatch::Prefix(p) => (0, p.len()),
            };
            let host = match &r.host {
                None => 0,
                Some(h) if h.starts_with("*.") => 1,
                Some(_) => 2,
            };
            let rank = (exact, len, host, r.headers.len(), !r.methods.is_empty());
            (std::cmp::Reverse(rank), *i)
        });
        Table {
            generation,
            limits: config.limits.clone(),
            routes: routes.into_iter().map(|(_, r)| r).collect(),
            services,
            unrouted: registry.metrics.stats("", ""),
        }
    }

    /// The next generation after a change to one service: every other service keeps
    /// its pools (and its round-robin position) by sharing them.
    pub fn with_service(
        &self,
        name: &str,
        service: &Service,
        generation: u64,
        registry: &Registry,
    ) -> Table {
        let mut services = self.services.clone();
        services.insert(
            name.to_string(),
            Arc::new(Pools::build(name, service, registry)),
        );
        Table {
            generation,
            limits: self.limits.clone(),
            routes: self.routes.clone(),
            services,
            unrouted: self.unrouted.clone(),
        }
    }

    /// The route a request takes; `host` may carry a port, which is ignored.
    pub fn matching(
        &self,
        method: &str,
        host: Option<&str>,
        path: &str,
        headers: &impl Fields,
    ) -> Option<&CompiledRoute> {
        let host = host.map(strip_port);
        self.routes.iter().find(|r| {
            r.host
                .as_ref()
                .is_none_or(|h| host.is_some_and(|host| host_matches(h, host)))
                && path_matches(&r.path, path)
                && (r.methods.is_empty() || r.methods.iter().any(|m| m == method))
                && r.headers.iter().all(|(name, value)| {
                    headers.values(name.as_str()).any(|v| v == value.as_bytes())
                })
        })
    }

    /// The service a request goes to.
    pub fn route(
        &self,
        method: &str,
        host: Option<&str>,
        path: &str,
        headers: &impl Fields,
    ) -> Option<&str> {
        self.matching(method, host, path, headers)
            .map(|r| &*r.service)
    }

    /// The next available endpoint of a service; `None` when the service is unknown
    /// or none is available.
    pub fn pick(&self, service: &str) -> Option<Arc<Member>> {
        self.services.get(service)?.choose(&[]).ok().cloned()
    }

    /// A service's pools, shared between generations while the service is unchanged.
    pub fn pools(&self, service: &str) -> Option<&Arc<Pools>> {
        self.services.get(service)
    }

    pub fn services(&self) -> impl Iterator<Item = (&str, &Arc<Pools>)> {
        self.services.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Every service's live pools, for the state API.
    pub fn state(&self) -> BTreeMap<&str, Vec<PoolState>> {
        self.services
            .iter()
            .map(|(name, pools)| (name.as_str(), pools.state()))
            .collect()
    }

    /// The endpoints that take no traffic now although selected, by service, and why.
    pub fn down(&self) -> BTreeMap<&str, BTreeMap<SocketAddr, Down>> {
        let now = clock::monotonic_ms();
        self.services
            .iter()
            .map(|(name, pools)| {
                let down: BTreeMap<SocketAddr, Down> = pools
                    .all
                    .iter()
                    .filter_map(|(address, cell)| cell.down(now).map(|d| (*address, d)))
                    .collect();
                (name.as_str(), down)
            })
            .filter(|(_, down)| !down.is_empty())
            .collect()
    }
}

impl Pools {
    fn build(name: &str, service: &Service, registry: &Registry) -> Pools {
        let selectors = match &service.selection {
            Selection::Selector(s) => vec![(s, 1)],
            Selection::Weighted(w) => w.iter().map(|w| (&w.selector, w.weight)).collect(),
        };
        let all: Vec<(SocketAddr, Arc<Cell>)> = service
            .endpoints
            .iter()
            .map(|e| (e.address, registry.health.cell(name, e.address)))
            .collect();
        let pools: Vec<Pool> = selectors
            .into_iter()
            .map(|(selector, weight)| {
                let label: Arc<str> = selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
                    .into();
                Pool {
                    weight: u64::from(weight),
                    members: service
                        .endpoints
                        .iter()
                        .zip(&all)
                        .filter(|(e, _)| !e.drained && selects(selector, &e.labels))
                        .map(|(e, (_, cell))| {
                            let version = e.labels.get("version").cloned().unwrap_or_default();
                            Arc::new(Member {
                                address: e.address,
                                address_text: e.address.to_string().into(),
                                stats: registry.metrics.stats(name, &version),
                                version: version.into(),
                                pool: label.clone(),
                                cell: cell.clone(),
                            })
                        })
                        .collect(),
                    next: Rotor::default(),
                }
            })
            // A pool with no live endpoint or no weight takes no traffic; the rest share it.
            .filter(|p| p.weight > 0 && !p.members.is_empty())
            .collect();
        Pools {
            total_weight: pools.iter().map(|p| p.weight).sum(),
            pools,
            next: Rotor::default(),
            upstream: service.upstream.clone(),
            unserved: registry.metrics.stats(name, ""),
            errors: registry.metrics.errors(name),
            all,
        }
    }

    /// True when no endpoint is live.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// The next endpoint: a pool by weight, then round-robin within it, skipping
    /// endpoints that are down or in `exclude`; other pools only when the chosen one
    /// has none left.
    ///
    /// # Errors
    ///
    /// Which of "nothing selected" and "nothing available" it is.
    pub fn choose(&self, exclude: &[SocketAddr]) -> Result<&Arc<Member>, NoEndpoint> {
        if self.pools.is_empty() {
            return Err(NoEndpoint::NoneLive);
        }
        // Counting through the total weight gives each pool exactly its share per cycle.
        let mut slot = self.next.next() % self.total_weight;
        let first = self
            .pools
            .iter()
            .position(|p| {
                if slot < p.weight {
                    true
                } else {
                    slot -= p.weight;
                    false
                }
            })
            .unwrap_or(0);
        let mut now = None;
        for i in 0..self.pools.len() {
            let pool = &self.pools[(first + i) % self.pools.len()];
            let n = pool.members.len() as u64;
            let start = pool.next.next();
            for k in 0..n {
                let member = &pool.members[((start + k) % n) as usize];
                if member.cell.serving(&mut now) && !exclude.contains(&member.address) {
                    return Ok(member);
                }
            }
        }
        Err(NoEndpoint::AllDown)
    }

    /// Every endpoint of the service and its health cell.
    pub fn all_endpoints(&self) -> &[(SocketAddr, Arc<Cell>)] {
        &self.all
    }

    fn state(&self) -> Vec<PoolState> {
        self.pools
            .iter()
            .map(|p| PoolState {
                selector: p
                    .members
                    .first()
                    .map_or_else(String::new, |m| m.pool.to_string()),
                weight: p.weight,
                endpoints: p.members.iter().map(|m| m.address).collect(),
            })
            .collect()
    }
}

/// `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`;
/// `pattern` is lower case, `host` any case.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            host.len() > suffix.len()
                && host.as_bytes()[host.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        }
        None => pattern.eq_ignore_ascii_case(host),
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
