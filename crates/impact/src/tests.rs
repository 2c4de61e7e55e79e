use super::*;
use model::{Owner, Tier};

/// A fleet from `name -> callees` lines, with tiers.
fn fleet(spec: &[(&str, u8, &[&str])]) -> Fleet {
    let mut services: Vec<Service> = spec
        .iter()
        .map(|(name, tier, deps)| Service {
            name: name.to_string(),
            owner: Some(Owner(format!("team-{name}"))),
            tier: Some(Tier(*tier)),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            ..Service::default()
        })
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Fleet {
        services,
        ..Fleet::default()
    }
}

fn shop() -> Fleet {
    fleet(&[
        ("web", 1, &["bff"]),
        ("bff", 1, &["orders", "catalog"]),
        ("orders", 2, &["payments", "db"]),
        ("payments", 1, &["db"]),
        ("catalog", 3, &["db"]),
        ("db", 2, &[]),
        ("batch", 3, &[]),
    ])
}

fn summary(report: &ImpactReport) -> Vec<String> {
    report
        .who_is_impacted
        .iter()
        .map(|s| match &s.reason {
            ImpactReason::Changed => format!("{} changed", s.service),
            ImpactReason::Calls { distance, via } => {
                format!("{} via {via} at {distance}", s.service)
            }
            ImpactReason::Uses { artefact } => format!("{} uses {artefact}", s.service),
        })
        .collect()
}

#[test]
fn blast_radius_is_the_transitive_callers() {
    let report = services(&shop(), &["payments".to_string()]).expect("known");
    assert_eq!(
        summary(&report),
        [
            "payments changed",
            "orders via payments at 1",
            "bff via orders at 2",
            "web via bff at 3"
        ]
    );
    assert_eq!(report.untouched, ["batch", "catalog", "db"]);
}

#[test]
fn changed_services_are_not_counted_as_callers_and_waves_follow_dependencies() {
    let report = services(
        &shop(),
        &[
            "orders".to_string(),
            "db".to_string(),
            "catalog".to_string(),
        ],
    )
    .expect("known");
    let changed: Vec<_> = report
        .who_is_impacted
        .iter()
        .filter(|s| s.reason == ImpactReason::Changed)
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(changed, ["catalog", "db", "orders"]);
    let waves: Vec<Vec<&str>> = report
        .plan
        .waves
        .iter()
        .map(|w| w.steps.iter().map(|s| s.target.as_str()).collect())
        .collect();
    // db first (it is called by the others); then tier 3 catalog before tier 2 orders.
    assert_eq!(waves, vec![vec!["db"], vec!["catalog", "orders"]]);
    assert_eq!(report.untouched, ["batch"]);
}

#[test]
fn a_leaf_nobody_calls_reaches_no_one() {
    let report = services(&shop(), &["batch".to_string()]).expect("known");
    assert_eq!(summary(&report), ["batch changed"]);
    assert_eq!(report.what_breaks[0].risk, Risk::Safe);
    assert_eq!(report.untouched.len(), 6);
}

#[test]
fn unknown_services_are_an_error_with_suggestions() {
    let err = services(&shop(), &["payment".to_string(), "nope".to_string()]).expect_err("unknown");
    assert_eq!(err.unknown, ["payment", "nope"]);
    assert_eq!(err.suggestions, ["payments"]);
    assert_eq!(
        err.to_string(),
        "unknown service(s): payment, nope (did you mean payments?)"
    );
}

#[test]
fn renderers_carry_the_four_answers() {
    let report = services(&shop(), &["payments".to_string()]).expect("known");
    let table = model::report::render_table(&report);
    let markdown = model::report::render_markdown(&report);
    for heading in [
        "What breaks?",
        "Who is impacted?",
        "How fast can I roll back?",
        "How do I monitor impact?",
    ] {
        assert!(table.contains(heading), "table lacks {heading}:\n{table}");
        assert!(
            markdown.contains(heading),
            "markdown lacks {heading}:\n{markdown}"
        );
    }
    assert!(table.contains("web       team-web"), "{table}");
    assert!(
        markdown.contains("| `orders` | team-orders | 2 | calls payments |"),
        "{markdown}"
    );
}
