//! The live configuration and its table, changed one service at a time.

use crate::config::{Config, Labels, Selection, WeightedSelector, validate_selection};
use crate::table::{Registry, Table};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Gives every [`Shared`] its own id, so a thread's cached table is never another gateway's.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The table this thread used last: (gateway id, generation, table).
    static CACHED: RefCell<Option<(u64, u64, Arc<Table>)>> = const { RefCell::new(None) };
}

/// What the admin API may change; each change names one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The blue -> green switch: one selector for the whole service.
    Selector(Labels),
    /// A canary: traffic split across selectors by weight.
    Weights(Vec<WeightedSelector>),
    Drain(SocketAddr),
    Undrain(SocketAddr),
}

/// Why a change was refused; the table is then unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error("service {service:?} has no endpoint {address}")]
    UnknownEndpoint {
        service: String,
        address: SocketAddr,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("service {0:?} would have no live endpoint")]
    NoLiveEndpoint(String),
}

/// Why a reload was refused; the running configuration is then unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    #[error("{0}: listeners cannot change on reload; restart the gateway to change them")]
    Listeners(String),
}

/// The configuration (the writers' copy), the current table (the readers' copy),
/// and what outlives both (counters, health, connection pools).
#[derive(Debug)]
pub struct Shared {
    config: Mutex<Config>,
    table: RwLock<Arc<Table>>,
    /// The current table's generation, stored after the table: a worker whose
    /// cached table has it takes no lock (only reads a line no request writes).
    generation: AtomicU64,
    id: u64,
    pub registry: Registry,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        Shared::with_workers(config, 1)
    }

    /// As [`Shared::new`], with connection pools for `workers` worker runtimes.
    pub fn with_workers(config: Config, workers: usize) -> Shared {
        let registry = Registry::new(workers);
        let table = Arc::new(Table::build(&config, 1, &registry));
        Shared {
            config: Mutex::new(config),
            table: RwLock::new(table),
            generation: AtomicU64::new(1),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
        }
    }

    /// Replaces the whole configuration (a reloaded file) and returns the new generation.
    /// Admin changes made since the file was read are replaced by what the file says.
    ///
    /// # Errors
    ///
    /// When the new configuration changes the listeners; nothing changes then.
    pub fn reload(&self, path: &str, next: Config) -> Result<u64, ReloadError> {
        let mut config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        if next.listeners != config.listeners {
            return Err(ReloadError::Listeners(path.to_string()));
        }
        let generation = self.table().generation + 1;
        let table = Table::build(&next, generation, &self.registry);
        *config = next;
        self.publish(table);
        Ok(generation)
    }

    /// The current table; a request takes it once and keeps it to the end.
    pub fn table(&self) -> Arc<Table> {
        let generation = self.generation.load(Ordering::Acquire);
        CACHED.with(|cached| {
            let mut cached = cached.borrow_mut();
            if let Some((id, g, table)) = &*cached
                && *id == self.id
                && *g == generation
            {
                return table.clone();
            }
            let table = self
                .table
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            *cached = Some((self.id, table.generation, table.clone()));
            table
        })
    }

    /// Makes `table` the current one: requests that start after this returns use it.
    fn publish(&self, table: Table) {
        let generation = table.generation;
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        self.generation.store(generation, Ordering::Release);
    }

    /// The configuration as it is now, and its generation.
    pub fn config(&self) -> (Config, u64) {
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        (config.clone(), self.table().generation)
    }

    /// Applies a change to one service and publishes the next generation, which it returns.
    ///
    /// # Errors
    ///
    /// An unknown service or endpoint, an invalid selection, or a selection that would
    /// leave the service with no live endpoint; nothing changes then.
    pub fn apply(&self, service: &str, change: Change) -> Result<u64, ChangeError> {
        // The config lock orders writers; readers only ever take the table.
        let mut config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        let mut updated = config
            .services
            .get(service)
            .cloned()
            .ok_or_else(|| ChangeError::UnknownService(service.to_string()))?;
        match change {
            Change::Selector(s) => updated.selection = Selection::Selector(s),
            Change::Weights(w) => updated.selection = Selection::Weighted(w),
            Change::Drain(address) | Change::Undrain(address) => {
                let drain = matches!(change, Change::Drain(_));
                let endpoint = updated
                    .endpoints
                    .iter_mut()
                    .find(|e| e.address == address)
                    .ok_or_else(|| ChangeError::UnknownEndpoint {
                        service: service.to_string(),
                        address,
                    })?;
                endpoint.drained = drain;
            }
        }
        validate_selection(&updated.selection).map_err(ChangeError::Invalid)?;
        let current = self.table();
        let next = current.with_service(service, &updated, current.generation + 1, &self.registry);
        // Draining the last endpoint is allowed (an operator may mean it); selecting nothing is a typo.
        let draining = config.services[service].selection == updated.selection;
        if !draining && next.pools(service).is_some_and(|p| p.is_empty()) {
            return Err(ChangeError::NoLiveEndpoint(service.to_string()));
        }
        let generation = next.generation;
        config.services.insert(service.to_string(), updated);
        self.publish(next);
        Ok(generation)
    }
}
