use super::*;
use serde_json::{Value, json};

fn spec() -> WebhookSpec {
    WebhookSpec {
        name: "bulkhead-admission".into(),
        namespace: "bulkhead-system".into(),
        image: "registry.acme.internal/bulkhead:0.4.0".into(),
        replicas: 3,
        ca_bundle: "LS0tLS1CRUdJTg==".into(),
        fail_open: false,
        timeout_seconds: 5,
        tls_secret: "bulkhead-admission-tls".into(),
        policy_config_map: Some("bulkhead-policy".into()),
        inventory_config_map: None,
        live_inventory: false,
        extra_args: vec![
            "--allowed-registry".into(),
            "registry.acme.internal/".into(),
        ],
    }
}

fn documents(text: &str) -> Vec<Value> {
    let (docs, error) = yaml::load(text);
    assert_eq!(error, None, "{text}");
    docs.iter().map(yaml::Node::to_json).collect()
}

#[test]
fn the_objects_fit_together() {
    let text = manifests(&spec()).unwrap();
    let docs = documents(&text);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ValidatingWebhookConfiguration",
            "Service",
            "Deployment",
            "PodDisruptionBudget"
        ]
    );
    let (config, service, deployment) = (&docs[0], &docs[1], &docs[2]);
    let hook = &config["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["timeoutSeconds"], 5);
    assert_eq!(hook["clientConfig"]["caBundle"], "LS0tLS1CRUdJTg==");
    assert_eq!(
        hook["clientConfig"]["service"],
        json!({"name": "bulkhead-admission", "namespace": "bulkhead-system", "path": "/validate", "port": 443})
    );
    assert_eq!(
        hook["namespaceSelector"]["matchExpressions"][0],
        json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "bulkhead-system"]})
    );
    let pod = &deployment["spec"]["template"];
    assert_eq!(service["spec"]["selector"], pod["metadata"]["labels"]);
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        pod["metadata"]["labels"]
    );
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"],
        container["ports"][0]["containerPort"]
    );
    assert_eq!(container["image"], "registry.acme.internal/bulkhead:0.4.0");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        args,
        [
            "policy",
            "serve",
            "--listen",
            "0.0.0.0:8443",
            "--cert",
            "/etc/bulkhead/tls/tls.crt",
            "--key",
            "/etc/bulkhead/tls/tls.key",
            "--policy",
            "/etc/bulkhead/policy",
            "--allowed-registry",
            "registry.acme.internal/"
        ]
    );
    let volumes = &pod["spec"]["volumes"];
    assert_eq!(volumes[0]["secret"]["secretName"], "bulkhead-admission-tls");
    assert_eq!(volumes[1]["configMap"]["name"], "bulkhead-policy");
    assert!(
        text.contains("# failurePolicy Fail (fail closed)"),
        "{text}"
    );
}

#[test]
fn fail_open_is_ignore_and_says_what_it_costs() {
    let text = manifests(&WebhookSpec {
        fail_open: true,
        inventory_config_map: Some("cluster-objects".into()),
        ..spec()
    })
    .unwrap();
    let docs = documents(&text);
    assert_eq!(docs[0]["webhooks"][0]["failurePolicy"], "Ignore");
    assert!(text.contains("# failurePolicy Ignore (fail open)"));
    let args = docs[2]["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains(r#""--inventory","/etc/bulkhead/inventory""#),
        "{args}"
    );
    assert!(args.contains(r#""--fail-open""#), "{args}");
}

#[test]
fn a_live_inventory_runs_as_its_own_account_with_its_token() {
    let without = documents(&manifests(&spec()).unwrap());
    let pod = &without[2]["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(pod["serviceAccountName"].is_null());
    assert_eq!(without.len(), 4);

    let text = manifests(&WebhookSpec {
        live_inventory: true,
        ..spec()
    })
    .unwrap();
    let docs = documents(&text);
    let pod = &docs[2]["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["serviceAccountName"], "bulkhead-admission");
    let args = pod["containers"][0]["args"].to_string();
    assert!(
        args.contains(r#""--inventory-cluster","--kubeconfig","in-cluster""#),
        "{args}"
    );
    let account = docs.last().unwrap();
    assert_eq!(account["kind"], "ServiceAccount");
    assert_eq!(account["metadata"]["name"], "bulkhead-admission");
    assert_eq!(account["metadata"]["namespace"], "bulkhead-system");
    assert!(
        text.contains(
            "bulkhead cluster rbac --namespace bulkhead-system --service-account bulkhead-admission"
        ),
        "{text}"
    );
}

#[test]
fn bad_specs_are_refused_with_the_field() {
    for (bad, expect) in [
        (
            WebhookSpec {
                namespace: "Bulkhead_System".into(),
                ..spec()
            },
            "namespace \"Bulkhead_System\": must be a DNS label",
        ),
        (
            WebhookSpec {
                timeout_seconds: 31,
                ..spec()
            },
            "timeout \"31\": the API server accepts 1 to 30 seconds",
        ),
        (
            WebhookSpec {
                replicas: 0,
                ..spec()
            },
            "replicas \"0\"",
        ),
    ] {
        let error = manifests(&bad).unwrap_err().to_string();
        assert!(error.starts_with(expect), "{error}");
    }
}
