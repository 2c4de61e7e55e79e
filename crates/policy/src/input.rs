//! Policy inputs: Kubernetes objects read with their lines, and one service
//! of the fleet graph with the facts its rules need.

use model::{Diagnostic, Fleet, Provenance, Service, StageBase};
use serde::Deserialize as _;
use serde_json::{Value, json};
use yaml::Node;

/// One Kubernetes object of a manifest file, as JSON, with its YAML tree for lines.
#[derive(Debug, Clone)]
pub struct ManifestObject {
    pub path: String,
    /// 1-based line the object starts on.
    pub line: u32,
    pub value: Value,
    node: Node,
}

impl ManifestObject {
    /// `Deployment shop/orders`.
    pub fn subject(&self) -> String {
        subject_of(&self.value)
    }

    pub fn provenance(&self) -> Provenance {
        Provenance::new(&self.path, self.line)
    }

    /// The line of `field` (keys and indexes from the object's root), or of the
    /// deepest part of it that exists.
    pub fn provenance_of(&self, field: &[Value]) -> Provenance {
        // A field's line is its key's line: `selector:` rather than the first entry under it.
        let mut node = &self.node;
        let mut line = node.line;
        for step in field {
            let next = match (step, &node.value) {
                (Value::String(key), yaml::Value::Map(pairs)) => pairs
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(key.as_str()))
                    .map(|(k, v)| (k.line, v)),
                (Value::Number(n), yaml::Value::Seq(items)) => n
                    .as_u64()
                    .and_then(|i| items.get(usize::try_from(i).ok()?))
                    .map(|v| (v.line, v)),
                _ => None,
            };
            match next {
                Some((at, n)) => {
                    line = at;
                    node = n;
                }
                None => break,
            }
        }
        Provenance::new(&self.path, line.max(1))
    }

    /// The labels of the pods this object runs, when it is a workload.
    pub fn pod_labels(&self) -> Option<Value> {
        let kind = self.value.get("kind")?.as_str()?;
        let pointer = match kind {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                "/spec/template/metadata/labels"
            }
            "CronJob" => "/spec/jobTemplate/spec/template/metadata/labels",
            "Pod" => "/metadata/labels",
            _ => return None,
        };
        self.value
            .pointer(pointer)
            .filter(|v| v.is_object())
            .cloned()
    }
}

/// `Kind namespace/name` of a Kubernetes object.
pub(crate) fn subject_of(object: &Value) -> String {
    subject(
        object.get("kind").and_then(Value::as_str),
        object.pointer("/metadata/name").and_then(Value::as_str),
        object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str),
    )
}

/// [`subject_of`] for an object already read as a Rego value.
pub(crate) fn subject_of_rego(object: &regorus::Value) -> String {
    fn text(v: &regorus::Value) -> Option<&str> {
        v.as_string().ok().map(|s| &**s)
    }
    let metadata = &object["metadata"];
    subject(
        text(&object["kind"]),
        text(&metadata["name"]),
        text(&metadata["namespace"]),
    )
}

fn subject(kind: Option<&str>, name: Option<&str>, namespace: Option<&str>) -> String {
    let kind = kind.unwrap_or("object");
    let name = name.unwrap_or("?");
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// `value` as a Rego value, as `regorus::Value::from` converts it, without taking it.
pub(crate) fn to_rego(value: &Value) -> regorus::Value {
    regorus::Value::deserialize(value).unwrap_or(regorus::Value::Undefined)
}

/// A Rego object of named fields; the values are shared, not copied.
pub(crate) fn rego_object<const N: usize>(fields: [(&str, regorus::Value); N]) -> regorus::Value {
    let mut object = regorus::Value::new_object();
    if let Ok(map) = object.as_object_mut() {
        for (key, value) in fields {
            map.insert(regorus::Value::from(key), value);
        }
    }
    object
}

/// Reads the Kubernetes objects of a YAML stream (`List`s are unpacked).
/// Documents that are not objects (no `apiVersion` and `kind`) are skipped.
pub fn load_manifests(path: &str, text: &str) -> (Vec<ManifestObject>, Vec<Diagnostic>) {
    let (documents, error) = yaml::load(text);
    let mut objects = Vec::new();
    for doc in documents {
        push_object(path, doc, &mut objects);
    }
    let diagnostics = error
        .map(|e| Diagnostic::error(path, Some(e.line), e.to_string()))
        .into_iter()
        .collect();
    (objects, diagnostics)
}

fn push_object(path: &str, node: Node, out: &mut Vec<ManifestObject>) {
    let kind = node.get("kind").and_then(Node::as_str).unwrap_or("");
    let has_api = node.get("apiVersion").and_then(Node::as_str).is_some();
    if kind.is_empty() || !has_api {
        return;
    }
    if kind.ends_with("List") {
        if let Some(items) = node.get("items").and_then(Node::as_seq) {
            for item in items {
                push_object(path, item.clone(), out);
            }
        }
        return;
    }
    out.push(ManifestObject {
        path: path.to_string(),
        line: node.line.max(1),
        value: node.to_json(),
        node,
    });
}

/// The service rules' inputs over one fleet: the fleet's Dockerfiles indexed
/// once by every folder above them, so a service finds its own in the index
/// instead of scanning every Dockerfile of the fleet (quadratic over 10,000
/// services).
#[derive(Debug)]
pub struct ServiceInputs<'a> {
    /// Each Dockerfile with a final-stage base image, in the fleet's order.
    finals: Vec<(&'a model::Dockerfile, &'a model::ImageRef)>,
    /// Folder (`a`, `a/b`) -> indexes into `finals` of the Dockerfiles under it, ascending.
    under: std::collections::HashMap<&'a str, Vec<usize>>,
}

impl<'a> ServiceInputs<'a> {
    pub fn new(fleet: &'a Fleet) -> ServiceInputs<'a> {
        let finals: Vec<_> = fleet
            .dockerfiles
            .iter()
            .filter_map(|d| Some((d, d.final_base()?)))
            .collect();
        let mut under: std::collections::HashMap<&str, Vec<usize>> = Default::default();
        for (i, (dockerfile, _)) in finals.iter().enumerate() {
            let path = dockerfile.path.as_str();
            for (slash, _) in path.match_indices('/') {
                under.entry(&path[..slash]).or_default().push(i);
            }
        }
        ServiceInputs { finals, under }
    }

    /// The input of the service rules: the service as `scan --json` prints it,
    /// and the final-stage base image of each of its Dockerfiles with its line.
    pub fn of(&self, service: &Service) -> Value {
        let all: Vec<usize>;
        let candidates: &[usize] = match service.repo.as_deref() {
            None | Some("") => {
                all = (0..self.finals.len()).collect();
                &all
            }
            Some(repo) => self.under.get(repo).map_or(&[], Vec::as_slice),
        };
        let mut bases = Vec::new();
        for &i in candidates {
            let (dockerfile, base) = self.finals[i];
            if !service.base_images.contains(base) {
                continue;
            }
            let at = dockerfile
                .stages
                .iter()
                .rev()
                .find(|s| matches!(&s.base, StageBase::Image(i) if i == base))
                .map_or_else(|| Provenance::new(&dockerfile.path, 1), |s| s.at.clone());
            bases.push(json!({ "image": base.to_string(), "at": at }));
        }
        json!({ "service": service, "base_images": bases })
    }
}
