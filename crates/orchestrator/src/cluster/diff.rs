//! A rollout's dry run on a cluster: every patch the Kubernetes executor
//! would send (Service selectors, HTTPRoute weights, Deployment images),
//! applied to the object as read (GET only, nothing written)
//! and shown as `kubectl diff` shows a change, a unified diff of the
//! object's YAML before and after.
//!
//! [`rehearse`] runs the rollout's state machine as if every gate passed
//! (analyses successful, timers fired, manual gates promoted), so the diffs
//! are the whole rollout's, step by step.

use super::Connection;
use crate::executor::{ExecError, Executor, ImageMove, Labels, WeightedPool};
use crate::gitops::backend_name;
use rollout::{Action, Event, Rollout, Verdict};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

/// The most events a rehearsal applies: a plan's events are bounded by its
/// steps, so more means a machine that does not settle.
const MAX_EVENTS: usize = 100_000;

/// An executor that reads the objects it would patch and records each
/// change as a diff instead of sending it.
#[derive(Debug)]
pub struct DiffExecutor {
    connection: Connection,
    namespace: String,
    /// The objects as the rehearsal has changed them, by API path.
    objects: BTreeMap<String, Value>,
    /// One `kubectl diff` per patch, in order.
    pub diffs: Vec<String>,
}

impl DiffExecutor {
    /// Reads through `connection`, in `namespace`.
    pub fn new(connection: Connection, namespace: &str) -> DiffExecutor {
        DiffExecutor {
            connection,
            namespace: namespace.to_string(),
            objects: BTreeMap::new(),
            diffs: Vec::new(),
        }
    }

    /// The object at `path`, as last changed by the rehearsal, else as read.
    fn object(&mut self, path: &str) -> Result<Value, ExecError> {
        if let Some(object) = self.objects.get(path) {
            return Ok(object.clone());
        }
        let object = self
            .connection
            .get_json(path)
            .map_err(|e| ExecError::Kubernetes(e.to_string()))?;
        self.objects.insert(path.to_string(), object.clone());
        Ok(object)
    }

    /// As [`DiffExecutor::object`], `None` when the API server has no such object.
    fn object_opt(&mut self, path: &str) -> Result<Option<Value>, ExecError> {
        if let Some(object) = self.objects.get(path) {
            return Ok(Some(object.clone()));
        }
        let object = self
            .connection
            .get_json_opt(path)
            .map_err(|e| ExecError::Kubernetes(e.to_string()))?;
        if let Some(object) = &object {
            self.objects.insert(path.to_string(), object.clone());
        }
        Ok(object)
    }

    fn route_path(&self, service: &str) -> String {
        format!(
            "/apis/gateway.networking.k8s.io/v1/namespaces/{}/httproutes/{service}",
            self.namespace
        )
    }

    fn deployment_path(&self, service: &str) -> String {
        format!(
            "/apis/apps/v1/namespaces/{}/deployments/{service}",
            self.namespace
        )
    }

    /// The Deployment named after `service` and the index of its container
    /// that runs `to`'s image, as the executor picks it.
    fn deployment(&mut self, service: &str, to: &str) -> Result<(Value, usize), ExecError> {
        let object = self.object(&self.deployment_path(service))?;
        let typed: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(object.clone())
            .map_err(|e| ExecError::Kubernetes(format!("Deployment {service}: {e}")))?;
        let index = crate::kubernetes::container_for(&typed, to).map_err(|e| {
            ExecError::Kubernetes(format!("Deployment {}/{service}: {e}", self.namespace))
        })?;
        Ok((object, index))
    }

    /// Records `patch` (a JSON merge patch) of the object at `path`.
    fn patch(&mut self, path: &str, patch: &Value) -> Result<(), ExecError> {
        let before = self.object(path)?;
        let mut after = before.clone();
        merge(&mut after, patch);
        let diff = kubectl_diff(&before, &after);
        if !diff.is_empty() {
            self.diffs.push(diff);
        }
        self.objects.insert(path.to_string(), after);
        Ok(())
    }
}

impl Executor for DiffExecutor {
    fn kind(&self) -> &'static str {
        "kubernetes (dry run)"
    }

    /// The Service's selector, and the route's weights all on this pool
    /// when an HTTPRoute named after the service has its backendRef.
    fn set_selector(&mut self, service: &str, selector: &Labels) -> Result<(), ExecError> {
        let path = format!("/api/v1/namespaces/{}/services/{service}", self.namespace);
        self.patch(
            &path,
            &serde_json::json!({ "spec": { "selector": selector } }),
        )?;
        let route = self.route_path(service);
        let Some(object) = self.object_opt(&route)? else {
            return Ok(());
        };
        let backend = backend_name(service, selector);
        let mut rules = object["spec"]["rules"].clone();
        let mut found = false;
        for rule in rules.as_array_mut().into_iter().flatten() {
            for b in rule["backendRefs"].as_array_mut().into_iter().flatten() {
                let this = b["name"] == backend.as_str();
                found |= this;
                b["weight"] = if this { 100 } else { 0 }.into();
            }
        }
        if !found {
            return Ok(());
        }
        self.patch(&route, &serde_json::json!({ "spec": { "rules": rules } }))
    }

    fn set_weights(&mut self, service: &str, pools: &[WeightedPool]) -> Result<(), ExecError> {
        let path = self.route_path(service);
        let route = self.object(&path)?;
        let mut rules = route["spec"]["rules"].clone();
        for pool in pools {
            let name = backend_name(service, &pool.selector);
            let mut found = false;
            for rule in rules.as_array_mut().into_iter().flatten() {
                for backend in rule["backendRefs"].as_array_mut().into_iter().flatten() {
                    if backend["name"] == name.as_str() {
                        backend["weight"] = pool.weight.into();
                        found = true;
                    }
                }
            }
            if !found {
                return Err(ExecError::Kubernetes(format!(
                    "HTTPRoute {}/{service} has no backendRef named {name}",
                    self.namespace
                )));
            }
        }
        self.patch(&path, &serde_json::json!({ "spec": { "rules": rules } }))
    }

    fn image(&mut self, service: &str, to: &str) -> Result<String, ExecError> {
        let (object, index) = self.deployment(service, to)?;
        object["spec"]["template"]["spec"]["containers"][index]["image"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                ExecError::Kubernetes(format!("Deployment {service}: its container has no image"))
            })
    }

    /// The container's image in each Deployment; the rollout status the
    /// executor then waits for is not rehearsed.
    fn set_images(&mut self, moves: &[ImageMove]) -> Result<(), ExecError> {
        for image in moves {
            let (object, index) = self.deployment(&image.service, &image.to)?;
            let mut containers = object["spec"]["template"]["spec"]["containers"].clone();
            containers[index]["image"] = image.to.clone().into();
            self.patch(
                &self.deployment_path(&image.service),
                &serde_json::json!({ "spec": { "template": { "spec": { "containers": containers } } } }),
            )?;
        }
        Ok(())
    }

    fn routing(&mut self) -> Result<BTreeMap<String, String>, ExecError> {
        let path = format!("/api/v1/namespaces/{}/services", self.namespace);
        let list = self
            .connection
            .get_json(&path)
            .map_err(|e| ExecError::Kubernetes(e.to_string()))?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                Some((
                    s["metadata"]["name"].as_str()?.to_string(),
                    s["spec"]["selector"].to_string(),
                ))
            })
            .collect())
    }
}

/// Runs `plan` on `executor` as if every gate passed, and returns the
/// routing actions performed, described.
///
/// # Errors
/// The first routing action the executor refuses.
pub fn rehearse(
    plan: rollout::Plan,
    executor: &mut dyn Executor,
) -> Result<Vec<String>, ExecError> {
    let mut machine = Rollout::new(plan);
    let mut queue = VecDeque::from([Event::Start]);
    let mut performed = Vec::new();
    let mut applied = 0;
    while let Some(event) = queue.pop_front() {
        applied += 1;
        if applied > MAX_EVENTS {
            break;
        }
        for action in machine.step(event) {
            let route = |service: &str| {
                machine
                    .plan
                    .service(service)
                    .map_or_else(|| service.to_string(), |p| p.route.clone())
            };
            match &action {
                Action::SetSelector { service, selector } => {
                    executor.set_selector(&route(service), selector)?;
                    performed.push(crate::driver::action_name(&action));
                }
                Action::SetWeights { service, weights } => {
                    executor.set_weights(&route(service), &WeightedPool::of(weights))?;
                    performed.push(crate::driver::action_name(&action));
                }
                Action::SetImage { service, from, to } => {
                    executor.set_images(&[ImageMove {
                        service: route(service),
                        from: from.clone(),
                        to: to.clone(),
                    }])?;
                    performed.push(crate::driver::action_name(&action));
                }
                Action::Analyze { id, .. } => queue.push_back(Event::AnalysisDone {
                    id: id.clone(),
                    verdict: Verdict::Successful,
                    measurements: Vec::new(),
                }),
                Action::Wait { id, .. } => queue.push_back(Event::TimerFired { id: id.clone() }),
                Action::AwaitHuman { service, .. } => queue.push_back(Event::Promote {
                    service: service.clone(),
                }),
            }
        }
    }
    Ok(performed)
}

/// RFC 7386 JSON merge patch, as the API server applies
/// `application/merge-patch+json`.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(fields), Some(changes)) => {
            for (key, value) in changes {
                if value.is_null() {
                    fields.remove(key);
                } else {
                    merge(fields.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (None, Some(_)) => {
            *target = Value::Object(serde_json::Map::new());
            merge(target, patch);
        }
        _ => *target = patch.clone(),
    }
}

/// `kubectl diff`'s output for one object: the unified diff of its YAML,
/// between files named `LIVE/` and `MERGED/` `group.version.Kind.namespace.name`;
/// empty when nothing changes.
pub fn kubectl_diff(before: &Value, after: &Value) -> String {
    let api = before["apiVersion"]
        .as_str()
        .unwrap_or("v1")
        .replace('/', ".");
    let name = format!(
        "{api}.{}.{}.{}",
        before["kind"].as_str().unwrap_or_default(),
        before["metadata"]["namespace"].as_str().unwrap_or_default(),
        before["metadata"]["name"].as_str().unwrap_or_default(),
    );
    let (old, new) = (yaml(&shown(before)), yaml(&shown(after)));
    let hunks = unified(&old, &new);
    if hunks.is_empty() {
        return String::new();
    }
    format!("diff -u -N LIVE/{name} MERGED/{name}\n--- LIVE/{name}\n+++ MERGED/{name}\n{hunks}")
}

/// The object as kubectl shows it: without `metadata.managedFields`.
fn shown(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    object
}

/// The hunks (`@@ -a,b +c,d @@`, three lines of context) between two texts.
pub fn unified(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // The longest common subsequence, by suffix lengths.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (' ' | '-' | '+', old index, new index, line).
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i, j, a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i, j, a[i]));
            i += 1;
        } else {
            ops.push(('+', i, j, b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = (changed[k] + CONTEXT + 1).min(ops.len());
        while k + 1 < changed.len() && changed[k + 1] <= end + CONTEXT {
            k += 1;
            end = (changed[k] + CONTEXT + 1).min(ops.len());
        }
        let hunk = &ops[start..end];
        let old_len = hunk.iter().filter(|o| o.0 != '+').count();
        let new_len = hunk.iter().filter(|o| o.0 != '-').count();
        let (old_start, new_start) = (hunk[0].1 + 1, hunk[0].2 + 1);
        out.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            if old_len == 0 {
                old_start - 1
            } else {
                old_start
            },
            if new_len == 0 {
                new_start - 1
            } else {
                new_start
            },
        ));
        for (sign, _, _, line) in hunk {
            out.push(*sign);
            out.push_str(line);
            out.push('\n');
        }
        k += 1;
    }
    out
}

/// YAML as kubectl prints it (sigs.k8s.io/yaml): keys sorted, two spaces,
/// list items at their key's column.
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(fields) if !fields.is_empty() => block(value, 0, &mut out),
        Value::Array(items) if !items.is_empty() => block(value, 0, &mut out),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(fields) => !fields.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                let key = inline(&Value::String(key.clone()));
                match value {
                    Value::Object(_) if is_block(value) => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        block(value, indent + 2, out);
                    }
                    Value::Array(_) if is_block(value) => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        block(value, indent, out);
                    }
                    _ => out.push_str(&format!("{pad}{key}: {}\n", inline(value))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_block(item) {
                    let mut inner = String::new();
                    block(item, indent + 2, &mut inner);
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(&inner[indent + 2..]);
                } else {
                    out.push_str(&format!("{pad}- {}\n", inline(item)));
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", inline(scalar))),
    }
}

/// A scalar (or an empty map or list) on one line; strings YAML would read
/// as something else are quoted.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.trim() == s
                && !s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`~".contains(c))
                && !s.contains(": ")
                && !s.contains(" #")
                && !s.ends_with(':')
                && s.chars().all(|c| !c.is_control())
                && s.parse::<f64>().is_err()
                && !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
                );
            if plain {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
    }
}
