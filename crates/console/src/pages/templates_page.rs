//! The templates page: apps per pinned version of each template, and with
//! `?version=` the check of that release against every app, its
//! representatives and adoption waves (`template_check`).

use super::template_check;
use super::{link_at, link_service};
use crate::graph::Graph;
use crate::svg;
use crate::web::{Fail, Page, Query, enc, esc, paginate, table};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

/// `/templates`: the adoption charts, and with `?version=` that release's check and plan above them.
pub fn show(graph: &Graph, query: &Query, api: bool) -> Result<Page, Fail> {
    query.only(&["version", "wave_size", "soak", "page"])?;
    let version = query.get("version");
    let defaults = templates::PlanOptions::default();
    let wave_size = match query.get("wave_size") {
        None => defaults.wave_size,
        Some(w) => w.parse().map_err(|_| {
            Fail::BadRequest(format!(
                "wave_size={w}: expected a number of apps per wave (0: no limit)"
            ))
        })?,
    };
    let soak = match query.get("soak") {
        None => defaults.soak,
        Some(d) => {
            yaml::parse_duration(d).map_err(|e| Fail::BadRequest(format!("soak={d}: {e}")))?
        }
    };
    let page = query.page()?;
    if version.is_none()
        && let Some(name) = ["wave_size", "soak", "page"]
            .into_iter()
            .find(|n| query.get(n).is_some())
    {
        return Err(Fail::BadRequest(format!(
            "{name} goes with version=: pick the release to check"
        )));
    }
    let by_source = pins_by_source(graph);
    let adoption = adoption_html(&by_source);
    let mut html = String::from("<h2 id=\"check\">Check a new version</h2>");
    let repo = match template_check::open(graph) {
        Ok(repo) => repo,
        Err(e) if version.is_some() => return Err(e),
        Err(e) => {
            let _ = write!(html, "<p class=\"note\">{}</p>", esc(e.message()));
            return Ok(Page::new(
                "Templates",
                adoption + &html,
                adoption_json(&by_source, None),
            ));
        }
    };
    let options = templates::PlanOptions { wave_size, soak };
    let _ = write!(
        html,
        "<form action=\"/templates#check\"><label>Release of {} <select name=\"version\">{}</select></label> \
         <label>apps per wave <input name=\"wave_size\" value=\"{wave_size}\" size=\"4\"></label> \
         <label>soak <input name=\"soak\" value=\"{}\" size=\"6\"></label> <button>Check</button></form>",
        esc(&repo.label),
        repo.releases
            .all()
            .iter()
            .rev()
            .map(|r| format!(
                "<option{}>{}</option>",
                if version == Some(r.tag.as_str()) {
                    " selected"
                } else {
                    ""
                },
                esc(&r.tag)
            ))
            .collect::<String>(),
        esc(&yaml::format_duration(soak)),
    );
    let Some(version) = version else {
        html.push_str("<p>Pick a release: the console checks every app against it, as <code>bulkhead template check</code> does, and plans its adoption as <code>bulkhead template plan</code>.</p>");
        return Ok(Page::new(
            "Templates",
            adoption + &html,
            adoption_json(&by_source, None),
        ));
    };
    let checked = template_checked(graph, &repo, version, &options)?;
    html.push_str(&check_html(&checked, version, &options, page)?);
    html.push_str("<h2>Adoption today</h2>");
    html.push_str(&adoption);
    // The JSON is built for the API only: a big fleet's plan is no small document.
    let value = if api {
        let mut value = adoption_json(&by_source, Some(checked.as_ref()));
        value["page"] = json!(page);
        value
    } else {
        Json::Null
    };
    Ok(Page::new(
        format!("Templates: check {version}"),
        html,
        value,
    ))
}

/// The check of a release: the apps that would break, why and where, the
/// representatives and the waves; `page` pages the breaking apps.
fn check_html(
    checked: &template_check::Checked,
    version: &str,
    options: &templates::PlanOptions,
    page: usize,
) -> Result<String, Fail> {
    let mut html = String::new();
    let (check, plan) = (&checked.check, &checked.plan);
    let breaking: Vec<&templates::AppCheck> = check.breaking().collect();
    let _ = write!(
        html,
        "<p class=\"summary\" id=\"check-summary\">{} {}: <strong>{}</strong> app(s) would break, {} safe, {} not using the template.</p>",
        esc(&check.template),
        esc(&check.version),
        breaking.len(),
        check.safe().count(),
        check.not_using.len()
    );
    let base = format!(
        "/templates?version={}&wave_size={}&soak={}",
        enc(version),
        options.wave_size,
        enc(&yaml::format_duration(options.soak))
    );
    let (shown, pager) = paginate(&breaking, page, &base)?;
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|app| {
            vec![
                link_service(&app.service),
                esc(&app.owner.as_ref().map_or("-".into(), ToString::to_string)),
                app.tier.map_or("-".into(), |t| t.to_string()),
                esc(&app.current_versions().join(", ")),
                app.problems
                    .iter()
                    .map(|p| esc(&p.message))
                    .collect::<Vec<_>>()
                    .join("<br>"),
                app.problems
                    .iter()
                    .map(|p| link_at(&p.at))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            ]
        })
        .collect();
    html.push_str("<h3>Would break</h3>");
    html.push_str(&table(
        "breaking",
        &["SERVICE", "OWNER", "TIER", "ON", "WHY", "WHERE"],
        &rows,
    ));
    html.push_str(&pager);
    html.push_str("<h3>Representatives and waves</h3>");
    let _ = write!(
        html,
        "<p>{} combination(s) of template file, inputs, value classes and runtime are in use; apps that would break wait until fixed.</p>",
        plan.combinations
    );
    if let Some(first) = plan.waves.iter().find(|w| w.name == "representatives") {
        let rows: Vec<Vec<String>> = first
            .apps
            .iter()
            .map(|a| {
                vec![
                    link_service(&a.service),
                    esc(&a.owner.as_ref().map_or("-".into(), ToString::to_string)),
                    a.tier.map_or("-".into(), |t| t.to_string()),
                    esc(&a.covers.join("; ")),
                ]
            })
            .collect();
        html.push_str(&table(
            "representatives",
            &["SERVICE", "OWNER", "TIER", "FIRST TO COVER"],
            &rows,
        ));
    }
    // A wave's apps are listed up to a few dozen: the plan of a big fleet stays one page.
    const NAMED: usize = 30;
    let rows: Vec<Vec<String>> = plan
        .waves
        .iter()
        .map(|w| {
            let mut apps: Vec<String> = w
                .apps
                .iter()
                .take(NAMED)
                .map(|a| link_service(&a.service))
                .collect();
            if w.apps.len() > NAMED {
                apps.push(format!("… {} more", w.apps.len() - NAMED));
            }
            vec![
                w.number.to_string(),
                esc(&w.name),
                w.apps.len().to_string(),
                esc(&w.gate),
                apps.join(", "),
            ]
        })
        .collect();
    html.push_str(&table(
        "waves",
        &["WAVE", "NAME", "APPS", "GATE", "WHICH"],
        &rows,
    ));
    Ok(html)
}

/// Services by pinned version, by template source.
type BySource = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Apps per version: a service pinning one release in several places counts once.
fn pins_by_source(graph: &Graph) -> BySource {
    let mut by_source = BySource::new();
    for s in &graph.fleet.services {
        for t in &s.templates {
            by_source
                .entry(t.source.clone())
                .or_default()
                .entry(t.version.clone().unwrap_or_else(|| "unpinned".into()))
                .or_default()
                .insert(s.name.clone());
        }
    }
    by_source
}

/// The adoption charts and tables, one per template source.
fn adoption_html(by_source: &BySource) -> String {
    let mut adoption = String::new();
    for (source, versions) in by_source {
        let mut bars: Vec<(String, usize)> =
            versions.iter().map(|(v, s)| (v.clone(), s.len())).collect();
        bars.sort_by_key(|b| std::cmp::Reverse(version_key(&b.0)));
        let _ = write!(
            adoption,
            "<h2>{}</h2>{}",
            esc(source),
            svg::bar_chart(&format!("apps per version of {source}"), &bars)
        );
        let rows: Vec<Vec<String>> = bars
            .iter()
            .map(|(v, n)| {
                vec![
                    esc(v),
                    n.to_string(),
                    // An unpinned include follows the template's default branch: no release to weigh.
                    if v == "unpinned" {
                        "-".to_string()
                    } else {
                        format!(
                            "<a href=\"/impact?template={}\">impact of {}</a>",
                            enc(&format!("{source}@{v}")),
                            esc(v)
                        )
                    },
                ]
            })
            .collect();
        adoption.push_str(&table(
            &format!(
                "t-{}",
                by_source.keys().position(|k| k == source).unwrap_or(0)
            ),
            &["VERSION", "APPS", ""],
            &rows,
        ));
    }
    if by_source.is_empty() {
        adoption.push_str("<p>No service pins a CI template.</p>");
    }
    adoption
}

/// The check of `version`, computed once per graph and plan options.
fn template_checked(
    graph: &Graph,
    repo: &template_check::Repo,
    version: &str,
    options: &templates::PlanOptions,
) -> Result<Arc<template_check::Checked>, Fail> {
    graph.template_check((version, options), || repo.check(graph, version, options))
}

/// The templates page's JSON: adoption by source and version, and the check when one was asked.
fn adoption_json(by_source: &BySource, checked: Option<&template_check::Checked>) -> Json {
    json!({
        "templates": by_source.iter().map(|(s, v)| json!({"source": s, "versions": v.iter().map(|(ver, apps)| json!({"version": ver, "apps": apps.len(), "services": apps})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "check": checked.map(|c| json!({
            "template": c.check.template,
            "version": c.check.version,
            "breaking": c.check.breaking().collect::<Vec<_>>(),
            "safe": c.check.safe().map(|a| &a.service).collect::<Vec<_>>(),
            "not_using": c.check.not_using.len(),
        })),
        "plan": checked.map(|c| &c.plan),
    })
}

/// Orders `v1.2.10` after `v1.2.9`: numeric parts compared as numbers.
fn version_key(v: &str) -> Vec<(u64, String)> {
    v.trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| (p.parse().unwrap_or(0), p.to_string()))
        .collect()
}
