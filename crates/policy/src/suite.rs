//! gator-format test suites (`kind: Suite`): each test binds a template and a
//! constraint, each case an object and assertions on the violations it gets.
//!
//! ```yaml
//! kind: Suite
//! apiVersion: test.gatekeeper.sh/v1alpha1
//! tests:
//! - name: allowed-repos
//!   template: template.yaml
//!   constraint: constraint.yaml
//!   cases:
//!   - name: disallowed
//!     object: samples/bad.yaml
//!     inventory:                 # optional: objects seen as data.inventory
//!     - samples/existing.yaml
//!     assertions:
//!     - violations: yes          # yes | no | a count
//!       message: not allowed     # optional: count only messages containing this
//! ```
//!
//! Files are named relative to the suite; the caller reads them through a
//! `load` function, so this module does no I/O.

use crate::gatekeeper::GatekeeperSet;
use crate::input::load_manifests;
use crate::inventory::Inventory;
use model::Severity;
use serde::Serialize;
use serde_json::Value;
use yaml::Node;

/// The result of one suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteReport {
    /// Set when the suite file itself could not be read.
    pub error: Option<String>,
    pub tests: Vec<TestReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestReport {
    pub name: String,
    /// Set when the template or constraint could not be loaded; every case then fails.
    pub error: Option<String>,
    pub skipped: bool,
    pub cases: Vec<CaseReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseReport {
    pub name: String,
    /// Why the case failed; empty when it passed.
    pub failures: Vec<String>,
    pub skipped: bool,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.cases.iter().all(CaseReport::passed)
    }
}

impl SuiteReport {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.tests.iter().all(TestReport::passed)
    }

    /// `gator verify -v` style lines.
    pub fn render(&self, suite: &str) -> String {
        let mut out = String::new();
        if let Some(e) = &self.error {
            out.push_str(&format!("FAIL\t{suite}\n\t{e}\n"));
            return out;
        }
        for test in &self.tests {
            out.push_str(&format!("=== RUN   {}\n", test.name));
            if let Some(e) = &test.error {
                out.push_str(&format!("    {e}\n"));
            }
            for case in &test.cases {
                out.push_str(&format!("    === RUN   {}\n", case.name));
                let verdict = if case.skipped {
                    "SKIP"
                } else if case.passed() {
                    "PASS"
                } else {
                    "FAIL"
                };
                for failure in &case.failures {
                    out.push_str(&format!("        {failure}\n"));
                }
                out.push_str(&format!("    --- {verdict}: {}\n", case.name));
            }
            let verdict = if test.skipped {
                "SKIP"
            } else if test.passed() {
                "PASS"
            } else {
                "FAIL"
            };
            out.push_str(&format!("--- {verdict}: {}\n", test.name));
        }
        out.push_str(&format!(
            "{}\t{suite}\n",
            if self.passed() { "ok" } else { "FAIL" }
        ));
        out
    }
}

/// How many violations an assertion expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Yes,
    No,
    Exactly(usize),
}

/// Runs a suite. `load(path)` returns the text of a file named in it (relative to the suite).
pub fn run(text: &str, load: &mut dyn FnMut(&str) -> Result<String, String>) -> SuiteReport {
    let (documents, error) = yaml::load(text);
    let fail = |e: String| SuiteReport {
        error: Some(e),
        tests: Vec::new(),
    };
    if let Some(e) = error {
        return fail(format!("line {}: invalid YAML: {}", e.line, e.message));
    }
    let Some(doc) = documents.first() else {
        return fail("empty suite".to_string());
    };
    if doc.get("kind").and_then(Node::as_str) != Some("Suite") {
        return fail("not a gator suite (kind: Suite)".to_string());
    }
    let tests = doc.get("tests").and_then(Node::as_seq).unwrap_or(&[]);
    SuiteReport {
        error: None,
        tests: tests.iter().map(|t| run_test(t, load)).collect(),
    }
}

fn run_test(test: &Node, load: &mut dyn FnMut(&str) -> Result<String, String>) -> TestReport {
    let name = test
        .get("name")
        .and_then(Node::string)
        .unwrap_or_else(|| format!("test at line {}", test.line));
    let skipped = test.get("skip").and_then(Node::as_str) == Some("true");
    let cases_nodes = test.get("cases").and_then(Node::as_seq).unwrap_or(&[]);
    let case_names: Vec<String> = cases_nodes
        .iter()
        .map(|c| {
            c.get("name")
                .and_then(Node::string)
                .unwrap_or_else(|| format!("case at line {}", c.line))
        })
        .collect();
    let mut report = TestReport {
        name,
        error: None,
        skipped,
        cases: Vec::new(),
    };
    if skipped {
        report.cases = case_names
            .into_iter()
            .map(|name| CaseReport {
                name,
                failures: Vec::new(),
                skipped: true,
            })
            .collect();
        return report;
    }
    let set = match load_test_policies(test, load) {
        Ok(set) => set,
        Err(e) => {
            report.cases = case_names
                .into_iter()
                .map(|name| CaseReport {
                    name,
                    failures: vec![e.clone()],
                    skipped: false,
                })
                .collect();
            report.error = Some(e);
            return report;
        }
    };
    for (case, name) in cases_nodes.iter().zip(case_names) {
        let mut set = set.clone();
        let skipped = case.get("skip").and_then(Node::as_str) == Some("true");
        let failures = if skipped {
            Vec::new()
        } else {
            run_case(&mut set, case, load)
        };
        report.cases.push(CaseReport {
            name,
            failures,
            skipped,
        });
    }
    report
}

fn load_test_policies(
    test: &Node,
    load: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<GatekeeperSet, String> {
    let mut set = GatekeeperSet::new();
    for key in ["template", "constraint"] {
        let file = test
            .get(key)
            .and_then(Node::as_str)
            .ok_or_else(|| format!("test has no {key} file"))?;
        let text = load(file)?;
        let diagnostics = set.add_yaml(file, &text);
        if let Some(d) = diagnostics.iter().find(|d| d.severity == Severity::Error) {
            return Err(d.to_string());
        }
    }
    if set.templates().is_empty() {
        return Err("the template file holds no ConstraintTemplate".to_string());
    }
    if set.constraints().len() != 1 {
        return Err(format!(
            "the constraint file must hold one constraint, not {}",
            set.constraints().len()
        ));
    }
    if let Some(d) = set.unbound().first() {
        return Err(d.to_string());
    }
    Ok(set)
}

fn run_case(
    set: &mut GatekeeperSet,
    case: &Node,
    load: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Vec<String> {
    if let Some(files) = case.get("inventory") {
        match load_inventory(&files.strings(), load) {
            Ok(inventory) => set.set_inventory(&inventory),
            Err(e) => return vec![e],
        }
    }
    let Some(file) = case.get("object").and_then(Node::as_str) else {
        return vec!["case has no object file".to_string()];
    };
    let text = match load(file) {
        Ok(text) => text,
        Err(e) => return vec![e],
    };
    let (objects, diagnostics) = load_manifests(file, &text);
    if let Some(d) = diagnostics.first() {
        return vec![d.to_string()];
    }
    let Some(object) = objects.first() else {
        return vec![format!("{file}: no Kubernetes object")];
    };
    // An AdmissionReview is reviewed as Gatekeeper would receive it.
    let (object_value, request): (Value, Option<Value>) =
        if object.value.get("kind").and_then(Value::as_str) == Some("AdmissionReview") {
            let request = object.value.get("request").cloned().unwrap_or(Value::Null);
            (
                request.get("object").cloned().unwrap_or(Value::Null),
                Some(request),
            )
        } else {
            (object.value.clone(), None)
        };
    let violations = match set.evaluate_matching(0, &object_value, request.as_ref()) {
        Ok(v) => v,
        Err(e) => return vec![e.to_string()],
    };
    let mut failures = Vec::new();
    for assertion in case.get("assertions").and_then(Node::as_seq).unwrap_or(&[]) {
        let expect = match assertion.get("violations").and_then(Node::as_str) {
            None | Some("yes") | Some("true") => Expect::Yes,
            Some("no") | Some("false") => Expect::No,
            Some(n) => match n.parse::<usize>() {
                Ok(n) => Expect::Exactly(n),
                Err(_) => {
                    failures.push(format!(
                        "line {}: violations must be yes, no or a count, not {n:?}",
                        assertion.line
                    ));
                    continue;
                }
            },
        };
        let message = assertion.get("message").and_then(Node::as_str);
        let matching = violations
            .iter()
            .filter(|(msg, _)| message.is_none_or(|m| msg.contains(m)))
            .count();
        let ok = match expect {
            Expect::Yes => matching > 0,
            Expect::No => matching == 0,
            Expect::Exactly(n) => matching == n,
        };
        if !ok {
            let wanted = match expect {
                Expect::Yes => "at least one violation".to_string(),
                Expect::No => "no violations".to_string(),
                Expect::Exactly(n) => format!("{n} violation(s)"),
            };
            let about = message
                .map(|m| format!(" with message containing {m:?}"))
                .unwrap_or_default();
            let got: Vec<&str> = violations.iter().map(|(m, _)| m.as_str()).collect();
            failures.push(format!("want {wanted}{about}, got {matching}: {got:?}"));
        }
    }
    failures
}

/// The objects of a case's `inventory` files, as gator loads them into `data.inventory`.
fn load_inventory(
    files: &[String],
    load: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Inventory, String> {
    let mut inventory = Inventory::new();
    for file in files {
        let text = load(file)?;
        let (objects, diagnostics) = load_manifests(file, &text);
        if let Some(d) = diagnostics.first() {
            return Err(d.to_string());
        }
        for object in &objects {
            if !inventory.add(&object.value) {
                return Err(format!(
                    "{}: an inventory object needs apiVersion, kind and metadata.name",
                    object.provenance()
                ));
            }
        }
    }
    Ok(inventory)
}

#[cfg(test)]
mod tests;
