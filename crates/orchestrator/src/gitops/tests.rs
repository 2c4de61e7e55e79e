//! Against the real git binary, in a throw-away manifests repository.

use super::*;
use crate::testutil::Scratch;

const ORDERS: &str = "# The orders service.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
spec:
  selector:
    matchLabels: {app: orders, version: blue}
---
apiVersion: v1
kind: Service
metadata:
  name: orders
spec:
  selector:
    app: orders
    version: blue   # switched by bulkhead rollout
  ports:
    - port: 8080
";

const CART: &str = "apiVersion: v1
kind: Service
metadata: {name: cart}
spec:
  selector: {app: cart, version: \"blue\"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: cart
spec:
  rules:
    - backendRefs:
        - name: cart-blue
          port: 8080
          weight: 100
        - name: cart-green
          port: 8080
          weight: 0
";

fn fixture() -> (Scratch, GitOpsExecutor) {
    let s = Scratch::new("gitops");
    s.git(&["init", "-q"]);
    s.write("deploy/orders.yaml", ORDERS);
    s.write("deploy/cart.yaml", CART);
    s.write("README.md", "kind: Service orders\n");
    s.git(&["add", "."]);
    s.git(&["commit", "-q", "-m", "manifests"]);
    let executor = GitOpsExecutor::new(s.path(), "main").expect("open");
    let executor = GitOpsExecutor {
        repo: executor.repo.with_env("GIT_CONFIG_GLOBAL", "/dev/null"),
        ..executor
    };
    (s, executor)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn commits(s: &Scratch) -> usize {
    s.git(&["rev-list", "--count", "main"]).parse().unwrap()
}

#[test]
fn selector_change_is_one_commit_rewriting_only_the_value() {
    let (s, mut executor) = fixture();
    executor
        .set_selector("orders", &labels(&[("version", "green")]))
        .unwrap();
    assert_eq!(commits(&s), 2);
    let now = s.git(&["show", "main:deploy/orders.yaml"]);
    assert_eq!(
        format!("{now}\n"),
        ORDERS.replace("version: blue   # switched", "version: green   # switched")
    );
    let message = s.git(&["log", "-1", "--format=%B", "main"]);
    assert!(
        message.starts_with("rollout: orders: select version=green"),
        "{message}"
    );
    assert_eq!(
        executor.routing().unwrap()["orders"],
        r#"{"app":"orders","version":"green"}"#
    );

    // Idempotent: already there, no second commit.
    executor
        .set_selector("orders", &labels(&[("version", "green")]))
        .unwrap();
    assert_eq!(commits(&s), 2);
    // The working tree is left alone.
    assert_eq!(
        std::fs::read_to_string(s.path().join("deploy/orders.yaml")).unwrap(),
        ORDERS
    );
}

#[test]
fn flow_style_selector_keeps_its_quotes() {
    let (s, mut executor) = fixture();
    executor
        .set_selector("cart", &labels(&[("version", "green")]))
        .unwrap();
    assert_eq!(
        executor.routing().unwrap()["cart"],
        r#"{"app":"cart","version":"green"}"#
    );
    let now = s.git(&["show", "main:deploy/cart.yaml"]);
    assert!(
        now.contains("selector: {app: cart, version: \"green\"}"),
        "{now}"
    );
}

#[test]
fn weights_rewrite_the_http_route_backends() {
    let (s, mut executor) = fixture();
    let pools = [
        WeightedPool {
            selector: labels(&[("version", "blue")]),
            weight: 80,
        },
        WeightedPool {
            selector: labels(&[("version", "green")]),
            weight: 20,
        },
    ];
    executor.set_weights("cart", &pools).unwrap();
    executor.set_weights("cart", &pools).unwrap();
    assert_eq!(commits(&s), 2);
    let now = s.git(&["show", "main:deploy/cart.yaml"]);
    assert_eq!(
        format!("{now}\n"),
        CART.replace("weight: 100", "weight: 80")
            .replace("weight: 0", "weight: 20")
    );
}

#[test]
fn errors_name_the_file_and_line() {
    let (s, mut executor) = fixture();
    let err = executor
        .set_selector("orders", &labels(&[("track", "stable")]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "deploy/orders.yaml:16: the selector of Service orders has no label \"track\"; add it to the manifest first"
    );
    let err = executor
        .set_selector("payments", &labels(&[("version", "green")]))
        .unwrap_err();
    assert!(
        err.to_string().contains("no Service named \"payments\""),
        "{err}"
    );
    let pools = [WeightedPool {
        selector: labels(&[("version", "canary")]),
        weight: 5,
    }];
    let err = executor.set_weights("cart", &pools).unwrap_err();
    assert!(
        err.to_string()
            .contains("HTTPRoute cart has no backendRef named cart-canary"),
        "{err}"
    );
    assert_eq!(commits(&s), 1);
}

/// A rolling update by image: the references in a plain manifest, a
/// kustomization (which counts before the manifest it overrides) and Helm
/// values move in one commit with its trailers; the reverse move is a
/// `git revert` of that commit; performing a move again commits nothing.
#[test]
fn images_move_in_one_commit_and_roll_back_by_revert() {
    let (s, mut executor) = fixture();
    s.write(
        "deploy/shop.yaml",
        "kind: Deployment\nmetadata: {name: shop}\nspec:\n  template:\n    spec:\n      containers:\n        - {name: app, image: \"reg.example/shop:1.0\"}\n",
    );
    s.write(
        "charts/shop/values.yaml",
        "image:\n  repository: reg.example/shop\n  tag: 1.0  # the release\n",
    );
    s.write(
        "deploy/cart/deployment.yaml",
        "containers:\n  - image: reg.example/cart\n",
    );
    s.write(
        "deploy/cart/kustomization.yaml",
        "images:\n  - name: reg.example/cart\n    newTag: \"2.0\"\n",
    );
    s.git(&["add", "."]);
    s.git(&["commit", "-q", "-m", "images"]);

    assert_eq!(
        executor.image("shop", "reg.example/shop:1.1").unwrap(),
        "reg.example/shop:1.0"
    );
    assert_eq!(
        executor.image("cart", "reg.example/cart:2.1").unwrap(),
        "reg.example/cart:2.0"
    );
    let moves = [
        ImageMove {
            service: "cart".into(),
            from: "reg.example/cart:2.0".into(),
            to: "reg.example/cart:2.1".into(),
        },
        ImageMove {
            service: "shop".into(),
            from: "reg.example/shop:1.0".into(),
            to: "reg.example/shop:1.1".into(),
        },
    ];
    executor.set_images(&moves).unwrap();
    assert_eq!(
        s.git(&["log", "-1", "--format=%B", "main"]),
        "rollout: images cart reg.example/cart:2.1, shop reg.example/shop:1.1\n\nSet by bulkhead rollout (executor gitops) in charts/shop/values.yaml, deploy/cart/kustomization.yaml, deploy/shop.yaml.\n\nBulkhead-Image: cart reg.example/cart:2.0 -> reg.example/cart:2.1\nBulkhead-Image: shop reg.example/shop:1.0 -> reg.example/shop:1.1"
    );
    let show = |path: &str| s.git(&["show", &format!("main:{path}")]);
    assert_eq!(
        show("charts/shop/values.yaml"),
        "image:\n  repository: reg.example/shop\n  tag: \"1.1\"  # the release"
    );
    assert!(show("deploy/shop.yaml").ends_with("- {name: app, image: \"reg.example/shop:1.1\"}"));
    assert_eq!(
        show("deploy/cart/kustomization.yaml"),
        "images:\n  - name: reg.example/cart\n    newTag: \"2.1\""
    );
    assert_eq!(
        show("deploy/cart/deployment.yaml"),
        "containers:\n  - image: reg.example/cart"
    );

    let count = s.git(&["rev-list", "--count", "main"]);
    executor.set_images(&moves).unwrap();
    assert_eq!(s.git(&["rev-list", "--count", "main"]), count);

    let back: Vec<ImageMove> = moves
        .iter()
        .map(|m| ImageMove {
            service: m.service.clone(),
            from: m.to.clone(),
            to: m.from.clone(),
        })
        .collect();
    executor.set_images(&back).unwrap();
    assert_eq!(
        s.git(&["log", "-1", "--format=%s", "main"]),
        "Revert \"rollout: images cart reg.example/cart:2.1, shop reg.example/shop:1.1\""
    );
    assert_eq!(
        show("charts/shop/values.yaml"),
        "image:\n  repository: reg.example/shop\n  tag: 1.0  # the release"
    );

    // Only one service of a commit that moved two: a commit moving it back.
    executor.set_images(&moves).unwrap();
    executor.set_images(&back[1..]).unwrap();
    assert_eq!(
        s.git(&["log", "-1", "--format=%s", "main"]),
        "rollout: images shop reg.example/shop:1.0"
    );
    assert_eq!(
        show("deploy/cart/kustomization.yaml"),
        "images:\n  - name: reg.example/cart\n    newTag: \"2.1\""
    );
}
