//! The gateway's configuration: listeners, limits, routes and services, and
//! the reader of its gateway document, with line numbers.
//!
//! A file holds one gateway document (no `kind`) and any number of Gateway API
//! `HTTPRoute` documents, separated by `---`; [`crate::parse`] reads the whole
//! file, `httproute` the route documents.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use yaml::Node;

/// Label keys and values, as on a Kubernetes object.
pub type Labels = BTreeMap<String, String>;

/// A whole configuration: what the file says, plus the admin API's changes since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    pub listeners: Vec<SocketAddr>,
    pub limits: Limits,
    pub routes: Vec<Route>,
    pub services: BTreeMap<String, Service>,
}

/// Gateway-wide protections against slow, large or too many clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// The request line and headers together; more gets 431.
    pub max_header_bytes: usize,
    /// A request body; more gets 413.
    pub max_body_bytes: u64,
    /// The longest a client may take to send a request's headers.
    #[serde(serialize_with = "human")]
    pub header_timeout: Duration,
    /// A connection with no request in flight and no bytes moving is closed after this.
    #[serde(serialize_with = "human")]
    pub idle_timeout: Duration,
    /// A protocol-switched connection (a WebSocket) with no bytes moving either
    /// way for this long is closed.
    #[serde(serialize_with = "human")]
    pub tunnel_idle_timeout: Duration,
    /// Client connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// On shutdown, how long requests in flight may take to finish.
    #[serde(serialize_with = "human")]
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tunnel_idle_timeout: Duration::from_secs(3600),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// One route: which requests it takes and the service it sends them to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// The route's name in logs, spans and metrics: its `name`, or its path pattern.
    pub name: String,
    /// `None` matches every host; `*.example.com` matches every subdomain.
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

impl PathMatch {
    /// `/a` for an exact path, `/a*` for a prefix.
    pub fn pattern(&self) -> String {
        match self {
            PathMatch::Exact(p) => p.clone(),
            PathMatch::Prefix(p) => format!("{p}*"),
        }
    }
}

/// A service: its endpoints, which of them take traffic, and how they are called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub endpoints: Vec<Endpoint>,
    pub selection: Selection,
    pub upstream: Upstream,
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

/// How the gateway talks to a service's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upstream {
    /// Opening a TCP connection to an endpoint.
    #[serde(serialize_with = "human")]
    pub connect_timeout: Duration,
    /// From sending the request to the response headers; then 504.
    #[serde(serialize_with = "human")]
    pub request_timeout: Duration,
    /// Further endpoints tried when connecting fails, for idempotent requests without a body.
    pub retries: u32,
    /// Active checks; `None` checks nothing.
    pub health: Option<HealthCheck>,
    /// Passive ejection; `None` never ejects.
    pub ejection: Option<Ejection>,
}

impl Default for Upstream {
    fn default() -> Upstream {
        Upstream {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(15),
            retries: 1,
            health: None,
            ejection: Some(Ejection {
                consecutive_failures: 5,
                duration: Duration::from_secs(10),
            }),
        }
    }
}

/// An HTTP GET sent to every endpoint of the service, live or not, every `interval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub path: String,
    #[serde(serialize_with = "human")]
    pub interval: Duration,
    #[serde(serialize_with = "human")]
    pub timeout: Duration,
    /// Consecutive 2xx answers that bring an unhealthy endpoint back.
    pub healthy_threshold: u32,
    /// Consecutive failures (no answer, or not 2xx) that take an endpoint out.
    pub unhealthy_threshold: u32,
}

/// Consecutive failed requests (connect errors, timeouts, resets, 5xx answers)
/// take an endpoint out for `duration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ejection {
    pub consecutive_failures: u32,
    #[serde(serialize_with = "human")]
    pub duration: Duration,
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

/// A duration as the configuration writes it (`250ms`, `10s`, `1m30s`), so it reads back.
fn human<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&yaml::format_duration(*d))
}

/// Reads a configuration file's text as far as the gateway document goes:
/// its configuration, and the `HTTPRoute` documents that follow it, for
/// [`crate::httproute`] to add (the whole file is [`crate::parse`]).
///
/// # Errors
///
/// The first problem found, with its line: bad YAML, a missing or malformed field, a
/// route naming an unknown service, an empty selector, weights summing to zero.
pub(crate) fn gateway_document(
    p: &Reader<'_>,
    text: &str,
) -> Result<(Config, Vec<Node>), ConfigError> {
    let (docs, error) = yaml::load(text);
    if let Some(e) = error {
        return Err(p.err(e.line, e.message));
    }
    let (gateway_docs, route_docs): (Vec<Node>, Vec<Node>) =
        docs.into_iter().partition(|d| d.get("kind").is_none());
    let root = match gateway_docs.as_slice() {
        [root] if root.as_map().is_some() => root,
        [_, second, ..] => {
            return Err(p.err(
                second.line,
                "a second gateway document (only HTTPRoute documents may follow the first)".into(),
            ));
        }
        _ => {
            return Err(p.err(
                1,
                "expected a mapping with listeners, routes and services".into(),
            ));
        }
    };
    Ok((p.gateway(root)?, route_docs))
}

/// Field readers that turn every problem into a [`ConfigError`] at the node's line.
pub(crate) struct Reader<'a> {
    pub path: &'a str,
}

impl Reader<'_> {
    pub fn err(&self, line: u32, message: String) -> ConfigError {
        ConfigError {
            path: self.path.to_string(),
            line,
            message,
        }
    }

    pub fn field(&self, node: &Node, key: &str) -> Result<Node, ConfigError> {
        node.get(key)
            .filter(|n| !n.is_null())
            .cloned()
            .ok_or_else(|| self.err(node.line, format!("missing `{key}`")))
    }

    pub fn optional<'n>(&self, node: &'n Node, key: &str) -> Option<&'n Node> {
        node.get(key).filter(|n| !n.is_null())
    }

    pub fn seq(&self, node: &Node) -> Result<Vec<Node>, ConfigError> {
        node.as_seq().map(<[Node]>::to_vec).ok_or_else(|| {
            self.err(
                node.line,
                format!("expected a list, found {}", node.shape()),
            )
        })
    }

    pub fn text(&self, node: &Node) -> Result<String, ConfigError> {
        node.string()
            .filter(|_| node.as_map().is_none() && node.as_seq().is_none())
            .ok_or_else(|| self.err(node.line, format!("expected text, found {}", node.shape())))
    }

    pub fn number<T: std::str::FromStr>(&self, node: &Node) -> Result<T, ConfigError> {
        self.text(node)?
            .parse()
            .map_err(|_| self.err(node.line, "expected a whole number".into()))
    }

    pub fn addr(&self, node: &Node) -> Result<SocketAddr, ConfigError> {
        let s = self.text(node)?;
        s.parse()
            .map_err(|_| self.err(node.line, format!("{s:?} is not an IP address and port")))
    }

    pub fn labels(&self, node: &Node) -> Result<Labels, ConfigError> {
        if node.as_map().is_none() {
            return Err(self.err(
                node.line,
                format!("expected a label mapping, found {}", node.shape()),
            ));
        }
        Ok(node.string_map())
    }

    /// A positive duration in the one grammar of [`yaml::parse_duration`].
    pub fn duration(&self, node: &Node) -> Result<Duration, ConfigError> {
        let s = self.text(node)?;
        let d = yaml::parse_duration(&s).map_err(|e| self.err(node.line, e.to_string()))?;
        if d.is_zero() {
            return Err(self.err(node.line, format!("{s:?}: a duration must not be zero")));
        }
        Ok(d)
    }

    /// Fails on any key of `node` not in `known`, so a typo is not silently ignored.
    pub fn only(&self, node: &Node, what: &str, known: &[&str]) -> Result<(), ConfigError> {
        for (key, _) in node.as_map().unwrap_or_default() {
            let name = key.as_str().unwrap_or_default();
            if !known.contains(&name) {
                return Err(self.err(
                    key.line,
                    format!(
                        "unknown {what} field `{name}` (known: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn gateway(&self, root: &Node) -> Result<Config, ConfigError> {
        self.only(
            root,
            "gateway",
            &["listeners", "limits", "routes", "services"],
        )?;
        let mut listeners = Vec::new();
        for l in self.seq(&self.field(root, "listeners")?)? {
            listeners.push(self.addr(&self.field(&l, "address")?)?);
        }
        let limits = match self.optional(root, "limits") {
            Some(node) => self.limits(node)?,
            None => Limits::default(),
        };

        let mut services = BTreeMap::new();
        let services_node = self.field(root, "services")?;
        let Some(pairs) = services_node.as_map() else {
            return Err(self.err(
                services_node.line,
                "expected a mapping of service names".into(),
            ));
        };
        for (name, body) in pairs {
            let name = self.text(name)?;
            services.insert(name.clone(), self.service(&name, body)?);
        }

        let mut routes = Vec::new();
        if let Some(list) = self.optional(root, "routes") {
            for r in self.seq(list)? {
                routes.push(self.route(&r, &services)?);
            }
        }
        Ok(Config {
            listeners,
            limits,
            routes,
            services,
        })
    }

    fn limits(&self, node: &Node) -> Result<Limits, ConfigError> {
        self.only(
            node,
            "limits",
            &[
                "max_header_bytes",
                "max_body_bytes",
                "header_timeout",
                "idle_timeout",
                "tunnel_idle_timeout",
                "max_connections",
                "drain_timeout",
            ],
        )?;
        let mut limits = Limits::default();
        if let Some(n) = self.optional(node, "max_header_bytes") {
            limits.max_header_bytes = self.number(n)?;
            if limits.max_header_bytes < 8192 {
                return Err(self.err(n.line, "max_header_bytes must be at least 8192".into()));
            }
        }
        if let Some(n) = self.optional(node, "max_body_bytes") {
            limits.max_body_bytes = self.number(n)?;
        }
        if let Some(n) = self.optional(node, "header_timeout") {
            limits.header_timeout = self.duration(n)?;
        }
        if let Some(n) = self.optional(node, "idle_timeout") {
            limits.idle_timeout = self.duration(n)?;
        }
        if let Some(n) = self.optional(node, "tunnel_idle_timeout") {
            limits.tunnel_idle_timeout = self.duration(n)?;
        }
        if let Some(n) = self.optional(node, "max_connections") {
            limits.max_connections = self.number(n)?;
            if limits.max_connections == 0 {
                return Err(self.err(n.line, "max_connections must be at least 1".into()));
            }
        }
        if let Some(n) = self.optional(node, "drain_timeout") {
            limits.drain_timeout = self.duration(n)?;
        }
        Ok(limits)
    }

    fn service(&self, name: &str, body: &Node) -> Result<Service, ConfigError> {
        self.only(
            body,
            "service",
            &[
                "endpoints",
                "selector",
                "weights",
                "connect_timeout",
                "request_timeout",
                "retries",
                "health",
                "ejection",
            ],
        )?;
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for e in self.seq(&self.field(body, "endpoints")?)? {
            let address = self.addr(&self.field(&e, "address")?)?;
            if endpoints.iter().any(|x| x.address == address) {
                return Err(self.err(e.line, format!("endpoint {address} listed twice")));
            }
            let labels = match self.optional(&e, "labels") {
                Some(l) => self.labels(l)?,
                None => Labels::new(),
            };
            endpoints.push(Endpoint {
                address,
                labels,
                drained: false,
            });
        }
        let selection = match (body.get("selector"), body.get("weights")) {
            (Some(s), None) => Selection::Selector(self.labels(s)?),
            (None, Some(w)) => {
                let mut weighted = Vec::new();
                for item in self.seq(w)? {
                    let selector = self.labels(&self.field(&item, "selector")?)?;
                    let weight = self.number(&self.field(&item, "weight")?)?;
                    weighted.push(WeightedSelector { selector, weight });
                }
                Selection::Weighted(weighted)
            }
            _ => {
                return Err(self.err(
                    body.line,
                    format!("service {name}: give either `selector` or `weights`"),
                ));
            }
        };
        validate_selection(&selection)
            .map_err(|m| self.err(body.line, format!("service {name}: {m}")))?;
        let mut upstream = Upstream::default();
        if let Some(n) = self.optional(body, "connect_timeout") {
            upstream.connect_timeout = self.duration(n)?;
        }
        if let Some(n) = self.optional(body, "request_timeout") {
            upstream.request_timeout = self.duration(n)?;
        }
        if let Some(n) = self.optional(body, "retries") {
            upstream.retries = self.number(n)?;
        }
        if let Some(n) = self.optional(body, "health") {
            upstream.health = Some(self.health(n)?);
        }
        if let Some(n) = body.get("ejection") {
            upstream.ejection = self.ejection(n)?;
        }
        Ok(Service {
            endpoints,
            selection,
            upstream,
        })
    }

    fn health(&self, node: &Node) -> Result<HealthCheck, ConfigError> {
        self.only(
            node,
            "health",
            &[
                "path",
                "interval",
                "timeout",
                "healthy_threshold",
                "unhealthy_threshold",
            ],
        )?;
        let path_node = self.field(node, "path")?;
        let path = self.text(&path_node)?;
        if !path.starts_with('/') {
            return Err(self.err(path_node.line, format!("path {path:?} must start with /")));
        }
        let mut check = HealthCheck {
            path,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        };
        if let Some(n) = self.optional(node, "interval") {
            check.interval = self.duration(n)?;
        }
        if let Some(n) = self.optional(node, "timeout") {
            check.timeout = self.duration(n)?;
        }
        if let Some(n) = self.optional(node, "healthy_threshold") {
            check.healthy_threshold = self.number::<u32>(n)?.max(1);
        }
        if let Some(n) = self.optional(node, "unhealthy_threshold") {
            check.unhealthy_threshold = self.number::<u32>(n)?.max(1);
        }
        Ok(check)
    }

    /// `ejection: off` (or `false`) turns passive ejection off.
    fn ejection(&self, node: &Node) -> Result<Option<Ejection>, ConfigError> {
        if node.is_null() || matches!(node.as_str(), Some("off" | "false")) {
            return Ok(None);
        }
        self.only(node, "ejection", &["consecutive_failures", "duration"])?;
        let mut ejection = Upstream::default()
            .ejection
            .expect("ejection is on by default");
        if let Some(n) = self.optional(node, "consecutive_failures") {
            ejection.consecutive_failures = self.number::<u32>(n)?.max(1);
        }
        if let Some(n) = self.optional(node, "duration") {
            ejection.duration = self.duration(n)?;
        }
        Ok(Some(ejection))
    }

    fn route(&self, r: &Node, services: &BTreeMap<String, Service>) -> Result<Route, ConfigError> {
        self.only(
            r,
            "route",
            &[
                "name", "host", "path", "prefix", "methods", "headers", "service",
            ],
        )?;
        let host = match self.optional(r, "host") {
            Some(h) => Some(self.host(h)?).filter(|h| h != "*"),
            None => None,
        };
        let path = match (r.get("path"), r.get("prefix")) {
            (Some(p), None) => PathMatch::Exact(self.text(p)?),
            (None, Some(p)) => PathMatch::Prefix(self.text(p)?),
            _ => {
                return Err(self.err(
                    r.line,
                    "a route needs exactly one of `path` (exact) or `prefix`".into(),
                ));
            }
        };
        if let PathMatch::Exact(p) | PathMatch::Prefix(p) = &path
            && !p.starts_with('/')
        {
            return Err(self.err(r.line, format!("path {p:?} must start with /")));
        }
        let service_node = self.field(r, "service")?;
        let service = self.text(&service_node)?;
        if !services.contains_key(&service) {
            return Err(self.err(service_node.line, format!("unknown service {service:?}")));
        }
        let methods = match self.optional(r, "methods") {
            Some(m) => m.strings().iter().map(|m| m.to_ascii_uppercase()).collect(),
            None => Vec::new(),
        };
        let headers = match self.optional(r, "headers") {
            Some(h) => self
                .labels(h)?
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            None => Labels::new(),
        };
        let name = match self.optional(r, "name") {
            Some(n) => self.text(n)?,
            None => path.pattern(),
        };
        Ok(Route {
            name,
            host,
            path,
            methods,
            headers,
            service,
            line: r.line,
        })
    }

    /// A lower-case host name, `*`, or `*.domain` for every subdomain.
    pub fn host(&self, node: &Node) -> Result<String, ConfigError> {
        let host = self.text(node)?.to_ascii_lowercase();
        let bare = host.strip_prefix("*.").unwrap_or(&host);
        if host != "*"
            && (bare.is_empty()
                || bare.contains('*')
                || !bare
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-')))
        {
            return Err(self.err(
                node.line,
                format!("{host:?} is not a host name (`*.` may only lead it)"),
            ));
        }
        Ok(host)
    }
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

#[cfg(test)]
mod tests;
