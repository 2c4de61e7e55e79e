use super::*;
use crate::config::Labels;
use crate::parse;
use crate::state::{Change, ChangeError, Shared};
use hyper::header::HeaderMap;

const CONFIG: &str = "\
listeners:
  - address: 127.0.0.1:0
routes:
  - prefix: /
    service: web
  - prefix: /api
    service: api
  - prefix: /api/orders
    service: orders
  - path: /api/orders/health
    service: health
  - host: shop.example.com
    prefix: /api
    service: shop
  - host: shop.example.com
    path: /api/orders/health
    service: shop
  - prefix: /api/users
    headers: {X-Canary: \"1\"}
    service: shop
  - prefix: /api/users
    methods: [post]
    service: health
  - prefix: /api/users
    methods: POST
    headers: {x-canary: \"1\"}
    service: orders
services:
  web: {endpoints: [{address: 127.0.0.1:1, labels: {version: blue}}], selector: {version: blue}}
  api: {endpoints: [{address: 127.0.0.1:2, labels: {version: blue}}], selector: {version: blue}}
  orders:
    endpoints:
      - {address: 127.0.0.1:3, labels: {version: blue}}
      - {address: 127.0.0.1:4, labels: {version: blue}}
      - {address: 127.0.0.1:5, labels: {version: green}}
    selector: {version: blue}
  health: {endpoints: [{address: 127.0.0.1:6, labels: {version: blue}}], selector: {version: blue}}
  shop: {endpoints: [{address: 127.0.0.1:7, labels: {version: blue}}], selector: {version: blue}}
";

fn table() -> Table {
    Table::build(
        &parse("gateway.yaml", CONFIG).unwrap(),
        1,
        &Registry::default(),
    )
}

#[test]
fn precedence_exact_then_longest_prefix_then_host() {
    let t = table();
    let none = HeaderMap::new();
    let check = |host: Option<&str>, path: &str, want: Option<&str>| {
        assert_eq!(t.route("GET", host, path, &none), want, "{host:?} {path}");
    };
    check(None, "/", Some("web"));
    check(None, "/apiary", Some("web"));
    check(None, "/api", Some("api"));
    check(None, "/api/users", Some("api"));
    check(None, "/api/orders", Some("orders"));
    check(None, "/api/orders/7", Some("orders"));
    check(None, "/api/orders/health", Some("health"));
    check(None, "/api/orders/health/x", Some("orders"));
    // Host-specific wins only among equals: a longer wildcard prefix still wins.
    check(Some("shop.example.com:8080"), "/api/users", Some("shop"));
    check(Some("SHOP.example.com"), "/api/orders/1", Some("orders"));
    check(Some("shop.example.com"), "/api/orders/health", Some("shop"));
    check(Some("other.example.com"), "/api/users", Some("api"));
}

#[test]
fn header_and_method_matches_rank_after_path_and_host() {
    let t = table();
    let canary = HeaderMap::from_iter([("x-canary".parse().unwrap(), "1".parse().unwrap())]);
    let other = HeaderMap::from_iter([("x-canary".parse().unwrap(), "2".parse().unwrap())]);
    let none = HeaderMap::new();
    // More header matches first, then a method match, then the plain prefix.
    assert_eq!(
        t.route("POST", None, "/api/users/1", &canary),
        Some("orders")
    );
    assert_eq!(t.route("GET", None, "/api/users/1", &canary), Some("shop"));
    assert_eq!(t.route("POST", None, "/api/users/1", &none), Some("health"));
    assert_eq!(
        t.route("POST", None, "/api/users/1", &other),
        Some("health")
    );
    // Path and host still come first.
    assert_eq!(
        t.route("GET", Some("shop.example.com"), "/api/users", &none),
        Some("shop")
    );
    assert_eq!(
        t.route("POST", None, "/api/orders", &canary),
        Some("orders")
    );
    assert_eq!(t.route("PUT", None, "/api/users", &other), Some("api"));
}

#[test]
fn round_robin_over_the_selected_endpoints() {
    let t = table();
    let picks: Vec<u16> = (0..4)
        .map(|_| t.pick("orders").unwrap().address.port())
        .collect();
    assert_eq!(picks, [3, 4, 3, 4]);
    assert_eq!(&*t.pick("orders").unwrap().pool, "version=blue");
    assert!(t.pick("nope").is_none());
}

#[test]
fn a_switch_rebuilds_only_the_named_service() {
    let shared = Shared::new(parse("gateway.yaml", CONFIG).unwrap());
    let before = shared.table();
    let green = Labels::from([("version".to_string(), "green".to_string())]);
    assert_eq!(shared.apply("orders", Change::Selector(green)), Ok(2));
    let after = shared.table();
    assert_eq!(after.generation, 2);
    assert_eq!(after.pick("orders").unwrap().address.port(), 5);
    for other in ["web", "api", "health", "shop"] {
        assert!(
            Arc::ptr_eq(before.pools(other).unwrap(), after.pools(other).unwrap()),
            "{other}"
        );
    }
    // The old table still answers as before: in-flight requests keep their endpoint.
    assert_eq!(&*before.pick("orders").unwrap().pool, "version=blue");
}

#[test]
fn refused_changes_leave_the_table_alone() {
    let shared = Shared::new(parse("gateway.yaml", CONFIG).unwrap());
    let red = Labels::from([("version".to_string(), "red".to_string())]);
    assert_eq!(
        shared.apply("orders", Change::Selector(red)),
        Err(ChangeError::NoLiveEndpoint("orders".into()))
    );
    assert!(matches!(
        shared.apply("nope", Change::Selector(Labels::new())),
        Err(ChangeError::UnknownService(_))
    ));
    assert!(matches!(
        shared.apply("orders", Change::Selector(Labels::new())),
        Err(ChangeError::Invalid(_))
    ));
    assert_eq!(shared.table().generation, 1);
}

#[test]
fn weights_split_traffic_exactly_per_cycle_and_drain_removes_an_endpoint() {
    let shared = Shared::new(parse("gateway.yaml", CONFIG).unwrap());
    let sel = |v: &str| Labels::from([("version".to_string(), v.to_string())]);
    let weights = vec![
        crate::config::WeightedSelector {
            selector: sel("blue"),
            weight: 3,
        },
        crate::config::WeightedSelector {
            selector: sel("green"),
            weight: 1,
        },
    ];
    shared.apply("orders", Change::Weights(weights)).unwrap();
    let t = shared.table();
    let green = (0..400)
        .filter(|_| &*t.pick("orders").unwrap().pool == "version=green")
        .count();
    assert_eq!(green, 100);
    let drained: SocketAddr = "127.0.0.1:3".parse().unwrap();
    assert_eq!(shared.apply("orders", Change::Drain(drained)), Ok(3));
    let t = shared.table();
    assert!((0..40).all(|_| t.pick("orders").unwrap().address != drained));
    assert_eq!(shared.apply("orders", Change::Undrain(drained)), Ok(4));
    assert!((0..40).any(|_| shared.table().pick("orders").unwrap().address == drained));
}

#[test]
fn ejected_and_failing_endpoints_are_skipped_and_reported() {
    let t = table();
    let ejection = crate::config::Ejection {
        consecutive_failures: 2,
        duration: std::time::Duration::from_secs(60),
    };
    let first = t.pick("orders").unwrap();
    first.cell.failed(Some(&ejection));
    assert!(t.down().is_empty(), "one failure of two does not eject");
    first.cell.failed(Some(&ejection));
    assert!((0..10).all(|_| t.pick("orders").unwrap().address != first.address));
    assert_eq!(
        t.down()["orders"][&first.address],
        crate::health::Down::Ejected
    );
    let other = t.pick("orders").unwrap();
    other.cell.failed(Some(&ejection));
    other.cell.failed(Some(&ejection));
    assert_eq!(
        t.pools("orders").unwrap().choose(&[]).unwrap_err(),
        NoEndpoint::AllDown
    );
    // Without ejection configured, failures never take an endpoint out.
    let web = t.pick("web").unwrap();
    for _ in 0..10 {
        web.cell.failed(None);
    }
    assert!(t.pick("web").is_some());
}

#[test]
fn wildcard_hosts_match_subdomains_after_exact_hosts() {
    let config = parse(
        "gw.yaml",
        "listeners: []
routes:
  - {host: \"*.example.com\", prefix: /, service: a}
  - {host: shop.example.com, prefix: /, service: b}
services:
  a: {endpoints: [{address: 127.0.0.1:1, labels: {v: a}}], selector: {v: a}}
  b: {endpoints: [{address: 127.0.0.1:2, labels: {v: b}}], selector: {v: b}}
",
    )
    .unwrap();
    let t = Table::build(&config, 1, &Registry::default());
    let none = HeaderMap::new();
    for (host, want) in [
        (Some("shop.example.com"), Some("b")),
        (Some("api.example.com"), Some("a")),
        (Some("a.b.example.com:80"), Some("a")),
        (Some("example.com"), None),
        (None, None),
    ] {
        assert_eq!(t.route("GET", host, "/x", &none), want, "{host:?}");
    }
}
