use super::*;
use crate::parse;

/// Each bad file and the exact error it must produce.
#[test]
fn config_errors_carry_file_and_line() {
    let check = |text: &str, want: &str| {
        assert_eq!(parse("gw.yaml", text).unwrap_err().to_string(), want);
    };
    check(
        "listeners: []\nroutes:\n  - prefix: /\n    service: nope\nservices: {}\n",
        "gw.yaml:4: unknown service \"nope\"",
    );
    check(
        "listeners:\n  - address: localhost\nroutes: []\nservices: {}\n",
        "gw.yaml:2: \"localhost\" is not an IP address and port",
    );
    check(
        "listeners: []\nroutes: []\nservices:\n  a:\n    endpoints: []\n",
        "gw.yaml:5: service a: give either `selector` or `weights`",
    );
    check(
        "listeners: []\nroutes:\n  - path: /a\n    prefix: /a\n    service: x\nservices: {}\n",
        "gw.yaml:3: a route needs exactly one of `path` (exact) or `prefix`",
    );
    check(
        "listeners: []\nservices:\n  a:\n    endpoints: []\n    selector: {v: a}\n    conect_timeout: 1s\n",
        "gw.yaml:6: unknown service field `conect_timeout` (known: endpoints, selector, weights, connect_timeout, request_timeout, retries, health, ejection)",
    );
    check(
        "listeners: []\nservices:\n  a:\n    endpoints: []\n    selector: {v: a}\n    request_timeout: 5 seconds\n",
        "gw.yaml:6: \"5 seconds\" is not a duration (unknown unit; write e.g. 250ms, 30s, 5m, 1h30m or 2d)",
    );
    check(
        "listeners: []\nlimits:\n  max_header_bytes: 100\nservices: {}\n",
        "gw.yaml:3: max_header_bytes must be at least 8192",
    );
    check(
        "listeners: []\nservices:\n  a:\n    endpoints: []\n    selector: {v: a}\n    health: {interval: 1s}\n",
        "gw.yaml:6: missing `path`",
    );
    check(
        "listeners: []\nroutes:\n  - {host: \"a.*.com\", prefix: /, service: a}\nservices: {}\n",
        "gw.yaml:3: \"a.*.com\" is not a host name (`*.` may only lead it)",
    );
    check(
        "listeners: []\nservices: {}\n---\nlisteners: []\nservices: {}\n",
        "gw.yaml:4: a second gateway document (only HTTPRoute documents may follow the first)",
    );
}

#[test]
fn upstream_settings_and_limits_are_read_with_defaults() {
    let config = parse(
        "gw.yaml",
        "listeners: []
limits: {max_body_bytes: 1024, idle_timeout: 2m, header_timeout: 500ms, tunnel_idle_timeout: 1h30m}
services:
  a:
    endpoints: [{address: 127.0.0.1:1}]
    selector: {v: a}
    connect_timeout: 250ms
    retries: 2
    health: {path: /healthz, interval: 1s, unhealthy_threshold: 1}
    ejection: {consecutive_failures: 3}
  b:
    endpoints: [{address: 127.0.0.1:2}]
    selector: {v: b}
    ejection: off
",
    )
    .unwrap();
    assert_eq!(config.limits.max_body_bytes, 1024);
    assert_eq!(config.limits.idle_timeout, Duration::from_secs(120));
    assert_eq!(config.limits.header_timeout, Duration::from_millis(500));
    assert_eq!(
        config.limits.tunnel_idle_timeout,
        Duration::from_secs(90 * 60)
    );
    assert_eq!(
        config.limits.max_connections,
        Limits::default().max_connections
    );
    let a = &config.services["a"].upstream;
    assert_eq!(a.connect_timeout, Duration::from_millis(250));
    assert_eq!(a.request_timeout, Upstream::default().request_timeout);
    assert_eq!(a.retries, 2);
    let health = a.health.as_ref().unwrap();
    assert_eq!(
        (
            health.path.as_str(),
            health.interval,
            health.unhealthy_threshold,
            health.healthy_threshold
        ),
        ("/healthz", Duration::from_secs(1), 1, 2)
    );
    assert_eq!(
        a.ejection,
        Some(Ejection {
            consecutive_failures: 3,
            duration: Duration::from_secs(10)
        })
    );
    assert_eq!(config.services["b"].upstream.ejection, None);
    // Durations read back as the file writes them.
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["limits"]["idle_timeout"], "2m");
    assert_eq!(json["limits"]["tunnel_idle_timeout"], "1h30m");
    assert_eq!(
        json["services"]["a"]["upstream"]["connect_timeout"],
        "250ms"
    );
}

const SERVICES: &str = "listeners: []
services:
  orders-stable:
    endpoints:
      - {address: 127.0.0.1:1, labels: {app: orders, version: stable}}
      - {address: 127.0.0.1:2, labels: {app: orders, version: canary}}
    selector: {app: orders, version: stable}
  orders-canary:
    endpoints:
      - {address: 127.0.0.1:2, labels: {app: orders, version: canary}}
    selector: {app: orders, version: canary}
  web:
    endpoints: [{address: 127.0.0.1:3, labels: {app: web}}]
    selector: {app: web}
";

#[test]
fn httproute_documents_become_routes_and_weighted_services() {
    let text = format!(
        "{SERVICES}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: orders}}
spec:
  parentRefs: [{{name: bulkhead}}]
  hostnames: [shop.example.com, \"*.shop.example.com\"]
  rules:
    - matches:
        - path: {{type: PathPrefix, value: /api/orders/}}
          headers: [{{name: X-Canary, value: \"1\"}}]
          method: POST
        - path: {{type: Exact, value: /orders}}
      backendRefs:
        - {{name: orders-stable, port: 8080, weight: 90}}
        - {{name: orders-canary, port: 8080, weight: 10}}
    - backendRefs: [{{name: web, port: 80}}]
"
    );
    let config = parse("routes.yaml", &text).unwrap();
    type Row<'a> = (
        Option<&'a str>,
        &'a PathMatch,
        &'a [String],
        usize,
        &'a str,
        u32,
    );
    let routes: Vec<Row<'_>> = config
        .routes
        .iter()
        .map(|r| {
            (
                r.host.as_deref(),
                &r.path,
                r.methods.as_slice(),
                r.headers.len(),
                r.service.as_str(),
                r.line,
            )
        })
        .collect();
    let prefix = PathMatch::Prefix("/api/orders".into());
    let exact = PathMatch::Exact("/orders".into());
    let root = PathMatch::Prefix("/".into());
    let post = ["POST".to_string()];
    assert_eq!(
        routes,
        [
            (
                Some("shop.example.com"),
                &prefix,
                &post[..],
                1,
                "orders.0",
                24
            ),
            (
                Some("*.shop.example.com"),
                &prefix,
                &post[..],
                1,
                "orders.0",
                24
            ),
            (Some("shop.example.com"), &exact, &[][..], 0, "orders.0", 27),
            (
                Some("*.shop.example.com"),
                &exact,
                &[][..],
                0,
                "orders.0",
                27
            ),
            (Some("shop.example.com"), &root, &[][..], 0, "web", 31),
            (Some("*.shop.example.com"), &root, &[][..], 0, "web", 31),
        ]
    );
    assert_eq!(config.routes[0].headers["x-canary"], "1");
    assert!(config.routes.iter().all(|r| r.name == "orders"));
    let derived = &config.services["orders.0"];
    let addresses: Vec<String> = derived
        .endpoints
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(addresses, ["127.0.0.1:1", "127.0.0.1:2"]);
    let Selection::Weighted(weights) = &derived.selection else {
        panic!("{:?}", derived.selection)
    };
    let weights: Vec<(&str, u32)> = weights
        .iter()
        .map(|w| (w.selector["version"].as_str(), w.weight))
        .collect();
    assert_eq!(weights, [("stable", 90), ("canary", 10)]);
}

#[test]
fn httproute_features_the_gateway_cannot_honour_are_refused_with_their_line() {
    let check = |spec: &str, want: &str| {
        let text = format!(
            "{SERVICES}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r}}\nspec:\n{spec}"
        );
        assert_eq!(
            parse("r.yaml", &text).unwrap_err().to_string(),
            want,
            "{spec}"
        );
    };
    // The HTTPRoute document's `spec:` is line 19 of the file, its first rule line 21.
    check(
        "  rules:\n    - matches: [{path: {type: RegularExpression, value: /a.*}}]\n      backendRefs: [{name: web}]\n",
        "r.yaml:21: path match type \"RegularExpression\" is not supported (PathPrefix, Exact)",
    );
    check(
        "  rules:\n    - matches: [{queryParams: [{name: a, value: b}]}]\n      backendRefs: [{name: web}]\n",
        "r.yaml:21: unknown HTTPRoute match field `queryParams` (known: path, headers, method)",
    );
    check(
        "  rules:\n    - filters: [{type: RequestHeaderModifier}]\n      backendRefs: [{name: web}]\n",
        "r.yaml:21: unknown HTTPRoute rule field `filters` (known: name, matches, backendRefs)",
    );
    check(
        "  rules:\n    - backendRefs:\n        - {name: nope, port: 80}\n",
        "r.yaml:22: unknown service \"nope\"",
    );
    check(
        "  rules:\n    - matches: [{headers: [{type: RegularExpression, name: a, value: b}]}]\n      backendRefs: [{name: web}]\n",
        "r.yaml:21: header match type \"RegularExpression\" is not supported (Exact)",
    );
    check(
        "  rules:\n    - backendRefs:\n        - {name: web, kind: ServiceImport}\n",
        "r.yaml:22: backendRef kind \"ServiceImport\" is not supported (Service)",
    );
    check(
        "  rules:\n    - backendRefs:\n        - {name: orders-stable, weight: 0}\n        - {name: orders-canary, weight: 0}\n",
        "r.yaml:22: weights must not all be zero",
    );
}
