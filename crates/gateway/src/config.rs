//! The gateway's configuration file: listeners, routes and services, read with line numbers.

use scan::yaml::{self, Node};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Label keys and values, as on a Kubernetes object.
pub type Labels = BTreeMap<String, String>;

/// A whole configuration: what the file says, plus the admin API's changes since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    pub listeners: Vec<SocketAddr>,
    pub routes: Vec<Route>,
    pub services: BTreeMap<String, Service>,
}

/// One route: which requests it takes and the service it sends them to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// `None` matches every host.
    pub host: Option<String>,
    pub path: PathMatch,
    /// Upper-case methods; empty matches every method.
    pub methods: Vec<String>,
    /// Lower-case header names and the exact value each must have.
    pub headers: Labels,
    pub service: String,
    /// The line the route starts on in the file.
    pub line: u32,
}

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathMatch {
    /// The path equals this string.
    Exact(String),
    /// The path starts with this string at a segment boundary (`/api` takes `/api` and
    /// `/api/x`, not `/apiary`; `/api/` takes everything under it).
    Prefix(String),
}

/// A service: its endpoints and which of them take traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub endpoints: Vec<Endpoint>,
    pub selection: Selection,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub labels: Labels,
    /// A drained endpoint gets no new requests, whatever the selector says.
    pub drained: bool,
}

/// Which endpoints are live: one selector, or weighted selectors for a canary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    Selector(Labels),
    Weighted(Vec<WeightedSelector>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WeightedSelector {
    pub selector: Labels,
    pub weight: u32,
}

/// A configuration error, with the file and line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub line: u32,
    pub message: String,
}

/// True when every label of `selector` is on `labels` with the same value.
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Parses a configuration file's text; `path` only names the file in errors.
///
/// # Errors
///
/// The first problem found, with its line: bad YAML, a missing or malformed field, a
/// route naming an unknown service, an empty selector, weights summing to zero.
pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
    let err = |line: u32, message: String| ConfigError {
        path: path.to_string(),
        line,
        message,
    };
    let (docs, error) = yaml::load(text);
    if let Some(e) = error {
        return Err(err(e.line, e.message));
    }
    let Some(root) = docs.first().filter(|d| d.as_map().is_some()) else {
        return Err(err(
            1,
            "expected a mapping with listeners, routes and services".into(),
        ));
    };
    let field = |node: &Node, key: &str| -> Result<Node, ConfigError> {
        node.get(key)
            .filter(|n| !n.is_null())
            .cloned()
            .ok_or_else(|| err(node.line, format!("missing `{key}`")))
    };
    let seq = |node: &Node| -> Result<Vec<Node>, ConfigError> {
        node.as_seq().map(<[Node]>::to_vec).ok_or_else(|| {
            err(
                node.line,
                format!("expected a list, found {}", node.shape()),
            )
        })
    };
    let text_of = |node: &Node| -> Result<String, ConfigError> {
        node.string()
            .filter(|_| node.as_map().is_none() && node.as_seq().is_none())
            .ok_or_else(|| err(node.line, format!("expected text, found {}", node.shape())))
    };
    let addr = |node: &Node| -> Result<SocketAddr, ConfigError> {
        let s = text_of(node)?;
        s.parse()
            .map_err(|_| err(node.line, format!("{s:?} is not an IP address and port")))
    };
    let labels = |node: &Node| -> Result<Labels, ConfigError> {
        if node.as_map().is_none() {
            return Err(err(
                node.line,
                format!("expected a label mapping, found {}", node.shape()),
            ));
        }
        Ok(node.string_map())
    };

    let mut listeners = Vec::new();
    for l in seq(&field(root, "listeners")?)? {
        listeners.push(addr(&field(&l, "address")?)?);
    }

    let mut services = BTreeMap::new();
    let services_node = field(root, "services")?;
    let Some(pairs) = services_node.as_map() else {
        return Err(err(
            services_node.line,
            "expected a mapping of service names".into(),
        ));
    };
    for (name, body) in pairs {
        let name = text_of(name)?;
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for e in seq(&field(body, "endpoints")?)? {
            let address = addr(&field(&e, "address")?)?;
            if endpoints.iter().any(|x| x.address == address) {
                return Err(err(e.line, format!("endpoint {address} listed twice")));
            }
            let labels = match e.get("labels") {
                Some(l) if !l.is_null() => labels(l)?,
                _ => Labels::new(),
            };
            endpoints.push(Endpoint {
                address,
                labels,
                drained: false,
            });
        }
        let selection = match (body.get("selector"), body.get("weights")) {
            (Some(s), None) => Selection::Selector(labels(s)?),
            (None, Some(w)) => {
                let mut weighted = Vec::new();
                for item in seq(w)? {
                    let selector = labels(&field(&item, "selector")?)?;
                    let weight_node = field(&item, "weight")?;
                    let weight = text_of(&weight_node)?.parse::<u32>().map_err(|_| {
                        err(weight_node.line, "weight must be a whole number".into())
                    })?;
                    weighted.push(WeightedSelector { selector, weight });
                }
                Selection::Weighted(weighted)
            }
            _ => {
                return Err(err(
                    body.line,
                    format!("service {name}: give either `selector` or `weights`"),
                ));
            }
        };
        validate_selection(&selection)
            .map_err(|m| err(body.line, format!("service {name}: {m}")))?;
        services.insert(
            name,
            Service {
                endpoints,
                selection,
            },
        );
    }

    let mut routes = Vec::new();
    for r in seq(&field(root, "routes")?)? {
        let host = match r.get("host") {
            Some(h) if !h.is_null() => Some(text_of(h)?.to_ascii_lowercase()).filter(|h| h != "*"),
            _ => None,
        };
        let path = match (r.get("path"), r.get("prefix")) {
            (Some(p), None) => PathMatch::Exact(text_of(p)?),
            (None, Some(p)) => PathMatch::Prefix(text_of(p)?),
            _ => {
                return Err(err(
                    r.line,
                    "a route needs exactly one of `path` (exact) or `prefix`".into(),
                ));
            }
        };
        if let PathMatch::Exact(p) | PathMatch::Prefix(p) = &path
            && !p.starts_with('/')
        {
            return Err(err(r.line, format!("path {p:?} must start with /")));
        }
        let service_node = field(&r, "service")?;
        let service = text_of(&service_node)?;
        if !services.contains_key(&service) {
            return Err(err(
                service_node.line,
                format!("unknown service {service:?}"),
            ));
        }
        let methods = match r.get("methods") {
            Some(m) if !m.is_null() => m.strings().iter().map(|m| m.to_ascii_uppercase()).collect(),
            _ => Vec::new(),
        };
        let headers = match r.get("headers") {
            Some(h) if !h.is_null() => labels(h)?
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            _ => Labels::new(),
        };
        routes.push(Route {
            host,
            path,
            methods,
            headers,
            service,
            line: r.line,
        });
    }
    Ok(Config {
        listeners,
        routes,
        services,
    })
}

/// Checks a selection on its own (not against endpoints): no empty selector, weights not all zero.
pub(crate) fn validate_selection(selection: &Selection) -> Result<(), String> {
    match selection {
        Selection::Selector(s) if s.is_empty() => Err("a selector needs at least one label".into()),
        Selection::Selector(_) => Ok(()),
        Selection::Weighted(w) if w.is_empty() || w.iter().all(|w| w.weight == 0) => {
            Err("weights must not all be zero".into())
        }
        Selection::Weighted(w) if w.iter().any(|w| w.selector.is_empty()) => {
            Err("a selector needs at least one label".into())
        }
        Selection::Weighted(_) => Ok(()),
    }
}
