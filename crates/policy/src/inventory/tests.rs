use super::*;
use crate::input::load_manifests;

const OBJECTS: &str = "\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
provisioner: foo
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: web
spec:
  rules:
  - host: shop.example.com
---
apiVersion: v1
kind: Service
metadata:
  name: orders
  namespace: web
spec:
  selector: {app: orders}
---
apiVersion: v1
kind: ConfigMap
metadata:
  namespace: web
";

#[test]
fn objects_are_placed_as_gatekeeper_syncs_them() {
    let (objects, diagnostics) = load_manifests("inventory.yaml", OBJECTS);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let mut inventory = Inventory::new();
    let added: Vec<bool> = objects.iter().map(|o| inventory.add(&o.value)).collect();
    assert_eq!(
        added,
        [true, true, true, false],
        "the nameless ConfigMap has no place"
    );
    assert_eq!(inventory.len(), 3);
    let value = inventory.to_value();
    let at = |pointer: &str| {
        value
            .pointer(pointer)
            .map(|o| o["metadata"]["name"].clone())
    };
    assert_eq!(
        at("/cluster/storage.k8s.io~1v1/StorageClass/fast"),
        Some(json!("fast"))
    );
    assert_eq!(
        at("/namespace/web/networking.k8s.io~1v1/Ingress/shop"),
        Some(json!("shop"))
    );
    assert_eq!(
        at("/namespace/web/v1/Service/orders"),
        Some(json!("orders"))
    );
    assert_eq!(value["cluster"].as_object().map(|m| m.len()), Some(1));
}

#[test]
fn a_later_object_at_the_same_place_replaces_the_earlier() {
    let first = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "x"}, "spec": {"n": 1}});
    let second = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "x"}, "spec": {"n": 2}});
    let inventory: Inventory = [&first, &second].into_iter().collect();
    assert_eq!(inventory.len(), 1);
    assert_eq!(
        inventory
            .to_value()
            .pointer("/namespace/x/v1/Service/a/spec/n"),
        Some(&json!(2))
    );
}

#[test]
fn an_empty_inventory_still_has_both_roots() {
    let inventory = Inventory::new();
    assert!(inventory.is_empty());
    assert_eq!(
        inventory.to_value(),
        json!({"cluster": {}, "namespace": {}})
    );
}
