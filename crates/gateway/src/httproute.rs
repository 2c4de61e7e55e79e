//! Gateway API `HTTPRoute` documents as routing input, so routes written for
//! Kubernetes work unchanged (the mapping is in docs/gateway.md, "HTTPRoute").
//!
//! Each `(hostname, match)` pair of a rule becomes one route. A rule with one
//! `backendRef` targets that service; a rule with several becomes a service of its
//! own, `NAME.RULE`, whose weighted pools are the referenced services' selectors
//! over the union of their endpoints — so its weights can be changed through the
//! admin API like any canary. Features the gateway cannot honour (filters,
//! regular expressions, query matches) are refused with their line, never ignored.

use crate::config::{
    Config, ConfigError, Endpoint, PathMatch, Reader, Route, Selection, Service, WeightedSelector,
};
use yaml::Node;

/// Adds one `HTTPRoute` document's routes (and any weighted services) to `config`.
pub(crate) fn add(p: &Reader<'_>, doc: &Node, config: &mut Config) -> Result<(), ConfigError> {
    let kind = p.text(&p.field(doc, "kind")?)?;
    if kind != "HTTPRoute" {
        return Err(p.err(
            doc.line,
            format!("unsupported kind {kind:?}: only HTTPRoute documents may follow the gateway document"),
        ));
    }
    let api = p.text(&p.field(doc, "apiVersion")?)?;
    if !api.starts_with("gateway.networking.k8s.io/") {
        return Err(p.err(
            doc.line,
            format!("apiVersion {api:?} is not gateway.networking.k8s.io"),
        ));
    }
    let name = p.text(&p.field(&p.field(doc, "metadata")?, "name")?)?;
    let spec = p.field(doc, "spec")?;
    p.only(
        &spec,
        "HTTPRoute spec",
        &["parentRefs", "hostnames", "rules"],
    )?;
    let hostnames: Vec<Option<String>> = match p.optional(&spec, "hostnames") {
        Some(list) => {
            let mut hosts = Vec::new();
            for h in p.seq(list)? {
                hosts.push(Some(p.host(&h)?).filter(|h| h != "*"));
            }
            hosts
        }
        None => Vec::new(),
    };
    let hostnames = if hostnames.is_empty() {
        vec![None]
    } else {
        hostnames
    };
    for (index, rule) in p.seq(&p.field(&spec, "rules")?)?.iter().enumerate() {
        p.only(rule, "HTTPRoute rule", &["name", "matches", "backendRefs"])?;
        let service = backend(p, &name, index, rule, config)?;
        let matches = match p.optional(rule, "matches") {
            Some(list) => p.seq(list)?,
            None => Vec::new(),
        };
        let matches: Vec<Option<Node>> = if matches.is_empty() {
            vec![None]
        } else {
            matches.into_iter().map(Some).collect()
        };
        for m in &matches {
            let (path, methods, headers) = match m {
                Some(m) => route_match(p, m)?,
                None => (
                    PathMatch::Prefix("/".into()),
                    Vec::new(),
                    Default::default(),
                ),
            };
            for host in &hostnames {
                config.routes.push(Route {
                    name: name.clone(),
                    host: host.clone(),
                    path: path.clone(),
                    methods: methods.clone(),
                    headers: headers.clone(),
                    service: service.clone(),
                    line: m.as_ref().map_or(rule.line, |m| m.line),
                });
            }
        }
    }
    Ok(())
}

type Match = (PathMatch, Vec<String>, crate::config::Labels);

fn route_match(p: &Reader<'_>, m: &Node) -> Result<Match, ConfigError> {
    p.only(m, "HTTPRoute match", &["path", "headers", "method"])?;
    let path = match p.optional(m, "path") {
        Some(node) => {
            p.only(node, "path match", &["type", "value"])?;
            let value = match p.optional(node, "value") {
                Some(v) => p.text(v)?,
                None => "/".into(),
            };
            if !value.starts_with('/') {
                return Err(p.err(node.line, format!("path {value:?} must start with /")));
            }
            let kind = match p.optional(node, "type") {
                Some(t) => p.text(t)?,
                None => "PathPrefix".into(),
            };
            match kind.as_str() {
                // Gateway API prefixes match whole segments and ignore a trailing slash.
                "PathPrefix" if value.len() > 1 => {
                    PathMatch::Prefix(value.trim_end_matches('/').to_string())
                }
                "PathPrefix" => PathMatch::Prefix(value),
                "Exact" => PathMatch::Exact(value),
                other => {
                    return Err(p.err(
                        node.line,
                        format!("path match type {other:?} is not supported (PathPrefix, Exact)"),
                    ));
                }
            }
        }
        None => PathMatch::Prefix("/".into()),
    };
    let mut headers = crate::config::Labels::new();
    if let Some(list) = p.optional(m, "headers") {
        for h in p.seq(list)? {
            p.only(&h, "header match", &["type", "name", "value"])?;
            if let Some(t) = p.optional(&h, "type") {
                let t = p.text(t)?;
                if t != "Exact" {
                    return Err(p.err(
                        h.line,
                        format!("header match type {t:?} is not supported (Exact)"),
                    ));
                }
            }
            let name = p.text(&p.field(&h, "name")?)?.to_ascii_lowercase();
            let value = p.text(&p.field(&h, "value")?)?;
            headers.insert(name, value);
        }
    }
    let methods = match p.optional(m, "method") {
        Some(node) => vec![p.text(node)?.to_ascii_uppercase()],
        None => Vec::new(),
    };
    Ok((path, methods, headers))
}

/// The service a rule's `backendRefs` name, creating the weighted one for several.
fn backend(
    p: &Reader<'_>,
    route: &str,
    index: usize,
    rule: &Node,
    config: &mut Config,
) -> Result<String, ConfigError> {
    let refs_node = p.field(rule, "backendRefs")?;
    let mut refs: Vec<(String, u32, u32)> = Vec::new();
    for r in p.seq(&refs_node)? {
        p.only(
            &r,
            "backendRef",
            &["name", "port", "weight", "kind", "group"],
        )?;
        if let Some(kind) = p.optional(&r, "kind") {
            let kind = p.text(kind)?;
            if kind != "Service" {
                return Err(p.err(
                    r.line,
                    format!("backendRef kind {kind:?} is not supported (Service)"),
                ));
            }
        }
        let name_node = p.field(&r, "name")?;
        let name = p.text(&name_node)?;
        if !config.services.contains_key(&name) {
            return Err(p.err(name_node.line, format!("unknown service {name:?}")));
        }
        let weight = match p.optional(&r, "weight") {
            Some(w) => p.number(w)?,
            None => 1,
        };
        refs.push((name, weight, r.line));
    }
    match refs.as_slice() {
        [] => Err(p.err(refs_node.line, "backendRefs is empty".into())),
        [(name, _, _)] => Ok(name.clone()),
        _ => {
            let mut endpoints: Vec<Endpoint> = Vec::new();
            let mut weighted = Vec::new();
            for (name, weight, line) in &refs {
                let service = &config.services[name];
                let Selection::Selector(selector) = &service.selection else {
                    return Err(p.err(
                        *line,
                        format!("service {name:?} is itself weighted; a weighted backendRef needs a service with one selector"),
                    ));
                };
                for e in &service.endpoints {
                    match endpoints.iter().find(|x| x.address == e.address) {
                        Some(x) if x.labels != e.labels => {
                            return Err(p.err(
                                *line,
                                format!(
                                    "endpoint {} has different labels in two backendRefs' services",
                                    e.address
                                ),
                            ));
                        }
                        Some(_) => {}
                        None => endpoints.push(e.clone()),
                    }
                }
                weighted.push(WeightedSelector {
                    selector: selector.clone(),
                    weight: *weight,
                });
            }
            let selection = Selection::Weighted(weighted);
            crate::config::validate_selection(&selection).map_err(|m| p.err(refs_node.line, m))?;
            let derived = format!("{route}.{index}");
            if config.services.contains_key(&derived) {
                return Err(p.err(
                    rule.line,
                    format!("service {derived:?} (this rule's weighted backends) already exists"),
                ));
            }
            let upstream = config.services[&refs[0].0].upstream.clone();
            config.services.insert(
                derived.clone(),
                Service {
                    endpoints,
                    selection,
                    upstream,
                },
            );
            Ok(derived)
        }
    }
}
