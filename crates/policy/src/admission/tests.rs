//! AdmissionReview in, decision and response out.

use crate::admission::{FailurePolicy, ReviewError, decide};
use crate::{AdmissionDecision, BundleConfig, GatekeeperSet, Policies};
use serde_json::{Value, json};
use std::time::Duration;

fn policies() -> Policies {
    let config = BundleConfig {
        allowed_registries: vec!["registry.acme.internal/apps/".into()],
        ..BundleConfig::default()
    };
    Policies::new().with_builtin(&config).expect("bundle")
}

/// The response as a JSON tree.
fn response(decision: &AdmissionDecision) -> Value {
    serde_json::to_value(decision.response()).expect("serializable")
}

fn review(image: &str, dry_run: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "shop",
            "operation": "CREATE", "dryRun": dry_run,
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
                "spec": {"containers": [{"name": "app", "image": image, "resources": {"limits": {"cpu": "1"}}}]}}}
    }))
    .expect("json")
}

const DIGEST: &str = "@sha256:4f5c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a";

#[test]
fn allowed_with_uid_echoed() {
    let decision = decide(
        &mut policies(),
        &review(&format!("registry.acme.internal/apps/a:1{DIGEST}"), false),
        FailurePolicy::Closed,
    )
    .expect("valid");
    assert!(decision.allowed);
    assert_eq!(
        response(&decision),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u-1", "allowed": true}})
    );
}

#[test]
fn denied_with_messages_and_warnings_passed_through() {
    let decision = decide(
        &mut policies(),
        &review("quay.io/x/a:latest", true),
        FailurePolicy::Closed,
    )
    .expect("valid");
    assert!(!decision.allowed);
    assert!(decision.dry_run);
    let response = response(&decision);
    assert_eq!(response["response"]["status"]["code"], 403);
    let message = response["response"]["status"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(
        message.contains("[builtin/image-tag]") && message.contains("[builtin/allowed-registries]"),
        "{message}"
    );
    assert_eq!(
        response["response"]["warnings"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn a_tag_only_warns() {
    let decision = decide(
        &mut policies(),
        &review("registry.acme.internal/apps/a:1", false),
        FailurePolicy::Closed,
    )
    .expect("valid");
    assert!(decision.allowed);
    assert_eq!(decision.warnings.len(), 1);
    assert!(decision.warnings[0].contains("not pinned by digest"));
}

#[test]
fn malformed_reviews_are_errors() {
    let mut p = policies();
    assert!(matches!(
        decide(&mut p, b"{", FailurePolicy::Closed),
        Err(ReviewError::NotJson(_))
    ));
    assert!(matches!(
        decide(
            &mut p,
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#,
            FailurePolicy::Closed
        ),
        Err(ReviewError::NotAdmissionReview { .. })
    ));
    assert_eq!(
        decide(
            &mut p,
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            FailurePolicy::Closed
        ),
        Err(ReviewError::NoRequest)
    );
    assert_eq!(decide(&mut p, br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{}}}"#, FailurePolicy::Closed), Err(ReviewError::NoUid));
}

#[test]
fn failure_policy_decides_when_evaluation_fails() {
    let template = "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: slow}\nspec:\n  crd: {spec: {names: {kind: K8sSlow}}}\n  targets:\n  - target: admission.k8s.gatekeeper.sh\n    rego: |\n      package slow\n      violation[{\"msg\": \"slow\"}] {\n        n := input.parameters.n\n        count([x | a := numbers.range(1, n)[_]; b := numbers.range(1, n)[_]; x := a * b]) > 0\n      }\n---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sSlow\nmetadata: {name: s}\nspec:\n  parameters: {n: 100000}\n";
    let mut set = GatekeeperSet::new();
    assert_eq!(set.add_yaml("slow.yaml", template), vec![]);
    let mut slow = Policies::new()
        .with_gatekeeper(set)
        .with_budget(Duration::from_millis(20));
    let body = review("registry.acme.internal/apps/a:1", false);
    let closed = decide(&mut slow, &body, FailurePolicy::Closed).expect("valid");
    assert!(!closed.allowed);
    assert!(
        closed.denials[0].contains("time budget"),
        "{:?}",
        closed.denials
    );
    let open = decide(&mut slow, &body, FailurePolicy::Open).expect("valid");
    assert!(open.allowed);
    assert!(open.warnings[0].contains("fail-open"));
}

#[test]
fn delete_requests_without_object_are_allowed() {
    let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"d","operation":"DELETE","object":null}}"#;
    let decision = decide(&mut policies(), body, FailurePolicy::Closed).expect("valid");
    assert!(decision.allowed);
    assert_eq!(
        response(&decision),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "d", "allowed": true}})
    );
}

/// Reviews the slim reading does not take go the general way, to the same answers.
#[test]
fn reviews_of_unexpected_shape_get_the_general_answers() {
    let mut p = policies();
    let envelope = r#""apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview""#;
    let decide_text =
        |p: &mut Policies, text: &str| decide(p, text.as_bytes(), FailurePolicy::Closed);
    assert_eq!(
        decide_text(
            &mut p,
            &format!(r#"{{{envelope},"request":{{"uid":42,"object":{{}}}}}}"#)
        ),
        Err(ReviewError::NoUid)
    );
    assert_eq!(
        decide_text(&mut p, &format!(r#"{{{envelope},"request":"x"}}"#)),
        Err(ReviewError::NoRequest)
    );
    assert_eq!(
        decide_text(&mut p, "[1]"),
        Err(ReviewError::NotAdmissionReview {
            api: String::new(),
            kind: String::new()
        })
    );
    // A dryRun that is not a boolean is not a dry run; a repeated uid: the last one counts.
    let odd = format!(
        r#"{{{envelope},"request":{{"uid":"first","uid":"last","dryRun":"yes","object":{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p"}},"spec":{{"containers":[{{"name":"a","image":"quay.io/x/a:latest"}}]}}}}}}}}"#
    );
    let decision = decide_text(&mut p, &odd).expect("decided");
    assert_eq!(decision.uid, "last");
    assert!(!decision.dry_run);
    assert!(!decision.allowed);
    assert!(
        decision
            .denials
            .iter()
            .any(|d| d.contains("[builtin/image-tag]") && d.contains("Pod p")),
        "{:?}",
        decision.denials
    );
    // An object that is not an object is handed to the rules as it is, and finds nothing.
    let scalar = decide_text(
        &mut p,
        &format!(r#"{{{envelope},"request":{{"uid":"s","object":"text"}}}}"#),
    )
    .expect("decided");
    assert!(scalar.allowed);
}
