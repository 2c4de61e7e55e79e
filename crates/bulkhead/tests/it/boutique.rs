//! The online-boutique demo fleet: real Kubernetes manifests, dependencies in env values.

use crate::*;

#[test]
fn scan_finds_services_dependencies_and_the_public_route() {
    let state = TempDir::new("boutique-state");
    let scan = scan_json(&testdata("online-boutique"), state.path());
    let names = service_names(&scan);
    assert_eq!(
        names,
        [
            "adservice",
            "cartservice",
            "checkoutservice",
            "currencyservice",
            "emailservice",
            "frontend",
            "loadgenerator",
            "paymentservice",
            "productcatalogservice",
            "recommendationservice",
            "redis-cart",
            "shippingservice"
        ]
    );
    let frontend = service(&scan, "frontend");
    assert_eq!(
        strings(&frontend["depends_on"]),
        [
            "adservice",
            "cartservice",
            "checkoutservice",
            "currencyservice",
            "productcatalogservice",
            "recommendationservice",
            "shippingservice"
        ]
    );
    let unresolved: Vec<&Value> = frontend["unresolved_dependencies"]
        .as_array()
        .expect("list")
        .iter()
        .collect();
    assert_eq!(unresolved.len(), 1);
    assert_eq!(unresolved[0]["target"], "shoppingassistantservice");
    assert_eq!(
        unresolved[0]["at"]["path"],
        "kubernetes-manifests/frontend.yaml"
    );
    assert_eq!(unresolved[0]["at"]["line"], 83);
    assert_eq!(
        strings(&service(&scan, "checkoutservice")["depends_on"]),
        [
            "cartservice",
            "currencyservice",
            "emailservice",
            "paymentservice",
            "productcatalogservice",
            "shippingservice"
        ]
    );
    assert_eq!(
        strings(&service(&scan, "recommendationservice")["depends_on"]),
        ["productcatalogservice"]
    );
    assert_eq!(
        strings(&service(&scan, "cartservice")["depends_on"]),
        ["redis-cart"]
    );
    assert_eq!(
        strings(&service(&scan, "loadgenerator")["depends_on"]),
        ["frontend"]
    );
    for leaf in [
        "adservice",
        "currencyservice",
        "emailservice",
        "paymentservice",
        "productcatalogservice",
        "redis-cart",
        "shippingservice",
    ] {
        assert_eq!(
            strings(&service(&scan, leaf)["depends_on"]),
            Vec::<String>::new(),
            "{leaf}"
        );
    }
    let routes = frontend["routes"].as_array().expect("routes");
    assert!(
        routes
            .iter()
            .any(|r| r["name"] == "frontend-external" && r["public"] == true),
        "frontend-external must be a public route to frontend: {routes:?}"
    );
    assert_eq!(
        strings(&service(&scan, "redis-cart")["images"]),
        ["docker.io/library/redis:alpine"]
    );
    let diagnostics = scan["diagnostics"].as_array().expect("diagnostics");
    assert!(
        diagnostics
            .iter()
            .any(|d| d["path"] == "kubernetes-manifests/frontend.yaml"
                && d["line"] == 83
                && d["severity"] == "warning"),
        "{diagnostics:?}"
    );
}

#[test]
fn impact_of_cartservice_reaches_its_callers_only() {
    let state = TempDir::new("boutique-impact");
    let out = run_ok(
        bulkhead()
            .args(["impact", "services", "cartservice", "--json", "--path"])
            .arg(testdata("online-boutique"))
            .arg("--state")
            .arg(state.path()),
    );
    let report = json(&out);
    let who: Vec<(String, String)> = report["who_is_impacted"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap_or("").to_string(),
                s["reason"]["kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = [
        ("cartservice", "changed"),
        ("checkoutservice", "calls"),
        ("frontend", "calls"),
        ("loadgenerator", "calls"),
    ];
    assert_eq!(who, expected.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(strings(&report["untouched"]).len(), 8);
    let frontend = &report["who_is_impacted"][2];
    assert!(
        strings(&frontend["public_routes"])
            .iter()
            .any(|r| r == "*/"),
        "{frontend}"
    );

    let markdown = run_ok(
        bulkhead()
            .args([
                "impact",
                "services",
                "cartservice",
                "--format",
                "markdown",
                "--path",
            ])
            .arg(testdata("online-boutique"))
            .arg("--state")
            .arg(state.path()),
    );
    assert!(
        markdown.starts_with("## bulkhead impact: upgrade cartservice"),
        "{markdown}"
    );
}

#[test]
fn unknown_service_is_a_clear_error() {
    let state = TempDir::new("boutique-unknown");
    let out = bulkhead()
        .args(["impact", "services", "cart", "--path"])
        .arg(testdata("online-boutique"))
        .arg("--state")
        .arg(state.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown service(s): cart (did you mean cartservice, redis-cart?)"),
        "{stderr}"
    );
}

#[test]
fn missing_path_is_an_error_not_an_empty_fleet() {
    let out = bulkhead()
        .args(["scan", "/nonexistent/fleet"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/fleet: no such file or directory")
    );
}
