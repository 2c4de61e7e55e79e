//! OPA Gatekeeper compatibility: `ConstraintTemplate`s, `Constraint`s, and
//! their evaluation with `input.review` and `input.parameters` shaped as
//! Gatekeeper shapes them.
//!
//! Each template gets its own regorus engine (templates often share package
//! names); its `libs` are loaded beside it. Rego v0 is tried first, as
//! Gatekeeper does for `spec.targets[].rego`, then v1; `code[].source.version: v1`
//! asks for v1 directly. A constraint applies when its `spec.match` (kinds,
//! namespaces, excludedNamespaces, labelSelector, scope) matches the object;
//! `enforcementAction` `deny` (default), `warn` or `dryrun` sets the level.

use crate::builtin::eval_error;
use crate::input::{rego_object, to_rego};
use crate::inventory::Inventory;
use crate::vm::Rule;
use crate::{Level, PolicyError};
use model::{Diagnostic, Provenance};
use regorus::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use yaml::Node;

/// The Gatekeeper admission target, the only one bulkhead evaluates.
pub const ADMISSION_TARGET: &str = "admission.k8s.gatekeeper.sh";

/// A loaded `ConstraintTemplate`.
#[derive(Debug, Clone)]
pub struct Template {
    /// `spec.crd.spec.names.kind`: the kind of its constraints.
    pub kind: String,
    pub at: Provenance,
    /// `data.<package>.violation`.
    rule: Rule,
}

/// What a constraint's `enforcementAction` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deny,
    Warn,
    /// Audit only: evaluated by suites, never reported by `check` or admission.
    Dryrun,
}

/// A loaded constraint: an instance of a template's kind.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub kind: String,
    pub name: String,
    pub action: Action,
    pub matcher: Match,
    pub parameters: Value,
    pub at: Provenance,
}

/// `spec.match` of a constraint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Match {
    /// (apiGroups, kinds) pairs; empty matches every kind. `*` is a wildcard.
    pub kinds: Vec<(Vec<String>, Vec<String>)>,
    /// Namespace names, with a `*` prefix or suffix glob; `None` matches all.
    pub namespaces: Option<Vec<String>>,
    pub excluded_namespaces: Vec<String>,
    pub label_selector: Option<LabelSelector>,
    /// `Namespaced`, `Cluster` or `*`.
    pub scope: Option<String>,
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    /// (key, operator, values).
    pub match_expressions: Vec<(String, String, Vec<String>)>,
}

/// One violation reported by a constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// `<Kind>/<constraint name>`.
    pub policy: String,
    pub level: Level,
    pub message: String,
    pub details: Option<Value>,
}

/// Templates and constraints, bound by kind.
#[derive(Debug, Clone, Default)]
pub struct GatekeeperSet {
    templates: Vec<Template>,
    constraints: Vec<Constraint>,
    budget: Option<Duration>,
    /// `data`, with the inventory, for every template (loaded now or later).
    data: Option<regorus::Value>,
}

impl GatekeeperSet {
    pub fn new() -> GatekeeperSet {
        GatekeeperSet::default()
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty() && self.constraints.is_empty()
    }

    pub(crate) fn set_budget(&mut self, budget: Duration) {
        self.budget = Some(budget);
        for template in &mut self.templates {
            template.rule.set_budget(budget);
        }
    }

    /// Makes `inventory` the `data.inventory` of every template, replacing the previous one.
    pub fn set_inventory(&mut self, inventory: &Inventory) {
        let data = to_rego(&json!({ "inventory": inventory.to_value() }));
        for template in &mut self.templates {
            set_data(template, &data);
        }
        self.data = Some(data);
    }

    /// Reads every `ConstraintTemplate` and constraint of a YAML stream; other
    /// documents are ignored. Problems become diagnostics with the line.
    pub fn add_yaml(&mut self, path: &str, text: &str) -> Vec<Diagnostic> {
        let (documents, error) = yaml::load(text);
        let mut diagnostics = Vec::new();
        for doc in &documents {
            let api = doc.get("apiVersion").and_then(Node::as_str).unwrap_or("");
            let kind = doc.get("kind").and_then(Node::as_str).unwrap_or("");
            let at = Provenance::new(path, doc.line.max(1));
            if api.starts_with("templates.gatekeeper.sh/") && kind == "ConstraintTemplate" {
                match load_template(doc, at.clone(), self.budget) {
                    Ok(mut template) => {
                        if let Some(data) = &self.data {
                            set_data(&mut template, data);
                        }
                        if let Some(old) =
                            self.templates.iter().position(|t| t.kind == template.kind)
                        {
                            diagnostics.push(Diagnostic::warning_at(
                                &at,
                                format!(
                                    "ConstraintTemplate for kind {} replaces the one at {}",
                                    template.kind, self.templates[old].at
                                ),
                            ));
                            self.templates.remove(old);
                        }
                        self.templates.push(template);
                    }
                    Err(message) => diagnostics.push(Diagnostic::error_at(&at, message)),
                }
            } else if api.starts_with("constraints.gatekeeper.sh/") {
                match load_constraint(doc, at.clone()) {
                    Ok((constraint, warnings)) => {
                        diagnostics
                            .extend(warnings.into_iter().map(|w| Diagnostic::warning_at(&at, w)));
                        self.constraints.push(constraint);
                    }
                    Err(message) => diagnostics.push(Diagnostic::error_at(&at, message)),
                }
            }
        }
        if let Some(e) = error {
            diagnostics.push(Diagnostic::error(path, Some(e.line), e.to_string()));
        }
        diagnostics
    }

    /// Constraints whose kind no loaded template defines (they can never fire).
    pub fn unbound(&self) -> Vec<Diagnostic> {
        self.constraints
            .iter()
            .filter(|c| !self.templates.iter().any(|t| t.kind == c.kind))
            .map(|c| {
                Diagnostic::error_at(
                    &c.at,
                    format!(
                        "constraint {}/{}: no ConstraintTemplate defines kind {}",
                        c.kind, c.name, c.kind
                    ),
                )
            })
            .collect()
    }

    /// Every enforced (deny or warn) constraint that matches `object`.
    /// `request` is the AdmissionRequest when there is one; otherwise one is shaped from the object.
    /// `converted` is `request` already converted to a Rego value, when the caller has it.
    pub(crate) fn review(
        &mut self,
        object: &Value,
        request: Option<&Value>,
        converted: Option<&regorus::Value>,
    ) -> Result<Vec<Violation>, PolicyError> {
        let mut out = Vec::new();
        // Converted on the first constraint that matches, and only then.
        let mut review = converted.cloned();
        for i in 0..self.constraints.len() {
            let constraint = &self.constraints[i];
            let level = match constraint.action {
                Action::Deny => Level::Deny,
                Action::Warn => Level::Warn,
                Action::Dryrun => continue,
            };
            if !constraint.matcher.matches(object, request) {
                continue;
            }
            let review = review.get_or_insert_with(|| rego_review(object, request));
            for (message, details) in self.evaluate(i, review)? {
                let constraint = &self.constraints[i];
                out.push(Violation {
                    policy: format!("{}/{}", constraint.kind, constraint.name),
                    level,
                    message,
                    details,
                });
            }
        }
        Ok(out)
    }

    /// Evaluates constraint `index` against a review, whatever its action and match.
    /// An unbound constraint yields nothing.
    pub(crate) fn evaluate(
        &mut self,
        index: usize,
        review: &regorus::Value,
    ) -> Result<Vec<(String, Option<Value>)>, PolicyError> {
        let constraint = &self.constraints[index];
        let input = rego_object([
            ("review", review.clone()),
            ("parameters", to_rego(&constraint.parameters)),
        ]);
        let Some(template) = self
            .templates
            .iter_mut()
            .find(|t| t.kind == constraint.kind)
        else {
            return Ok(Vec::new());
        };
        let result = template.rule.eval(input).map_err(|e| {
            let what = format!("{}/{}", constraint.kind, constraint.name);
            eval_error(&what, &e, template.rule.budget())
        })?;
        let result = serde_json::to_value(&result).unwrap_or(Value::Null);
        let mut violations = Vec::new();
        for item in result.as_array().into_iter().flatten() {
            let message = match item.get("msg") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => item.to_string(),
            };
            let details = item.get("details").filter(|d| !d.is_null()).cloned();
            violations.push((message, details));
        }
        Ok(violations)
    }

    /// Evaluates the constraint named `kind/name`, as a gator suite does: match first.
    pub(crate) fn evaluate_matching(
        &mut self,
        index: usize,
        object: &Value,
        request: Option<&Value>,
    ) -> Result<Vec<(String, Option<Value>)>, PolicyError> {
        if !self.constraints[index].matcher.matches(object, request) {
            return Ok(Vec::new());
        }
        self.evaluate(index, &rego_review(object, request))
    }
}

fn set_data(template: &mut Template, data: &regorus::Value) {
    // Only an object can fail to load, and `data` is always one.
    let loaded = template.rule.set_data(data.clone());
    debug_assert!(loaded.is_ok(), "data is an object: {loaded:?}");
}

/// The review as Rego sees it: the request, or one shaped from the object.
fn rego_review(object: &Value, request: Option<&Value>) -> regorus::Value {
    match request {
        Some(request) => to_rego(request),
        None => to_rego(&review_of(object)),
    }
}

/// The AdmissionRequest Gatekeeper (and gator) shape around an object.
pub fn review_of(object: &Value) -> Value {
    let api = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
    let mut review = json!({
        "kind": { "group": group, "version": version, "kind": object.get("kind").cloned().unwrap_or(Value::Null) },
        "operation": "CREATE",
        "object": object,
        "userInfo": { "username": "bulkhead" },
        "dryRun": false,
    });
    if let Some(name) = object.pointer("/metadata/name") {
        review["name"] = name.clone();
    }
    if let Some(ns) = object.pointer("/metadata/namespace") {
        review["namespace"] = ns.clone();
    }
    review
}

fn load_template(doc: &Node, at: Provenance, budget: Option<Duration>) -> Result<Template, String> {
    let kind = doc
        .at(&["spec", "crd", "spec", "names", "kind"])
        .and_then(Node::as_str)
        .ok_or("ConstraintTemplate has no spec.crd.spec.names.kind")?
        .to_string();
    let targets = doc
        .at(&["spec", "targets"])
        .and_then(Node::as_seq)
        .ok_or_else(|| format!("ConstraintTemplate {kind} has no spec.targets list"))?;
    let target = targets
        .iter()
        .find(|t| {
            t.get("target")
                .and_then(Node::as_str)
                .is_none_or(|n| n == ADMISSION_TARGET)
        })
        .ok_or_else(|| format!("ConstraintTemplate {kind} has no {ADMISSION_TARGET} target"))?;
    // `code: [{engine: Rego, source: {rego, libs, version}}]` is the newer form.
    let code = target
        .get("code")
        .and_then(Node::as_seq)
        .unwrap_or(&[])
        .iter()
        .find(|c| c.get("engine").and_then(Node::as_str) == Some("Rego"))
        .and_then(|c| c.get("source"));
    let (rego, libs, version) = match (target.get("rego").and_then(Node::as_str), code) {
        (Some(rego), _) => (rego, target.get("libs"), None),
        (None, Some(source)) => (
            source
                .get("rego")
                .and_then(Node::as_str)
                .ok_or_else(|| format!("ConstraintTemplate {kind}: code source has no rego"))?,
            source.get("libs"),
            source.get("version").and_then(Node::as_str),
        ),
        (None, None) => return Err(format!("ConstraintTemplate {kind}: target has no rego")),
    };
    let libs: Vec<String> = libs.map(Node::strings).unwrap_or_default();
    let prefer_v1 = version == Some("v1");
    let mut rule = match compile(&kind, rego, &libs, !prefer_v1) {
        Ok(ok) => ok,
        Err(first) => compile(&kind, rego, &libs, prefer_v1)
            .or_else(|_| compile_rewritten(&kind, rego, &libs))
            .map_err(|_| first)?,
    };
    if let Some(budget) = budget {
        rule.set_budget(budget);
    }
    Ok(Template { kind, at, rule })
}

/// The last try for Rego that OPA accepts and regorus refuses as written: the
/// rewrites of [`rewrite`], in Rego v0, where they arise. Errors when no
/// rewrite applies, so the first error is the one reported.
fn compile_rewritten(kind: &str, rego: &str, libs: &[String]) -> Result<Rule, String> {
    let rewritten = |src: &str| rewrite::split_rule_bodies(src);
    let main = rewritten(rego);
    let new_libs: Vec<Option<String>> = libs.iter().map(|l| rewritten(l)).collect();
    if main.is_none() && new_libs.iter().all(Option::is_none) {
        return Err(format!("ConstraintTemplate {kind}: no rewrite applies"));
    }
    let libs: Vec<String> = new_libs
        .into_iter()
        .zip(libs)
        .map(|(new, old)| new.unwrap_or_else(|| old.clone()))
        .collect();
    compile(kind, main.as_deref().unwrap_or(rego), &libs, true)
}

fn compile(kind: &str, rego: &str, libs: &[String], v0: bool) -> Result<Rule, String> {
    let mut engine = Engine::new();
    engine.set_rego_v0(v0);
    for (i, lib) in libs.iter().enumerate() {
        engine
            .add_policy(format!("{kind}/libs/{i}.rego"), lib.clone())
            .map_err(|e| format!("ConstraintTemplate {kind}: invalid Rego in libs[{i}]: {e}"))?;
    }
    let package = engine
        .add_policy(format!("{kind}.rego"), rego.to_string())
        .map_err(|e| format!("ConstraintTemplate {kind}: invalid Rego: {e}"))?;
    // Undefined functions and variables surface at the first evaluation: make that now,
    // on an empty review, so a broken template is a load error and not a review failure.
    let probe = regorus::Value::from(json!({ "review": {}, "parameters": {} }));
    Rule::interpreted(engine, format!("{package}.violation"), &probe)
        .map_err(|e| format!("ConstraintTemplate {kind}: {e}"))
}

fn load_constraint(doc: &Node, at: Provenance) -> Result<(Constraint, Vec<String>), String> {
    let kind = doc
        .get("kind")
        .and_then(Node::as_str)
        .ok_or("constraint has no kind")?
        .to_string();
    let name = doc
        .at(&["metadata", "name"])
        .and_then(Node::as_str)
        .ok_or_else(|| format!("{kind} constraint has no metadata.name"))?
        .to_string();
    let spec = doc.get("spec");
    let action = match spec
        .and_then(|s| s.get("enforcementAction"))
        .and_then(Node::as_str)
    {
        None | Some("deny") => Action::Deny,
        Some("warn") => Action::Warn,
        Some("dryrun") => Action::Dryrun,
        Some(other) => {
            return Err(format!(
                "{kind}/{name}: unknown enforcementAction {other:?} (deny, warn or dryrun)"
            ));
        }
    };
    let mut warnings = Vec::new();
    let matcher = match spec.and_then(|s| s.get("match")).filter(|m| !m.is_null()) {
        None => Match::default(),
        Some(m) => {
            if m.get("namespaceSelector").is_some() {
                warnings.push(format!(
                    "{kind}/{name}: spec.match.namespaceSelector is not evaluated (namespace labels are unknown here); the constraint applies in every namespace"
                ));
            }
            parse_match(m)
        }
    };
    let parameters = spec
        .and_then(|s| s.get("parameters"))
        .map(Node::to_json)
        .filter(|p| !p.is_null())
        .unwrap_or_else(|| json!({}));
    Ok((
        Constraint {
            kind,
            name,
            action,
            matcher,
            parameters,
            at,
        },
        warnings,
    ))
}

fn parse_match(m: &Node) -> Match {
    let kinds = m
        .get("kinds")
        .and_then(Node::as_seq)
        .unwrap_or(&[])
        .iter()
        .map(|k| {
            (
                k.get("apiGroups").map(Node::strings).unwrap_or_default(),
                k.get("kinds").map(Node::strings).unwrap_or_default(),
            )
        })
        .collect();
    let label_selector = m
        .get("labelSelector")
        .filter(|n| !n.is_null())
        .map(|s| LabelSelector {
            match_labels: s
                .get("matchLabels")
                .map(Node::string_map)
                .unwrap_or_default(),
            match_expressions: s
                .get("matchExpressions")
                .and_then(Node::as_seq)
                .unwrap_or(&[])
                .iter()
                .map(|e| {
                    (
                        e.get("key").and_then(Node::string).unwrap_or_default(),
                        e.get("operator").and_then(Node::string).unwrap_or_default(),
                        e.get("values").map(Node::strings).unwrap_or_default(),
                    )
                })
                .collect(),
        });
    Match {
        kinds,
        namespaces: m
            .get("namespaces")
            .filter(|n| !n.is_null())
            .map(Node::strings),
        excluded_namespaces: m
            .get("excludedNamespaces")
            .map(Node::strings)
            .unwrap_or_default(),
        label_selector,
        scope: m.get("scope").and_then(Node::string),
    }
}

fn glob(pattern: &str, name: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        name.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        name.ends_with(suffix)
    } else {
        pattern == name
    }
}

impl Match {
    /// Whether the constraint applies to `object` (and its admission request, if any).
    pub fn matches(&self, object: &Value, request: Option<&Value>) -> bool {
        let str_at = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
        let api = str_at(object, "/apiVersion").unwrap_or_default();
        let group = api.rsplit_once('/').map_or("", |(g, _)| g).to_string();
        let kind = str_at(object, "/kind").unwrap_or_default();
        let (group, kind) = match request {
            Some(r) => (
                str_at(r, "/kind/group").unwrap_or(group),
                str_at(r, "/kind/kind").unwrap_or(kind),
            ),
            None => (group, kind),
        };
        let kind_ok = self.kinds.is_empty()
            || self.kinds.iter().any(|(groups, kinds)| {
                (groups.is_empty() || groups.iter().any(|g| g == "*" || *g == group))
                    && (kinds.is_empty() || kinds.iter().any(|k| k == "*" || *k == kind))
            });
        if !kind_ok {
            return false;
        }
        let namespace = request
            .and_then(|r| str_at(r, "/namespace"))
            .or_else(|| str_at(object, "/metadata/namespace"))
            .filter(|ns| !ns.is_empty())
            .or_else(|| {
                (kind == "Namespace")
                    .then(|| str_at(object, "/metadata/name"))
                    .flatten()
            });
        match self.scope.as_deref() {
            Some("Namespaced") if namespace.is_none() => return false,
            Some("Cluster") if namespace.is_some() && kind != "Namespace" => return false,
            _ => {}
        }
        if let Some(ns) = &namespace {
            if let Some(allowed) = &self.namespaces
                && !allowed.iter().any(|p| glob(p, ns))
            {
                return false;
            }
            if self.excluded_namespaces.iter().any(|p| glob(p, ns)) {
                return false;
            }
        }
        if let Some(selector) = &self.label_selector {
            let labels: BTreeMap<String, String> = object
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            if !selector.matches(&labels) {
                return false;
            }
        }
        true
    }
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|(key, op, values)| {
                let value = labels.get(key);
                match op.as_str() {
                    "In" => value.is_some_and(|v| values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    // An unknown operator selects nothing, as the API server would reject it.
                    _ => false,
                }
            })
    }
}

mod rewrite;

#[cfg(test)]
mod tests;
