//! Backstage entities through [`crate::parse`], rendered one line per fact.

use crate::test_support::dedent;
use crate::{FileKind, parse};
use model::Facts;

fn render(facts: &Facts) -> String {
    let mut out = String::new();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    for e in &facts.catalog {
        out.push_str(&format!(
            "{} {}/{} type={} owner={} lifecycle={} system={} tier={} depends={:?} @{}\n",
            e.kind,
            opt(&e.namespace),
            e.name,
            opt(&e.spec_type),
            opt(&e.owner),
            opt(&e.lifecycle),
            opt(&e.system),
            e.tier.map_or("-".to_string(), |t| t.to_string()),
            e.depends_on,
            e.at.line
        ));
    }
    for d in &facts.diagnostics {
        out.push_str(&format!(
            "{} @{}: {}\n",
            d.severity,
            d.line.map_or("-".to_string(), |l| l.to_string()),
            d.message
        ));
    }
    out
}

#[track_caller]
fn check(text: &str, expect: &str) {
    let facts = parse("catalog-info.yaml", FileKind::Yaml, &dedent(text));
    assert!(
        facts.workloads.is_empty() && facts.routes.is_empty() && facts.hosts.is_empty(),
        "catalog documents are not read as anything else: {facts:?}"
    );
    assert!(
        facts
            .catalog
            .iter()
            .all(|e| e.at.path == "catalog-info.yaml")
    );
    ::test_support::expect_text(&render(&facts), expect);
}

#[test]
fn component_with_everything() {
    check(
        "
        # Backstage entity for the checkout service.
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: checkout
          namespace: shop
          labels:
            tier: '1'
        spec:
          type: service
          owner: group:default/team-payments
          lifecycle: production
          system: storefront
          dependsOn:
            - component:payments
            - resource:default/orders-db
        ",
        "
        Component shop/checkout type=service owner=group:default/team-payments lifecycle=production system=storefront tier=1 depends=[\"component:payments\", \"resource:default/orders-db\"] @2
        ",
    );
}

#[test]
fn tier_from_labels_or_annotations() {
    check(
        "
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: by-label
          labels: {tier: tier-2}
        spec: {type: service, owner: team-a}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: by-bulkhead-annotation
          annotations: {bulkhead.io/tier: t3}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: by-plain-annotation
          annotations: {tier: 4}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: label-wins
          labels: {tier: '1'}
          annotations: {bulkhead.io/tier: '1', tier: '3'}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: none
        ",
        "
        Component -/by-label type=service owner=team-a lifecycle=- system=- tier=2 depends=[] @1
        Component -/by-bulkhead-annotation type=- owner=- lifecycle=- system=- tier=3 depends=[] @8
        Component -/by-plain-annotation type=- owner=- lifecycle=- system=- tier=4 depends=[] @14
        Component -/label-wins type=- owner=- lifecycle=- system=- tier=1 depends=[] @20
        Component -/none type=- owner=- lifecycle=- system=- tier=- depends=[] @27
        warning @25: label-wins: annotations tier says tier 3 but labels tier says tier 1; using 1
        ",
    );
}

#[test]
fn bad_tier_is_a_warning_and_a_later_good_one_is_used() {
    check(
        "
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: gold
          labels: {tier: gold}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: zero
          labels: {tier: '0'}
          annotations: {bulkhead.io/tier: '2'}
        ",
        "
        Component -/gold type=- owner=- lifecycle=- system=- tier=- depends=[] @1
        Component -/zero type=- owner=- lifecycle=- system=- tier=2 depends=[] @7
        warning @5: gold: tier gold is not a tier (1-9)
        warning @11: zero: tier 0 is not a tier (1-9)
        ",
    );
}

#[test]
fn other_kinds_and_missing_names() {
    check(
        "
        apiVersion: backstage.io/v1alpha1
        kind: System
        metadata: {name: storefront}
        spec: {owner: team-shop}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Resource
        metadata: {name: orders-db}
        spec: {type: database, owner: team-orders, dependencyOf: [component:orders]}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: API
        metadata: {name: payments-api}
        spec: {type: openapi, lifecycle: experimental, owner: team-payments, definition: '...'}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {title: Nameless}
        spec: {owner: team-x}
        ---
        apiVersion: backstage.io/v1alpha1
        metadata: {name: kindless}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Group
        metadata: {name: team-shop}
        spec: {type: team, children: []}
        ",
        "
        System -/storefront type=- owner=team-shop lifecycle=- system=- tier=- depends=[] @1
        Resource -/orders-db type=database owner=team-orders lifecycle=- system=- tier=- depends=[] @6
        API -/payments-api type=openapi owner=team-payments lifecycle=experimental system=- tier=- depends=[] @11
        Group -/team-shop type=team owner=- lifecycle=- system=- tier=- depends=[] @24
        warning @16: catalog Component has no metadata.name; skipped
        warning @21: catalog entity has no kind; skipped
        ",
    );
}
