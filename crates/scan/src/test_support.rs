//! Helpers shared by the parsers' tests: indented YAML in, compact text out.

use model::{Facts, TemplateRef};

pub use ::test_support::dedent;

/// One line per template reference, then one per diagnostic:
/// `kind source [file] [@version] [{inputs}] [job=name] L<line>` and `severity L<line>: message`.
/// Every fact must carry `path` as its provenance.
pub fn render_templates(facts: &Facts, path: &str) -> String {
    let mut out = String::new();
    for t in &facts.templates {
        assert_eq!(t.at.path, path, "provenance keeps the path");
        out.push_str(&render_template(t));
        out.push('\n');
    }
    for d in &facts.diagnostics {
        assert_eq!(d.path, path, "diagnostics keep the path");
        match d.line {
            Some(line) => out.push_str(&format!("{} L{line}: {}\n", d.severity, d.message)),
            None => out.push_str(&format!("{}: {}\n", d.severity, d.message)),
        }
    }
    out
}

fn render_template(t: &TemplateRef) -> String {
    let kind = serde_json::to_value(t.kind).expect("kind serializes");
    let mut line = format!("{} {}", kind.as_str().unwrap_or("?"), t.source);
    if let Some(file) = &t.file {
        line.push_str(&format!(" {file}"));
    }
    if let Some(version) = &t.version {
        line.push_str(&format!(" @{version}"));
    }
    if !t.inputs.is_empty() {
        let inputs: Vec<String> = t.inputs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        line.push_str(&format!(" {{{}}}", inputs.join(", ")));
    }
    if let Some(job) = &t.job {
        line.push_str(&format!(" job={job}"));
    }
    line.push_str(&format!(" L{}", t.at.line));
    line
}
