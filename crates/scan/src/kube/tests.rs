//! Kubernetes manifests through the crate's front door ([`crate::parse`]), so
//! the document dispatch in `lib.rs` is exercised too. Each case renders the
//! facts compactly, one line per fact, and compares with the expected text.

use crate::test_support::dedent;
use crate::{FileKind, parse};
use model::{Diagnostic, Facts, Workload};
use std::collections::BTreeMap;

const BOUTIQUE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/online-boutique/kubernetes-manifests"
);

fn map(m: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(","))
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

fn render_workload(out: &mut Vec<String>, w: &Workload) {
    out.push(format!(
        "{:?} {}/{} labels{} pods{} @{}",
        w.kind,
        w.namespace,
        w.name,
        map(&w.labels),
        map(&w.pod_labels),
        w.at.line
    ));
    for c in &w.containers {
        let parsed = c
            .image_ref
            .as_ref()
            .map_or("invalid".to_string(), ToString::to_string);
        out.push(format!(
            "  {} {} {} ({parsed}){} @{}",
            if c.init { "init" } else { "container" },
            if c.name.is_empty() { "-" } else { &c.name },
            if c.image.is_empty() { "-" } else { &c.image },
            if c.has_resource_limits { " limits" } else { "" },
            c.at.line
        ));
        for e in &c.env {
            out.push(format!(
                "    env {}={} @{}",
                e.name,
                e.value.as_deref().unwrap_or("<from>"),
                e.at.line
            ));
        }
    }
}

fn render_diagnostic(d: &Diagnostic) -> String {
    format!(
        "{} @{}: {}",
        d.severity,
        d.line.map_or("-".to_string(), |l| l.to_string()),
        d.message
    )
}

/// One line per fact, in the order the parser produced them within each kind.
fn render(facts: &Facts) -> String {
    let mut out = Vec::new();
    for w in &facts.workloads {
        render_workload(&mut out, w);
    }
    for s in &facts.kube_services {
        out.push(format!(
            "service {}/{} {} {:?} {} @{}",
            s.namespace,
            s.name,
            s.service_type,
            s.ports,
            map(&s.selector),
            s.at.line
        ));
    }
    for r in &facts.routes {
        out.push(format!(
            "route {:?} {}/{} {}{} -> {} {} @{}",
            r.kind,
            r.namespace,
            r.name,
            or_dash(r.host.as_deref()),
            r.path,
            r.backend,
            if r.public { "public" } else { "internal" },
            r.at.line
        ));
    }
    for o in &facts.image_overrides {
        out.push(format!(
            "override {} name={} tag={} digest={} @{}",
            o.name,
            or_dash(o.new_name.as_deref()),
            or_dash(o.new_tag.as_deref()),
            or_dash(o.digest.as_deref()),
            o.at.line
        ));
    }
    assert!(facts.catalog.is_empty() && facts.hosts.is_empty());
    out.extend(facts.diagnostics.iter().map(render_diagnostic));
    out.iter().map(|l| format!("{l}\n")).collect()
}

#[track_caller]
fn check(text: &str, expect: &str) {
    let facts = parse("k8s.yaml", FileKind::Yaml, &dedent(text));
    assert!(
        facts
            .workloads
            .iter()
            .flat_map(|w| &w.containers)
            .all(|c| c.at.path == "k8s.yaml"),
        "provenance keeps the path"
    );
    expect_render(&facts, expect);
}

#[track_caller]
fn expect_render(facts: &Facts, expect: &str) {
    ::test_support::expect_text(&render(facts), expect);
}

fn boutique(file: &str) -> Facts {
    let text = ::test_support::read(format!("{BOUTIQUE}/{file}"));
    parse(file, FileKind::Yaml, &text)
}

#[test]
fn boutique_frontend() {
    let facts = boutique("frontend.yaml");
    expect_render(
        &facts,
        "
        Deployment default/frontend labels{app=frontend} pods{app=frontend} @15
          container server frontend (docker.io/library/frontend) limits @39
            env PORT=8080 @67
            env PRODUCT_CATALOG_SERVICE_ADDR=productcatalogservice:3550 @69
            env CURRENCY_SERVICE_ADDR=currencyservice:7000 @71
            env CART_SERVICE_ADDR=cartservice:7070 @73
            env RECOMMENDATION_SERVICE_ADDR=recommendationservice:8080 @75
            env SHIPPING_SERVICE_ADDR=shippingservice:50051 @77
            env CHECKOUT_SERVICE_ADDR=checkoutservice:5050 @79
            env AD_SERVICE_ADDR=adservice:9555 @81
            env SHOPPING_ASSISTANT_SERVICE_ADDR=shoppingassistantservice:80 @83
            env ENABLE_PROFILER=0 @89
        service default/frontend ClusterIP [80] {app=frontend} @108
        service default/frontend-external LoadBalancer [80] {app=frontend} @123
        route ExposedService default/frontend-external -/ -> frontend-external public @123
        ",
    );
    assert!(facts.workloads[0].at.path == "frontend.yaml");
}

#[test]
fn boutique_loadgenerator_has_an_init_container() {
    expect_render(
        &boutique("loadgenerator.yaml"),
        "
        Deployment default/loadgenerator labels{app=loadgenerator} pods{app=loadgenerator} @14
          container main loadgenerator (docker.io/library/loadgenerator) limits @72
            env FRONTEND_ADDR=frontend:80 @82
            env USERS=10 @84
            env RATE=1 @86
          init frontend-check busybox:1.38.0@sha256:fd8d9aa63ba2f0982b5304e1ee8d3b90a210bc1ffb5314d980eb6962f1a9715d (docker.io/library/busybox:1.38.0@sha256:fd8d9aa63ba2f0982b5304e1ee8d3b90a210bc1ffb5314d980eb6962f1a9715d) @41
            env FRONTEND_ADDR=frontend:80 @69
        ",
    );
}

#[test]
fn boutique_redis_cart_image_parses() {
    let facts = boutique("cartservice.yaml");
    let redis = facts
        .workloads
        .iter()
        .find(|w| w.name == "redis-cart")
        .expect("redis-cart Deployment");
    let container = &redis.containers[0];
    assert_eq!(container.image, "redis:alpine");
    let image = container.image_ref.as_ref().expect("image parses");
    assert_eq!(image.to_string(), "docker.io/library/redis:alpine");
    assert!(container.has_resource_limits);
    assert!(container.env.is_empty());
    assert_eq!(redis.service_name(), "redis-cart");
    let services: Vec<&str> = facts
        .kube_services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(services, ["cartservice", "redis-cart"]);
}

/// Every manifest in the fixture reads without a diagnostic, and every
/// Deployment has a Service that selects its pods (loadgenerator excepted: it
/// only calls out).
#[test]
fn boutique_reads_cleanly() {
    let files: Vec<String> = ::test_support::read_dir(BOUTIQUE, ".yaml")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut all = Facts::default();
    for file in &files {
        all.extend(boutique(file));
    }
    assert_eq!(all.diagnostics, []);
    assert_eq!(all.workloads.len(), 12, "11 services and redis-cart");
    for w in &all.workloads {
        let selected = all.kube_services.iter().any(|s| s.selects(&w.pod_labels));
        assert!(
            selected || w.name == "loadgenerator",
            "{} has no Service",
            w.name
        );
        assert!(w.containers.iter().all(|c| c.image_ref.is_some()));
    }
    let public: Vec<&str> = all
        .routes
        .iter()
        .filter(|r| r.public)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(public, ["frontend-external"]);
}

#[test]
fn workload_kinds() {
    check(
        "
        apiVersion: apps/v1
        kind: StatefulSet
        metadata:
          name: db
          namespace: data
          labels: {tier: '1'}
        spec:
          template:
            metadata:
              labels: {app: db}
            spec:
              containers:
              - name: postgres
                image: postgres:16.4
                resources:
                  limits: {memory: 1Gi}
        ---
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: node-exporter, namespace: monitoring}
        spec:
          template:
            metadata: {labels: {app: node-exporter}}
            spec:
              containers:
              - {name: exporter, image: 'quay.io/prometheus/node-exporter:v1.8.2'}
        ---
        apiVersion: batch/v1
        kind: Job
        metadata: {name: migrate}
        spec:
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: migrate
                image: registry.acme.io:5000/orders/migrate@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
                resources:
                  requests: {cpu: 100m}
        ---
        apiVersion: batch/v1
        kind: CronJob
        metadata: {name: report}
        spec:
          schedule: '0 3 * * *'
          jobTemplate:
            spec:
              template:
                metadata: {labels: {app: report}}
                spec:
                  containers:
                  - name: report
                    image: ghcr.io/acme/report:2.0
                    env:
                    - name: DB
                      value: db.data:5432
        ---
        apiVersion: v1
        kind: Pod
        metadata:
          name: debug
          labels: {app: debug}
        spec:
          containers:
          - name: shell
            image: busybox
        ---
        apiVersion: apps/v1
        kind: ReplicaSet
        metadata: {name: frontend-5d8f}
        spec:
          template:
            spec:
              containers: [{name: server, image: frontend}]
        ",
        "
        StatefulSet data/db labels{tier=1} pods{app=db} @1
          container postgres postgres:16.4 (docker.io/library/postgres:16.4) limits @13
        DaemonSet monitoring/node-exporter labels{} pods{app=node-exporter} @18
          container exporter quay.io/prometheus/node-exporter:v1.8.2 (quay.io/prometheus/node-exporter:v1.8.2) @26
        Job default/migrate labels{} pods{} @28
          container migrate registry.acme.io:5000/orders/migrate@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef (registry.acme.io:5000/orders/migrate@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef) @36
        CronJob default/report labels{} pods{app=report} @41
          container report ghcr.io/acme/report:2.0 (ghcr.io/acme/report:2.0) @52
            env DB=db.data:5432 @55
        Pod default/debug labels{app=debug} pods{app=debug} @58
          container shell busybox (docker.io/library/busybox) @65
        ",
    );
}

#[test]
fn env_values_come_from_literals_only() {
    check(
        "
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: orders}
        spec:
          template:
            spec:
              containers:
              - name: app
                image: orders:1.0
                env:
                - {name: PORT, value: 8080}
                - {name: DEBUG, value: true}
                - {name: EMPTY}
                - name: PASSWORD
                  valueFrom:
                    secretKeyRef: {name: db, key: password}
                - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
                - {value: orphan}
                - {name: BAD, value: {nested: map}}
                envFrom:
                - configMapRef: {name: orders-config}
        ",
        "
        Deployment default/orders labels{} pods{} @1
          container app orders:1.0 (docker.io/library/orders:1.0) @8
            env PORT=8080 @11
            env DEBUG=true @12
            env EMPTY= @13
            env PASSWORD=<from> @14
            env NODE=<from> @17
            env BAD=<from> @19
        warning @18: Deployment orders: container app: env entry has no name
        warning @19: Deployment orders: container app: env BAD: value is not a string
        ",
    );
}

#[test]
fn bad_shapes_are_warnings_with_lines() {
    check(
        "
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: no-list}
        spec:
          template:
            spec:
              containers: {name: app, image: app}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {labels: {app: nameless}}
        spec: {}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: no-template}
        spec: {replicas: 2}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: sloppy}
        spec:
          template:
            spec:
              initContainers: oops
              containers:
              - image: nginx:1.27
              - name: sidecar
              - name: bad-ref
                image: 'Registry.Acme/App:1.0'
              - just-a-string
              - name: bad-limits
                image: app:1
                resources: {limits: {nvidia.com/gpu: 1}}
        ---
        apiVersion: batch/v1
        kind: CronJob
        metadata: {name: lost}
        spec: {schedule: '@daily', jobTemplate: {}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: empty}
        spec: {}
        ",
        "
        Deployment default/no-list labels{} pods{} @1
        Deployment default/no-template labels{} pods{} @14
        Deployment default/sloppy labels{} pods{} @19
          container - nginx:1.27 (docker.io/library/nginx:1.27) @27
          container sidecar - (invalid) @28
          container bad-ref Registry.Acme/App:1.0 (invalid) @29
          container bad-limits app:1 (docker.io/library/app:1) @32
        CronJob default/lost labels{} pods{} @36
        Pod default/empty labels{} pods{} @41
        warning @7: Deployment no-list: containers is not a list
        warning @9: Deployment has no metadata.name; skipped
        warning @14: Deployment no-template has no spec.template.spec; its containers are unknown
        warning @27: Deployment sloppy: container has no name
        warning @28: Deployment sloppy: container sidecar has no image
        warning @30: Deployment sloppy: container bad-ref: invalid image reference \"Registry.Acme/App:1.0\": repository name must be lowercase
        warning @31: Deployment sloppy: container is not a mapping
        warning @25: Deployment sloppy: initContainers is not a list
        warning @36: CronJob lost has no spec.jobTemplate.spec.template.spec; its containers are unknown
        warning @44: Pod empty has no containers
        ",
    );
}

#[test]
fn a_bad_document_in_the_middle_hides_nothing_else() {
    // A shape error stays in its document.
    check(
        "
        apiVersion: v1
        kind: Service
        metadata: {name: a}
        spec: {selector: {app: a}, ports: [{port: 80}]}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: b}
        spec: {ports: [{port: http}, {port: 70000}, {name: x}], type: NodePort}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: c}
        spec: {selector: {app: c}, ports: [{port: '8080'}]}
        ",
        "
        service default/a ClusterIP [80] {app=a} @1
        service default/b NodePort [] {} @6
        service default/c ClusterIP [8080] {app=c} @11
        route ExposedService default/b -/ -> b public @6
        warning @9: Service b: port \"http\" is not a port number
        warning @9: Service b: port \"70000\" is not a port number
        warning @9: Service b: ports entry has no port
        ",
    );
    // A syntax error ends the stream: what came before is kept, and the error says where.
    check(
        "
        apiVersion: v1
        kind: Service
        metadata: {name: a}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: [b
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: c}
        ",
        "
        service default/a ClusterIP [] {} @1
        error @8: invalid YAML: while parsing a flow sequence, expected ',' or ']'
        ",
    );
}

#[test]
fn lists_from_kubectl_and_the_api_server() {
    check(
        "
        apiVersion: v1
        kind: List
        items:
        - apiVersion: apps/v1
          kind: Deployment
          metadata: {name: cart, namespace: shop, labels: {app: cart}}
          spec:
            template:
              metadata: {labels: {app: cart, version: blue}}
              spec: {containers: [{name: app, image: 'cart:1.4'}]}
        - apiVersion: v1
          kind: Service
          metadata: {name: cart, namespace: shop}
          spec: {selector: {app: cart}, ports: [{port: 80}]}
        - apiVersion: apps/v1
          kind: ReplicaSet
          metadata: {name: cart-6f9c, namespace: shop}
        - not-an-object
        ---
        apiVersion: apps/v1
        kind: DeploymentList
        items:
        - metadata: {name: typed, namespace: shop}
          spec: {template: {spec: {containers: [{name: app, image: 'typed:2'}]}}}
        ",
        "
        Deployment shop/cart labels{app=cart} pods{app=cart,version=blue} @4
          container app cart:1.4 (docker.io/library/cart:1.4) @10
        Deployment shop/typed labels{} pods{} @23
          container app typed:2 (docker.io/library/typed:2) @24
        service shop/cart ClusterIP [80] {app=cart} @11
        warning @18: List: item is not an object
        ",
    );
}

#[test]
fn lookalike_kinds_from_other_api_groups_are_ignored() {
    check(
        "
        apiVersion: serving.knative.dev/v1
        kind: Service
        metadata: {name: hello}
        spec: {template: {spec: {containers: [{image: hello}]}}}
        ---
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata: {name: apps}
        spec: {path: ./apps}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings}
        data: {images: nginx}
        ",
        "",
    );
}

#[test]
fn ingress_v1_and_v1beta1() {
    check(
        "
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata:
          name: shop
          namespace: web
        spec:
          ingressClassName: nginx
          defaultBackend:
            service: {name: frontend, port: {number: 80}}
          rules:
          - host: shop.example.com
            http:
              paths:
              - path: /api
                pathType: Prefix
                backend:
                  service: {name: api, port: {number: 8080}}
              - pathType: Prefix
                backend:
                  service: {name: frontend, port: {name: http}}
              - path: /static
                pathType: Prefix
                backend:
                  resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: assets}
          - http:
              paths:
              - path: /healthz
                backend: {service: {name: health}}
        ---
        apiVersion: extensions/v1beta1
        kind: Ingress
        metadata:
          name: admin
          annotations:
            kubernetes.io/ingress.class: nginx-internal
        spec:
          backend: {serviceName: admin, servicePort: 80}
          rules:
          - host: admin.corp
            http:
              paths:
              - path: /
                backend: {serviceName: admin, servicePort: 80}
              - path: /broken
                backend: {servicePort: 80}
              - path: /nothing
        ---
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: private}
        spec:
          ingressClassName: Internal-ALB
          rules: [{host: ops.corp, http: {paths: [{path: /, backend: {service: {name: ops}}}]}}]
        ",
        "
        route Ingress web/shop -/ -> frontend public @9
        route Ingress web/shop shop.example.com/api -> api public @17
        route Ingress web/shop shop.example.com/ -> frontend public @20
        route Ingress web/shop -/healthz -> health public @28
        route Ingress default/admin -/ -> admin internal @37
        route Ingress default/admin admin.corp/ -> admin internal @43
        route Ingress default/private ops.corp/ -> ops internal @53
        warning @45: Ingress admin: backend names no service
        warning @46: Ingress admin: path /nothing has no backend
        ",
    );
}

#[test]
fn http_route_with_weights_and_several_matches() {
    check(
        "
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: checkout, namespace: shop}
        spec:
          parentRefs:
          - {name: public-gateway, namespace: infra}
          hostnames: [shop.example.com, www.shop.example.com]
          rules:
          - matches:
            - path: {type: PathPrefix, value: /checkout}
            - path: {type: PathPrefix, value: /checkout}
              headers: [{name: x-canary, value: 'true'}]
            - path: {type: Exact, value: /cart}
            backendRefs:
            - {name: checkout-blue, port: 8080, weight: 90}
            - {name: checkout-green, port: 8080, weight: 10}
            - {group: '', kind: Service, name: checkout-shadow, port: 8080, weight: 0}
            - {group: example.com, kind: Bucket, name: not-a-service}
          - backendRefs: [{name: catch-all, port: 80}]
          - filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
          - matches: [{headers: [{name: x-debug, value: '1'}]}]
            backendRefs: [{port: 80}]
        ---
        apiVersion: gateway.networking.k8s.io/v1beta1
        kind: HTTPRoute
        metadata: {name: ops}
        spec:
          parentRefs: [{name: gw-internal}]
          rules: [{backendRefs: [{name: ops, port: 80}]}]
        ",
        "
        route HTTPRoute shop/checkout shop.example.com/checkout -> checkout-blue public @15
        route HTTPRoute shop/checkout shop.example.com/cart -> checkout-blue public @15
        route HTTPRoute shop/checkout www.shop.example.com/checkout -> checkout-blue public @15
        route HTTPRoute shop/checkout www.shop.example.com/cart -> checkout-blue public @15
        route HTTPRoute shop/checkout shop.example.com/checkout -> checkout-green public @16
        route HTTPRoute shop/checkout shop.example.com/cart -> checkout-green public @16
        route HTTPRoute shop/checkout www.shop.example.com/checkout -> checkout-green public @16
        route HTTPRoute shop/checkout www.shop.example.com/cart -> checkout-green public @16
        route HTTPRoute shop/checkout shop.example.com/checkout -> checkout-shadow public @17
        route HTTPRoute shop/checkout shop.example.com/cart -> checkout-shadow public @17
        route HTTPRoute shop/checkout www.shop.example.com/checkout -> checkout-shadow public @17
        route HTTPRoute shop/checkout www.shop.example.com/cart -> checkout-shadow public @17
        route HTTPRoute shop/checkout shop.example.com/ -> catch-all public @19
        route HTTPRoute shop/checkout www.shop.example.com/ -> catch-all public @19
        route HTTPRoute default/ops -/ -> ops internal @29
        warning @22: HTTPRoute checkout: backendRef has no name
        ",
    );
}

#[test]
fn kustomization_images() {
    check(
        "
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [deployment.yaml]
        images:
        - name: frontend
          newName: registry.acme.io/shop/frontend
          newTag: v0.10.2
        - name: redis
          newTag: 7.4
        - name: busybox
          digest: sha256:fd8d9aa63ba2f0982b5304e1ee8d3b90a210bc1ffb5314d980eb6962f1a9715d
        - newTag: '1.0'
        ",
        "
        override frontend name=registry.acme.io/shop/frontend tag=v0.10.2 digest=- @5
        override redis name=- tag=7.4 digest=- @8
        override busybox name=- tag=- digest=sha256:fd8d9aa63ba2f0982b5304e1ee8d3b90a210bc1ffb5314d980eb6962f1a9715d @10
        warning @12: kustomization: image entry has no name
        ",
    );
}

/// kustomize accepts a `kustomization.yaml` without `apiVersion` and `kind`;
/// [`super::kustomization`] reads it when the caller knows the file by name.
#[test]
fn kustomization_without_kind() {
    let (docs, error) = yaml::load("images:\n- {name: api, newTag: '2.1'}\n");
    assert_eq!(error, None);
    let facts = super::kustomization("kustomization.yaml", &docs[0]);
    assert_eq!(render(&facts), "override api name=- tag=2.1 digest=- @2\n");
}

#[test]
fn never_panics_on_odd_shapes() {
    check(
        "
        apiVersion: apps/v1
        kind: Deployment
        metadata: [not, a, map]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: s}
        spec: [odd]
        ---
        apiVersion: v1
        kind: List
        items: {a: b}
        ---
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: i}
        spec: {rules: {host: x}}
        ---
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: h}
        spec: {hostnames: x.example, rules: [{backendRefs: {name: y}}, 7]}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
        spec: {template: {spec: {containers: [{name: c, image: [x], env: {A: b}}]}}}
        ",
        "
        Deployment default/d labels{} pods{} @24
          container c - (invalid) @27
        service default/s ClusterIP [] {} @5
        warning @1: Deployment has no metadata.name; skipped
        warning @12: List: items is not a list
        warning @17: Ingress i: rules is not a list
        warning @22: HTTPRoute h: backendRefs is not a list
        warning @27: Deployment d: container c has no image
        warning @27: Deployment d: container c: env is not a list
        ",
    );
}
