use super::diff::{kubectl_diff, merge, unified, yaml};
use super::rbac;
use super::*;
use serde_json::json;

#[test]
fn objects_render_as_kubectl_prints_yaml() {
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "orders", "namespace": "shop", "annotations": {"note": "a: b", "n": "8080"},
                     "managedFields": [{"manager": "kubectl"}]},
        "spec": {"ports": [{"port": 8080, "protocol": "TCP"}], "selector": {"app": "orders"},
                 "clusterIPs": ["10.0.0.1"], "empty": [], "flag": "true", "none": null}
    });
    let text = yaml(&service);
    assert_eq!(
        text,
        "apiVersion: v1
kind: Service
metadata:
  annotations:
    \"n\": \"8080\"
    note: \"a: b\"
  managedFields:
  - manager: kubectl
  name: orders
  namespace: shop
spec:
  clusterIPs:
  - 10.0.0.1
  empty: []
  flag: \"true\"
  none: null
  ports:
  - port: 8080
    protocol: TCP
  selector:
    app: orders
"
    );
}

#[test]
fn a_merge_patch_and_its_diff_match_kubectl_diff() {
    let before = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "orders", "namespace": "shop", "managedFields": [{"manager": "x"}]},
        "spec": {"selector": {"app": "orders", "version": "blue"}, "ports": [{"port": 8080}]}
    });
    let mut after = before.clone();
    merge(
        &mut after,
        &json!({"spec": {"selector": {"version": "green", "gone": null}}}),
    );
    assert_eq!(after["spec"]["selector"]["version"], "green");
    assert_eq!(after["spec"]["selector"]["app"], "orders");
    assert_eq!(
        kubectl_diff(&before, &after),
        "diff -u -N LIVE/v1.Service.shop.orders MERGED/v1.Service.shop.orders
--- LIVE/v1.Service.shop.orders
+++ MERGED/v1.Service.shop.orders
@@ -8,4 +8,4 @@
   - port: 8080
   selector:
     app: orders
-    version: blue
+    version: green
"
    );
    assert_eq!(kubectl_diff(&before, &before), "");
}

#[test]
fn unified_hunks_keep_three_lines_of_context_and_merge_when_close() {
    let old: String = (1..=20).map(|n| format!("{n}\n")).collect();
    for (change, expect) in [
        (
            vec![(2, "two")],
            "@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n",
        ),
        (
            vec![(5, "five"), (11, "eleven")],
            "@@ -2,13 +2,13 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n 9\n 10\n-11\n+eleven\n 12\n 13\n 14\n",
        ),
        (
            vec![(2, "two"), (19, "nineteen")],
            "@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n@@ -16,5 +16,5 @@\n 16\n 17\n 18\n-19\n+nineteen\n 20\n",
        ),
    ] {
        let new: String = (1..=20)
            .map(|n| {
                change
                    .iter()
                    .find(|(at, _)| *at == n)
                    .map_or_else(|| format!("{n}\n"), |(_, text)| format!("{text}\n"))
            })
            .collect();
        assert_eq!(unified(&old, &new), expect, "{change:?}");
    }
    assert_eq!(unified("a\n", "a\nb\n"), "@@ -1,1 +1,2 @@\n a\n+b\n");
    assert_eq!(unified("", "a\n"), "@@ -0,0 +1,1 @@\n+a\n");
}

#[test]
fn list_items_get_their_kind_and_lose_managed_fields() {
    let item = json!({"metadata": {"name": "web", "managedFields": [{}]}, "spec": {}});
    let deployment = WORKLOADS[1];
    assert_eq!(deployment.path(), "/apis/apps/v1/deployments");
    assert_eq!(WORKLOADS[0].path(), "/api/v1/pods");
    assert_eq!(
        listed(&item, &deployment),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}})
    );
}

#[test]
fn status_errors_say_what_the_api_server_said() {
    for (status, body, retry, expect_error, expect_wait) in [
        (
            403,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"ci\" cannot list resource \"pods\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#,
            None,
            "403 Forbidden: pods is forbidden: User \"ci\" cannot list resource \"pods\" in API group \"\" at the cluster scope (grant the rules `bulkhead cluster rbac` prints)",
            1,
        ),
        (
            429,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":4},"code":429}"#,
            Some(2),
            "429 Too Many Requests: Too many requests, please try again later.",
            2,
        ),
        (
            429,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"slow down","reason":"TooManyRequests","details":{"retryAfterSeconds":4},"code":429}"#,
            None,
            "429 Too Many Requests: slow down",
            4,
        ),
        (429, "not json", Some(3600), "429 Too Many Requests", 30),
    ] {
        let answer = Answer {
            status,
            retry_after: retry,
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(status_error(&answer), expect_error);
        assert_eq!(retry_after(&answer), Duration::from_secs(expect_wait));
    }
}

#[test]
fn the_rbac_export_allows_exactly_its_rules() {
    assert!(rbac::allows(rbac::READ, "list", "", "pods"));
    assert!(rbac::allows(rbac::READ, "list", "batch", "cronjobs"));
    assert!(!rbac::allows(rbac::READ, "get", "", "pods"));
    assert!(!rbac::allows(rbac::READ, "list", "", "secrets"));
    assert!(rbac::allows(
        rbac::ROLLOUT,
        "patch",
        "gateway.networking.k8s.io",
        "httproutes"
    ));
    assert!(!rbac::allows(rbac::ROLLOUT, "delete", "", "services"));
    assert!(rbac::allows(
        rbac::ARGOCD,
        "patch",
        "argoproj.io",
        "applications"
    ));
    let text = rbac::yaml("shop", "argocd", "bulkhead");
    assert_eq!(text.matches("\n---\n").count(), 5, "{text}");
    assert!(
        text.contains("kind: Role\nmetadata:\n  labels:\n    app.kubernetes.io/managed-by: bulkhead\n  name: bulkhead-argocd\n  namespace: argocd\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "kind: Role\nmetadata:\n  labels:\n    app.kubernetes.io/managed-by: bulkhead\n  name: bulkhead-rollout\n  namespace: shop\nrules:\n- apiGroups:\n  - \"\"\n  resources:\n  - services\n  verbs:\n  - get\n  - list\n  - patch\n"
        ),
        "{text}"
    );
}

#[test]
fn the_rbac_export_lets_the_inventory_list_and_watch_every_kind_it_copies() {
    for resource in &watch::KINDS {
        for verb in ["list", "watch"] {
            assert!(
                rbac::allows(rbac::READ, verb, resource.group, resource.plural),
                "{verb} {}",
                resource.plural
            );
        }
    }
    for plural in watch::DEFAULT_KINDS {
        assert_eq!(watch::kind(plural).map(|k| k.plural), Ok(plural));
    }
    assert_eq!(
        watch::kind("secrets"),
        Err("secrets: not a kind the inventory copies (one of namespaces, services, ingresses, pods, deployments, statefulsets, daemonsets, jobs, cronjobs, configmaps)".into())
    );
}
