//! Gatekeeper's referential data, `data.inventory`: the objects besides the
//! one under review that a constraint may look up (another Ingress with the
//! same host, the StorageClasses that exist, the PodDisruptionBudgets of a
//! namespace).
//!
//! Gatekeeper syncs them from the cluster; gator takes them from a suite
//! case's `inventory` files; `policy check` over a fleet can take every
//! manifest of the fleet, so that a uniqueness constraint holds across
//! repositories. The shape is Gatekeeper's: an object with a namespace is at
//! `namespace[<namespace>][<apiVersion>][<kind>][<name>]`, one without at
//! `cluster[<apiVersion>][<kind>][<name>]`.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// apiVersion → kind → name → object.
type ByApi = BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>;

/// The objects of `data.inventory`, by place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    cluster: ByApi,
    namespace: BTreeMap<String, ByApi>,
    len: usize,
}

impl Inventory {
    pub fn new() -> Inventory {
        Inventory::default()
    }

    /// Adds `object` at its place; a later object with the same place replaces
    /// the earlier one, as a later apply would. Returns `false` (and adds
    /// nothing) when the object has no `apiVersion`, `kind` or `metadata.name`,
    /// which Gatekeeper could not place either.
    pub fn add(&mut self, object: &Value) -> bool {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let (Some(api), Some(kind), Some(name)) =
            (text("/apiVersion"), text("/kind"), text("/metadata/name"))
        else {
            return false;
        };
        let root = match text("/metadata/namespace") {
            Some(ns) => self.namespace.entry(ns.to_string()).or_default(),
            None => &mut self.cluster,
        };
        let by_name = root
            .entry(api.to_string())
            .or_default()
            .entry(kind.to_string())
            .or_default();
        if by_name.insert(name.to_string(), object.clone()).is_none() {
            self.len += 1;
        }
        true
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `{"cluster": {...}, "namespace": {...}}`, the value of `data.inventory`.
    pub fn to_value(&self) -> Value {
        json!({ "cluster": self.cluster, "namespace": self.namespace })
    }
}

impl<'a> FromIterator<&'a Value> for Inventory {
    fn from_iter<I: IntoIterator<Item = &'a Value>>(objects: I) -> Inventory {
        let mut inventory = Inventory::new();
        for object in objects {
            inventory.add(object);
        }
        inventory
    }
}

#[cfg(test)]
mod tests;
