//! The pages, each rendered as HTML and as the JSON its `/api/` mirror
//! answers, from one graph version.

pub mod logs;
pub mod rollouts;
pub mod template_check;
pub mod templates_page;
pub mod traces_pages;
pub mod traffic;

use crate::Ctx;
use crate::graph::Graph;
use crate::svg;
use crate::web::{Fail, Page, Query, cli_json, enc, esc, paginate, table};
use bytes::Bytes;
use model::{ImageRef, Service};
use serde::Serialize;
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Services drawn in the whole-fleet graph; beyond this the page asks for a focus.
const GRAPH_LIMIT: usize = 150;

#[derive(Debug)]
pub enum Answer {
    Page(Box<Page>),
    Redirect(String),
}

pub fn route(
    ctx: &Ctx,
    graph: &Graph,
    segments: &[String],
    query: &Query,
    api: bool,
) -> Result<Answer, Fail> {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let page = match segs.as_slice() {
        [] if api => api_index(),
        [] | ["fleet"] => fleet(graph, query)?,
        ["search"] => return search(graph, query),
        ["status"] => status(ctx, graph),
        ["scan"] => scan_json(graph, query)?,
        ["services", name] => service(ctx, graph, name, query)?,
        ["services", name, "traffic"] => service_traffic(ctx, graph, name, query)?,
        ["files", rest @ ..] => file(graph, &rest.join("/"), query)?,
        ["impact"] => impact(graph, query, api)?,
        ["cve"] => {
            query.only(&["id"])?;
            match query.get("id") {
                Some(id) => return Ok(Answer::Redirect(format!("/cve/{}", enc(id)))),
                None => cve_form(graph),
            }
        }
        ["cve", id] => cve(graph, id, query, api)?,
        ["templates"] => templates_page::show(graph, query, api)?,
        ["policy"] => policy_page(ctx, graph, query)?,
        ["policy", "admission"] => {
            query.only(&[])?;
            let (html, value) = traffic::admission_part(ctx);
            Page::new("Admission decisions", html, value)
        }
        ["hosts"] => hosts(graph, query)?,
        ["rollouts"] => rollouts::list(graph, query)?,
        ["rollouts", id] => rollouts::show(ctx, graph, id, query)?,
        ["traces"] => traces_pages::search(ctx, graph, query)?,
        ["traces", id] => traces_pages::show(ctx, id, query)?,
        ["login"] => login(ctx),
        _ => {
            let last = segs.last().copied().unwrap_or("");
            return Err(Fail::not_found(
                format!("no page at /{}", segments.join("/")),
                last,
            ));
        }
    };
    Ok(Answer::Page(Box::new(page)))
}

fn api_index() -> Page {
    let endpoints = [
        "/api/fleet?q=&page=&focus=",
        "/api/services/NAME",
        "/api/services/NAME/traffic",
        "/api/files/PATH",
        "/api/impact?services=A,B | image=REF&to= | template=SOURCE@VERSION | cve=ID | hosts=A,B (&format=table|markdown)",
        "/api/cve/ID (&format=table|markdown)",
        "/api/scan",
        "/api/templates?version=&wave_size=&soak=",
        "/api/policy?rule=&service=&page=",
        "/api/policy/admission",
        "/api/rollouts",
        "/api/rollouts/ID",
        "/api/traces?service=&error=1&min_duration=",
        "/api/traces/ID",
        "/api/hosts",
        "/api/status",
    ];
    let html = format!(
        "<p>Every page has a JSON mirror under /api/.</p><ul>{}</ul>",
        endpoints
            .iter()
            .map(|e| format!("<li><code>{}</code></li>", esc(e)))
            .collect::<String>()
    );
    Page::new("API", html, json!({"endpoints": endpoints}))
}

fn status(ctx: &Ctx, graph: &Graph) -> Page {
    let error = ctx
        .current
        .error
        .read()
        .map(|e| e.clone())
        .unwrap_or_default();
    let value = json!({
        "generation": graph.generation,
        "root": graph.root.display().to_string(),
        "loaded_at_ms": graph.loaded_at_ms,
        "load_ms": graph.load_ms,
        "services": graph.fleet.services.len(),
        "stats": graph.stats,
        "refresh_error": error,
    });
    let html = format!(
        "<p>Generation {} of {}, loaded in {:.0} ms; {} services.</p>{}",
        graph.generation,
        esc(&graph.root.display().to_string()),
        graph.load_ms,
        graph.fleet.services.len(),
        error.map_or(String::new(), |e| format!(
            "<p class=\"error\">The last refresh failed: {}</p>",
            esc(&e)
        ))
    );
    Page::new("Status", html, value)
}

/// The document `bulkhead scan --json` prints, from the resident graph.
fn scan_json(graph: &Graph, query: &Query) -> Result<Page, Fail> {
    query.only(&[])?;
    let fleet = &graph.fleet;
    let doc = ScanDoc {
        schema: "bulkhead.scan/v1",
        root: graph.root.display().to_string(),
        stats: &graph.stats,
        services: &fleet.services,
        routes: &fleet.routes,
        repos: &fleet.repos,
        images: &fleet.images,
        hosts: &fleet.hosts,
        diagnostics: &fleet.diagnostics,
    };
    let mut page = Page::new(
        "Scan",
        "<p>The fleet as <code>bulkhead scan --json</code> prints it: /api/scan.</p>".into(),
        json!(doc),
    );
    page.json_text = cli_json(&doc).map(Bytes::from);
    Ok(page)
}

/// `bulkhead scan --json`'s document, field for field.
#[derive(Serialize)]
struct ScanDoc<'a> {
    schema: &'static str,
    root: String,
    stats: &'a discover::ScanStats,
    services: &'a [Service],
    routes: &'a [model::Route],
    repos: &'a [model::Repo],
    images: &'a [model::Image],
    hosts: &'a [model::Host],
    diagnostics: &'a [model::Diagnostic],
}

/// `bulkhead impact image --json`'s document.
#[derive(Serialize)]
struct ImageDoc<'a> {
    schema: &'static str,
    image: &'a images::CveAnswer,
    report: &'a model::ImpactReport,
}

fn search(graph: &Graph, query: &Query) -> Result<Answer, Fail> {
    query.only(&["q"])?;
    let q = query.get("q").unwrap_or("");
    if q.is_empty() {
        return Ok(Answer::Redirect("/".into()));
    }
    if graph.service(q).is_some() {
        return Ok(Answer::Redirect(format!("/services/{}", enc(q))));
    }
    let upper = q.to_ascii_uppercase();
    if upper.starts_with("CVE-") || upper.starts_with("GHSA-") {
        return Ok(Answer::Redirect(format!("/cve/{}", enc(q))));
    }
    Ok(Answer::Redirect(format!("/?q={}", enc(q))))
}

pub(crate) fn link_service(name: &str) -> String {
    format!("<a href=\"/services/{}\">{}</a>", enc(name), esc(name))
}

pub(crate) fn link_at(at: &model::Provenance) -> String {
    format!(
        "<a href=\"/files/{}#L{}\">{}</a>",
        at.path.split('/').map(enc).collect::<Vec<_>>().join("/"),
        at.line,
        esc(&at.to_string())
    )
}

fn pins(s: &Service) -> Vec<String> {
    s.templates
        .iter()
        .filter(|t| t.version.is_some())
        .map(|t| format!("{}@{}", t.source, t.version.as_deref().unwrap_or("")))
        .collect()
}

fn diagnostics_of(graph: &Graph, s: &Service) -> usize {
    match &s.repo {
        Some(repo) if !repo.is_empty() => graph
            .fleet
            .diagnostics
            .iter()
            .filter(|d| {
                d.path.starts_with(repo.as_str())
                    && d.path.as_bytes().get(repo.len()) == Some(&b'/')
            })
            .count(),
        _ => 0,
    }
}

fn service_row_json(graph: &Graph, s: &Service) -> Json {
    json!({
        "name": s.name,
        "owner": s.owner,
        "tier": s.tier,
        "base_image": s.base_images.first().map(ToString::to_string),
        "templates": pins(s),
        "depends_on": s.depends_on,
        "diagnostics": diagnostics_of(graph, s),
    })
}

fn fleet(graph: &Graph, query: &Query) -> Result<Page, Fail> {
    query.only(&["q", "page", "focus"])?;
    let page = query.page()?;
    let q = query.get("q").map(str::to_lowercase);
    let focus = query.get("focus");
    if let Some(f) = focus
        && graph.service(f).is_none()
    {
        return Err(Fail::not_found(
            format!("no service named {f:?} to focus on"),
            f,
        ));
    }
    let matching: Vec<&Service> = graph
        .fleet
        .services
        .iter()
        .filter(|s| {
            q.as_deref().is_none_or(|q| {
                s.name.to_lowercase().contains(q)
                    || s.owner
                        .as_ref()
                        .is_some_and(|o| o.0.to_lowercase().contains(q))
                    || s.base_images
                        .iter()
                        .any(|b| b.to_string().to_lowercase().contains(q))
            })
        })
        .collect();
    let mut base = String::from("/");
    if let Some(q) = query.get("q") {
        base = format!("/?q={}", enc(q));
    }
    let (shown, pager) = paginate(&matching, page, &base)?;
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|s| {
            let deps: Vec<String> = s.depends_on.iter().map(|d| link_service(d)).collect();
            vec![
                link_service(&s.name),
                esc(&s.owner.as_ref().map_or("-".into(), ToString::to_string)),
                s.tier.map_or("-".into(), |t| t.to_string()),
                esc(&s
                    .base_images
                    .first()
                    .map_or("-".into(), ToString::to_string)),
                esc(&pins(s).join(" ")),
                deps.join(", "),
                diagnostics_of(graph, s).to_string(),
            ]
        })
        .collect();
    let mut html = format!(
        "<p class=\"summary\">{} services, {} repositories, {} diagnostics · generation {}</p>\
         <form action=\"/\"><input name=\"q\" value=\"{}\" placeholder=\"search services, owners, base images\" aria-label=\"search services\"> <button>Search</button></form>",
        graph.fleet.services.len(),
        graph.fleet.repos.len(),
        graph.fleet.diagnostics.len(),
        graph.generation,
        esc(query.get("q").unwrap_or(""))
    );
    html.push_str(&table(
        "services",
        &[
            "SERVICE",
            "OWNER",
            "TIER",
            "BASE IMAGE",
            "TEMPLATE PINS",
            "DEPENDENCIES",
            "DIAGS",
        ],
        &rows,
    ));
    html.push_str(&pager);
    html.push_str("<h2 id=\"graph\">Dependency graph</h2>");
    let (nodes, edges) = match focus {
        Some(f) => neighbourhood(graph, f),
        None if graph.fleet.services.len() <= GRAPH_LIMIT => {
            let nodes: Vec<String> = graph
                .fleet
                .services
                .iter()
                .map(|s| s.name.clone())
                .collect();
            let edges = graph
                .fleet
                .services
                .iter()
                .flat_map(|s| s.depends_on.iter().map(|d| (s.name.clone(), d.clone())))
                .collect();
            (nodes, edges)
        }
        None => (Vec::new(), Vec::new()),
    };
    if nodes.is_empty() {
        let _ = write!(
            html,
            "<p>{} services are too many to draw at once: pick one to see its neighbourhood.</p>",
            graph.fleet.services.len()
        );
    } else {
        if let Some(f) = focus {
            let _ = write!(
                html,
                "<p>Callers and callees of {} within two calls. <a href=\"/\">whole fleet</a></p>",
                link_service(f)
            );
        }
        let _ = write!(
            html,
            "<div class=\"scroll\">{}</div>",
            svg::dependency_graph(&nodes, &edges, focus)
        );
    }
    let _ = write!(
        html,
        "<form action=\"/\"><input name=\"focus\" value=\"{}\" placeholder=\"service\" aria-label=\"focus on a service\"> <button>Focus</button></form>",
        esc(focus.unwrap_or(""))
    );
    let value = json!({
        "generation": graph.generation,
        "total": graph.fleet.services.len(),
        "matching": matching.len(),
        "page": page,
        "services": shown.iter().map(|s| service_row_json(graph, s)).collect::<Vec<_>>(),
        "graph": {"nodes": nodes, "edges": edges},
    });
    Ok(Page::new("Fleet", html, value))
}

/// The services within two calls of `name`, either way, and the calls among them.
fn neighbourhood(graph: &Graph, name: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut keep: BTreeSet<usize> = BTreeSet::new();
    let Some(&start) = graph.index.get(name) else {
        return (Vec::new(), Vec::new());
    };
    let mut frontier = vec![start];
    keep.insert(start);
    for _ in 0..2 {
        let mut next = Vec::new();
        for &i in &frontier {
            let s = &graph.fleet.services[i];
            let callees = s
                .depends_on
                .iter()
                .filter_map(|d| graph.index.get(d).copied());
            for j in callees.chain(graph.callers[i].iter().copied()) {
                if keep.insert(j) {
                    next.push(j);
                }
            }
        }
        frontier = next;
    }
    let nodes: Vec<String> = keep
        .iter()
        .map(|&i| graph.fleet.services[i].name.clone())
        .collect();
    let edges = keep
        .iter()
        .flat_map(|&i| {
            let s = &graph.fleet.services[i];
            s.depends_on
                .iter()
                .filter(|d| graph.index.get(*d).is_some_and(|j| keep.contains(j)))
                .map(|d| (s.name.clone(), d.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    (nodes, edges)
}

fn service(ctx: &Ctx, graph: &Graph, name: &str, query: &Query) -> Result<Page, Fail> {
    query.only(&[])?;
    let s = graph
        .service(name)
        .ok_or_else(|| Fail::not_found(format!("no service named {name:?} in the fleet"), name))?;
    let callers: Vec<&str> = graph.index.get(name).map_or_else(Vec::new, |&i| {
        graph.callers[i]
            .iter()
            .map(|&j| graph.fleet.services[j].name.as_str())
            .collect()
    });
    let mut files: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
    for at in &s.declared_at {
        files
            .entry(at.path.clone())
            .or_default()
            .push((at.line, "declared".into()));
    }
    for d in s.dependencies.iter().chain(&s.unresolved_dependencies) {
        files
            .entry(d.at.path.clone())
            .or_default()
            .push((d.at.line, format!("calls {}", d.target)));
    }
    for t in &s.templates {
        files.entry(t.at.path.clone()).or_default().push((
            t.at.line,
            format!(
                "template {}@{}",
                t.source,
                t.version.as_deref().unwrap_or("unpinned")
            ),
        ));
    }
    for image in graph
        .fleet
        .images
        .iter()
        .filter(|i| s.images.iter().any(|r| r.name() == i.name))
    {
        files
            .entry(image.at.path.clone())
            .or_default()
            .push((image.at.line, format!("FROM {}", image.base)));
    }
    let mut html = format!(
        "<dl class=\"facts\"><dt>owner</dt><dd>{}</dd><dt>tier</dt><dd>{}</dd><dt>system</dt><dd>{}</dd><dt>repository</dt><dd>{}</dd><dt>base image</dt><dd>{}</dd></dl>\
         <p><a href=\"/impact?services={}\">Impact of changing {}</a> · <a href=\"/?focus={}#graph\">neighbourhood graph</a></p>",
        esc(&s.owner.as_ref().map_or("-".into(), ToString::to_string)),
        s.tier.map_or("-".into(), |t| t.to_string()),
        esc(s.system.as_deref().unwrap_or("-")),
        esc(s.repo.as_deref().unwrap_or("-")),
        esc(&s
            .base_images
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")),
        enc(name),
        esc(name),
        enc(name),
    );
    html.push_str("<h2>Files</h2><ul class=\"files\">");
    for (path, lines) in &files {
        let _ = write!(
            html,
            "<li><a href=\"/files/{}\">{}</a>: ",
            path.split('/').map(enc).collect::<Vec<_>>().join("/"),
            esc(path)
        );
        let links: Vec<String> = lines
            .iter()
            .map(|(line, what)| {
                format!(
                    "<a href=\"/files/{}#L{line}\">line {line}</a> ({})",
                    path.split('/').map(enc).collect::<Vec<_>>().join("/"),
                    esc(what)
                )
            })
            .collect();
        html.push_str(&links.join(", "));
        html.push_str("</li>");
    }
    html.push_str("</ul>");
    let _ = write!(
        html,
        "<h2>Callers</h2><p>{}</p><h2>Callees</h2><p>{}</p>",
        if callers.is_empty() {
            "none".into()
        } else {
            callers
                .iter()
                .map(|c| link_service(c))
                .collect::<Vec<_>>()
                .join(", ")
        },
        if s.depends_on.is_empty() {
            "none".into()
        } else {
            s.depends_on
                .iter()
                .map(|c| link_service(c))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    let lineage: Vec<Vec<String>> = s
        .images
        .iter()
        .chain(&s.base_images)
        .map(|image| {
            graph
                .inputs
                .catalog
                .lineage(&image.name())
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        })
        .filter(|l: &Vec<String>| !l.is_empty())
        .collect();
    html.push_str("<h2>Image lineage</h2>");
    if lineage.is_empty() {
        html.push_str(
            "<p>No known lineage (no base catalog entry or scanner report for its images).</p>",
        );
    }
    for chain in &lineage {
        let _ = write!(
            html,
            "<p class=\"lineage\">{}</p>",
            chain.iter().map(|i| esc(i)).collect::<Vec<_>>().join(" → ")
        );
    }
    let template_rows: Vec<Vec<String>> = s
        .templates
        .iter()
        .map(|t| {
            vec![
                esc(&t.source),
                esc(t.file.as_deref().unwrap_or("-")),
                esc(t.version.as_deref().unwrap_or("unpinned")),
                link_at(&t.at),
            ]
        })
        .collect();
    html.push_str("<h2>Template pins</h2>");
    html.push_str(&table(
        "pins",
        &["SOURCE", "FILE", "VERSION", "AT"],
        &template_rows,
    ));
    // Not waited for: right after a refresh they are still being computed in the background.
    let computed = graph.policy.get();
    let findings: Vec<&policy::Finding> = match computed {
        Some(Ok(outcome)) => outcome
            .findings
            .iter()
            .filter(|f| finding_is_about(f, s))
            .collect(),
        Some(Err(_)) | None => Vec::new(),
    };
    html.push_str("<h2>Policy findings</h2>");
    match computed {
        None => html
            .push_str("<p>Being computed for this version of the fleet; reload in a moment.</p>"),
        Some(Err(e)) => {
            let _ = write!(html, "<p class=\"error\">{}</p>", esc(e));
        }
        Some(Ok(_)) => {}
    }
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                esc(&f.policy),
                esc(&format!("{:?}", f.level).to_lowercase()),
                esc(&f.message),
                f.at.as_ref().map_or("-".into(), link_at),
            ]
        })
        .collect();
    html.push_str(&table(
        "findings",
        &["POLICY", "LEVEL", "MESSAGE", "AT"],
        &rows,
    ));
    let live = ctx
        .options
        .gateway_admin
        .as_deref()
        .map(|admin| live_state(ctx, admin, name));
    html.push_str("<h2>Live state</h2>");
    match &live {
        None => html
            .push_str("<p>Start the console with --gateway-admin URL to see the live routing.</p>"),
        Some(Ok(Json::Null)) => html.push_str("<p>The gateway does not route this service.</p>"),
        Some(Ok(state)) => {
            // The gateway's pools for the service: selector, weight, endpoints.
            let rows: Vec<Vec<String>> = state
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|pool| {
                    let endpoints: Vec<String> = pool["endpoints"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .map(|e| esc(e.as_str().unwrap_or_default()))
                        .collect();
                    vec![
                        esc(pool["selector"].as_str().unwrap_or("-")),
                        pool["weight"].to_string(),
                        endpoints.join(", "),
                    ]
                })
                .collect();
            html.push_str(&table("live", &["SELECTOR", "WEIGHT", "ENDPOINTS"], &rows));
        }
        Some(Err(e)) => {
            let _ = write!(html, "<p class=\"error\">{}</p>", esc(e));
        }
    }
    html.push_str("<h2>Traffic</h2>");
    let (traffic_html, traffic) = traffic::service_part(ctx, name);
    html.push_str(&traffic_html);
    let recent = ctx
        .options
        .collector
        .as_deref()
        .map(|c| traces_pages::recent(c, name));
    html.push_str("<h2>Recent traces</h2>");
    match &recent {
        None => html.push_str("<p>Start the console with --collector URL to see traces.</p>"),
        Some(Ok(rows)) => html.push_str(&traces_pages::rows_table(rows)),
        Some(Err(e)) => {
            let _ = write!(html, "<p class=\"error\">{}</p>", esc(e));
        }
    }
    let value = json!({
        "service": s,
        "callers": callers,
        "callees": s.depends_on,
        "files": files.iter().map(|(p, l)| json!({"path": p, "lines": l.iter().map(|(n, w)| json!({"line": n, "what": w})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "lineage": lineage,
        "policy_findings": computed.map(|_| &findings),
        "live": live.and_then(Result::ok),
        "traffic": traffic,
        "recent_traces": recent.and_then(Result::ok),
    });
    Ok(Page::new(format!("Service {name}"), html, value))
}

/// A service's traffic part alone, which its page fetches again every few seconds.
fn service_traffic(ctx: &Ctx, graph: &Graph, name: &str, query: &Query) -> Result<Page, Fail> {
    query.only(&[])?;
    if graph.service(name).is_none() {
        return Err(Fail::not_found(
            format!("no service named {name:?} in the fleet"),
            name,
        ));
    }
    let (html, value) = traffic::service_part(ctx, name);
    Ok(Page::new(format!("Traffic of {name}"), html, value))
}

fn finding_is_about(f: &policy::Finding, s: &Service) -> bool {
    f.subject == format!("service {}", s.name)
        || s.repo
            .as_deref()
            .filter(|r| !r.is_empty())
            .is_some_and(|repo| {
                f.at.as_ref()
                    .is_some_and(|at| at.path.starts_with(&format!("{repo}/")))
            })
}

/// The gateway's state for one service (`GET /state`, the entry named `name`).
fn live_state(ctx: &Ctx, admin: &str, name: &str) -> Result<Json, String> {
    let url = http_client::Url::parse(&format!("{}/state", admin.trim_end_matches('/')))?;
    let headers: Vec<(&str, String)> = ctx
        .options
        .gateway_token
        .as_deref()
        .map(http_client::bearer)
        .into_iter()
        .collect();
    let response = http_client::request(
        "GET",
        &url,
        &headers,
        b"",
        std::time::Duration::from_secs(2),
    )
    .map_err(|e| format!("gateway admin API: {e}"))?;
    if response.status != 200 {
        return Err(format!("gateway admin API answered {}", response.status));
    }
    let state: Json =
        serde_json::from_slice(&response.body).map_err(|e| format!("gateway admin API: {e}"))?;
    Ok(find_service_state(&state, name))
}

/// The gateway state's entry for `name`: `services` as a map or as a list of objects with `name`.
fn find_service_state(state: &Json, name: &str) -> Json {
    match state.get("services") {
        Some(Json::Object(map)) => map.get(name).cloned().unwrap_or(Json::Null),
        Some(Json::Array(list)) => list
            .iter()
            .find(|s| s.get("name").and_then(Json::as_str) == Some(name))
            .cloned()
            .unwrap_or(Json::Null),
        _ => Json::Null,
    }
}

/// A fleet file with a line anchor on every line.
fn file(graph: &Graph, rel: &str, query: &Query) -> Result<Page, Fail> {
    query.only(&[])?;
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
    {
        return Err(Fail::BadRequest(format!(
            "{rel:?} is not a path inside the fleet"
        )));
    }
    let path = graph.root.join(rel);
    let inside = std::fs::canonicalize(&path)
        .is_ok_and(|p| p.starts_with(&graph.root) && !p.starts_with(&graph.state_dir));
    let text = inside
        .then(|| std::fs::read_to_string(&path).ok())
        .flatten()
        .ok_or_else(|| {
            Fail::not_found(
                format!("no readable text file {rel:?} in the fleet"),
                rel.rsplit('/').next().unwrap_or(rel),
            )
        })?;
    let mut html = String::from("<pre class=\"file\">");
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let _ = writeln!(
            html,
            "<span id=\"L{n}\"><a class=\"ln\" href=\"#L{n}\">{n}</a>{}</span>",
            esc(line)
        );
    }
    html.push_str("</pre>");
    Ok(Page::new(
        rel.to_string(),
        html,
        json!({"path": rel, "text": text}),
    ))
}

fn impact_form() -> String {
    "<form class=\"impact\" action=\"/impact\"><fieldset><legend>Pick a change</legend>\
     <label>Services <input name=\"services\" placeholder=\"payments,orders\"></label>\
     <label>Base image <input name=\"image\" placeholder=\"registry/base/debian-12\"></label>\
     <label>Template release <input name=\"template\" placeholder=\"platform/ci-templates@v2.0.0\"></label>\
     <label>CVE <input name=\"cve\" placeholder=\"CVE-2023-38545\"></label>\
     <label>Hosts <input name=\"hosts\" placeholder=\"db-1,db-2\"></label>\
     <button>Show the impact</button></fieldset></form>"
        .to_string()
}

fn names(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn impact(graph: &Graph, query: &Query, api: bool) -> Result<Page, Fail> {
    query.only(&[
        "services", "image", "to", "template", "cve", "hosts", "page",
    ])?;
    let given: Vec<&str> = ["services", "image", "template", "cve", "hosts"]
        .into_iter()
        .filter(|k| query.get(k).is_some())
        .collect();
    if given.len() > 1 {
        return Err(Fail::BadRequest(format!(
            "pick one change at a time; given: {}",
            given.join(", ")
        )));
    }
    if query.get("to").is_some() && query.get("image").is_none() {
        return Err(Fail::BadRequest("to= goes with image=".into()));
    }
    let mut markdown = None;
    let (report, extra, json_text): (model::ImpactReport, Json, Option<Bytes>) =
        if let Some(list) = query.get("services") {
            let list = names(list);
            let report = impact::services(&graph.fleet, &list).map_err(|e| {
                Fail::not_found(
                    e.to_string(),
                    list.iter()
                        .find(|n| graph.service(n).is_none())
                        .cloned()
                        .unwrap_or_default(),
                )
            })?;
            let text = cli_json(&report).map(Bytes::from);
            (report, Json::Null, text)
        } else if let Some(reference) = query.get("image") {
            let image = ImageRef::parse(reference)
                .map_err(|e| Fail::BadRequest(format!("image={reference}: {e}")))?;
            let answer = impact::image(graph.query(), &image);
            let to = query.get("to").unwrap_or("a new build");
            let report = impact::image_report(&answer, &graph.fleet, &graph.inputs.catalog, to);
            let text = cli_json(&ImageDoc {
                schema: "bulkhead.impact-image/v1",
                image: &answer,
                report: &report,
            })
            .map(Bytes::from);
            (
                report,
                json!({"schema": "bulkhead.impact-image/v1", "image": answer}),
                text,
            )
        } else if let Some(template) = query.get("template") {
            let (source, version) = match template.rsplit_once('@') {
                Some((s, v)) => (Some(s), v),
                None => (None, template),
            };
            let adopters: Vec<String> = graph
                .fleet
                .services
                .iter()
                .filter(|s| {
                    s.templates.iter().any(|t| {
                        t.version.as_deref() == Some(version)
                            && source.is_none_or(|src| t.source == src)
                    })
                })
                .map(|s| s.name.clone())
                .collect();
            if adopters.is_empty() {
                return Err(Fail::not_found(
                    format!("no service pins template {template}"),
                    template,
                ));
            }
            let report = impact::services(&graph.fleet, &adopters)
                .map_err(|e| Fail::Internal(e.to_string()))?;
            (report, json!({"adopters": adopters}), None)
        } else if let Some(id) = query.get("cve") {
            let entry = cve_entry(graph, id)?;
            markdown = Some(entry.markdown.clone());
            (
                entry.report.clone(),
                json!({"schema": "bulkhead.cve/v1", "cve": entry.answer}),
                Some(entry.json.clone()),
            )
        } else if let Some(list) = query.get("hosts") {
            return hosts_impact(graph, &names(list));
        } else {
            return Ok(Page::new(
                "Change impact",
                impact_form(),
                json!({"changes": ["services", "image", "template", "cve", "hosts"]}),
            ));
        };
    let title = format!("Impact: {}", report.change.title());
    // The API answers JSON (or the report as text); the page, HTML: each builds only its own.
    if api {
        let mut value = json!(report);
        if let (Json::Object(extra), Some(map)) = (&extra, value.as_object_mut()) {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
        let mut page = Page::new(title, String::new(), value);
        page.report = Some(report);
        page.json_text = json_text;
        return Ok(page);
    }
    let mut html = impact_form();
    let base = format!(
        "/impact?{}",
        query
            .0
            .iter()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&")
    );
    let markdown = markdown.unwrap_or_else(|| model::report::render_markdown(&report));
    html.push_str(&report_html(&report, &markdown, query.page()?, &base)?);
    Ok(Page::new(title, html, Json::Null))
}

fn hosts_impact(graph: &Graph, wanted: &[String]) -> Result<Page, Fail> {
    let unknown: Vec<&String> = wanted
        .iter()
        .filter(|h| !graph.fleet.hosts.iter().any(|x| &x.name == *h))
        .collect();
    if let Some(first) = unknown.first() {
        return Err(Fail::not_found(
            format!("no host named {first:?} in the inventory"),
            first.as_str(),
        ));
    }
    let hosts: Vec<&model::Host> = graph
        .fleet
        .hosts
        .iter()
        .filter(|h| wanted.contains(&h.name))
        .collect();
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                esc(&h.name),
                esc(h.address.as_deref().unwrap_or("-")),
                esc(&h.groups.join(", ")),
                link_at(&h.at),
            ]
        })
        .collect();
    let mut html = impact_form();
    let _ = write!(
        html,
        "<p>The fleet graph places no service on hosts: patching these hosts touches the machines below. \
         <code>bulkhead patch plan</code> gives their windows and batches.</p>{}",
        table("hosts", &["HOST", "ADDRESS", "GROUPS", "AT"], &rows)
    );
    Ok(Page::new(
        "Impact: host patch",
        html,
        json!({"hosts": hosts}),
    ))
}

/// The four answers with their evidence, and the Markdown for a pull request.
fn report_html(
    report: &model::ImpactReport,
    markdown: &str,
    page: usize,
    base: &str,
) -> Result<String, Fail> {
    let mut html = String::new();
    let evidence = |e: &[model::report::Evidence]| -> String {
        e.iter()
            .map(|e| match &e.at {
                Some(at) => format!("{} ({})", esc(&e.statement), link_at(at)),
                None => esc(&e.statement),
            })
            .collect::<Vec<_>>()
            .join("<br>")
    };
    html.push_str("<h2>What breaks</h2>");
    let rows: Vec<Vec<String>> = report
        .what_breaks
        .iter()
        .map(|f| {
            vec![
                esc(&f.subject),
                esc(&format!("{:?}", f.risk).to_lowercase()),
                esc(&f.summary),
                evidence(&f.evidence),
            ]
        })
        .collect();
    html.push_str(&table(
        "breaks",
        &["SUBJECT", "RISK", "SUMMARY", "EVIDENCE"],
        &rows,
    ));
    let _ = write!(
        html,
        "<h2>Who is impacted ({})</h2>",
        report.who_is_impacted.len()
    );
    // The CVE page pages its services and this table together; this one may be shorter.
    let last = report
        .who_is_impacted
        .len()
        .div_ceil(crate::web::PAGE_SIZE)
        .max(1);
    let (impacted, pager) = paginate(&report.who_is_impacted, page.min(last), base)?;
    let rows: Vec<Vec<String>> = impacted
        .iter()
        .map(|i| {
            let reason = match &i.reason {
                model::report::ImpactReason::Changed => "changed".to_string(),
                model::report::ImpactReason::Calls { distance, via } => {
                    format!("calls it ({distance} hop(s), via {via})")
                }
                model::report::ImpactReason::Uses { artefact } => format!("uses {artefact}"),
            };
            vec![
                link_service(&i.service),
                esc(&i.owner.as_ref().map_or("-".into(), ToString::to_string)),
                i.tier.map_or("-".into(), |t| t.to_string()),
                esc(&reason),
                esc(&i.public_routes.join(", ")),
                evidence(&i.evidence),
            ]
        })
        .collect();
    html.push_str(&table(
        "impacted",
        &[
            "SERVICE",
            "OWNER",
            "TIER",
            "WHY",
            "PUBLIC ROUTES",
            "EVIDENCE",
        ],
        &rows,
    ));
    html.push_str(&pager);
    let _ = write!(
        html,
        "<h2>How fast we can roll back</h2><p>{}{}</p>{}",
        esc(&report.rollback.action),
        report
            .rollback
            .expected_seconds
            .map_or(String::new(), |s| format!(
                " · about {s:.0} s{}",
                if report.rollback.measured {
                    " (measured)"
                } else {
                    ""
                }
            )),
        evidence(&report.rollback.evidence)
    );
    html.push_str("<h2>How to monitor it</h2>");
    let rows: Vec<Vec<String>> = report
        .monitoring
        .iter()
        .map(|s| vec![esc(&s.name), esc(&s.services.join(", ")), esc(&s.threshold)])
        .collect();
    html.push_str(&table(
        "signals",
        &["SIGNAL", "SERVICES", "THRESHOLD"],
        &rows,
    ));
    html.push_str("<h2>Plan</h2><ol class=\"waves\">");
    for wave in &report.plan.waves {
        let _ = write!(
            html,
            "<li><strong>{}</strong> ({} step(s)) — gate: {}</li>",
            esc(&wave.name),
            wave.steps.len(),
            esc(&wave.gate)
        );
    }
    html.push_str("</ol>");
    let _ = write!(
        html,
        "<p>{} service(s) provably untouched.</p>",
        report.untouched.len()
    );
    let _ = write!(
        html,
        "<h2>Markdown for the pull request</h2><textarea class=\"markdown\" readonly rows=\"16\" aria-label=\"pull request markdown\">{}</textarea>",
        esc(markdown)
    );
    Ok(html)
}

fn cve_form(graph: &Graph) -> Page {
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for report in &graph.inputs.catalog.reports {
        for v in &report.vulnerabilities {
            if matches!(
                v.severity,
                images::reports::Severity::Critical | images::reports::Severity::High
            ) {
                ids.insert(v.id.clone());
            }
        }
    }
    let html = format!(
        "<form action=\"/cve\"><input name=\"id\" placeholder=\"CVE-2023-38545\" aria-label=\"CVE id\"> <button>Look up</button></form>\
         <h2>Critical and high findings in the scanner reports</h2><ul>{}</ul>",
        ids.iter()
            .map(|id| format!("<li><a href=\"/cve/{}\">{}</a></li>", enc(id), esc(id)))
            .collect::<String>()
    );
    Page::new("CVE", html, json!({"critical_and_high": ids}))
}

/// One CVE's answer, impact report, and their renderings, computed once per graph.
#[derive(Debug)]
pub struct CveEntry {
    pub answer: images::CveAnswer,
    pub report: model::ImpactReport,
    /// `bulkhead cve --json`'s output, without timings.
    pub json: Bytes,
    pub markdown: String,
    pub query_ms: f64,
}

/// The graph's entry for `id`, computed on first use; a 404 when no report lists it.
fn cve_entry(graph: &Graph, id: &str) -> Result<std::sync::Arc<CveEntry>, Fail> {
    let missing = || {
        Fail::not_found(
            format!(
                "no scanner report lists {id} ({} report(s) read)",
                graph.inputs.catalog.reports.len()
            ),
            id,
        )
    };
    graph
        .cve(id, |id| {
            let started = std::time::Instant::now();
            let answer = images::cve::cve(graph.query(), id);
            if answer.introduced.is_empty() {
                return None;
            }
            let report = images::cve::impact_report(&answer, &graph.fleet);
            let query_ms = started.elapsed().as_secs_f64() * 1000.0;
            let json = cli_json(&images::cve::CveDocument {
                schema: images::cve::CVE_SCHEMA,
                cve: &answer,
                report: &report,
                timings: None,
            })
            .map(Bytes::from)
            .unwrap_or_default();
            let markdown = model::report::render_markdown(&report);
            Some(CveEntry {
                answer,
                report,
                json,
                markdown,
                query_ms,
            })
        })
        .ok_or_else(missing)
}

fn cve(graph: &Graph, id: &str, query: &Query, api: bool) -> Result<Page, Fail> {
    query.only(&["timings", "page"])?;
    // `format` is read by the API's answer (`Query::only` lets it through).
    let page = query.page()?;
    let entry = cve_entry(graph, id)?;
    let (answer, report) = (&entry.answer, &entry.report);
    if api {
        let mut page = Page::new(id.to_string(), String::new(), Json::Null);
        page.json_text = match query.get("timings") {
            None => Some(entry.json.clone()),
            Some(_) => cli_json(&images::cve::CveDocument {
                schema: images::cve::CVE_SCHEMA,
                cve: answer,
                report,
                timings: Some(images::cve::CveTimings {
                    load_ms: 0.0,
                    query_ms: entry.query_ms,
                }),
            })
            .map(Bytes::from),
        };
        if query.get("format").is_some_and(|f| f != "json") {
            page.report = Some(report.clone());
        }
        return Ok(page);
    }
    let mut html = String::new();
    let _ = write!(
        html,
        "<p class=\"summary\">{} reaches {} image(s) and <strong id=\"cve-count\">{}</strong> service(s).</p><h2>Images</h2><ul>{}</ul><h2>Services</h2>",
        esc(&answer.id),
        answer.images.len(),
        answer.services.len(),
        answer
            .images
            .iter()
            .map(|i| format!("<li>{}</li>", esc(&i.lineage.join(" → "))))
            .collect::<String>(),
    );
    let base = format!("/cve/{}", enc(id));
    let (shown, pager) = paginate(&answer.services, page, &base)?;
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|s| {
            vec![
                link_service(&s.service),
                esc(&s.owner.as_ref().map_or("-".into(), ToString::to_string)),
                s.tier.map_or("-".into(), |t| t.to_string()),
                match &s.at {
                    Some(at) => format!("{} ({})", esc(&s.image), link_at(at)),
                    None => esc(&s.image),
                },
                esc(&s.public_routes.join(", ")),
                esc(&s.running.join(", ")),
            ]
        })
        .collect();
    html.push_str(&table(
        "cve-services",
        &[
            "SERVICE",
            "OWNER",
            "TIER",
            "IMAGE",
            "PUBLIC ROUTES",
            "RUNNING",
        ],
        &rows,
    ));
    let _ = write!(
        html,
        "<p><a href=\"/impact?cve={}\">The impact report and emergency plan</a></p>",
        enc(id)
    );
    html.push_str(&pager);
    html.push_str(&report_html(report, &entry.markdown, page, &base)?);
    Ok(Page::new(id.to_string(), html, Json::Null))
}

fn policy_page(ctx: &Ctx, graph: &Graph, query: &Query) -> Result<Page, Fail> {
    query.only(&["rule", "service", "page"])?;
    let page = query.page()?;
    let outcome = graph
        .policy()
        .as_ref()
        .map_err(|e| Fail::Internal(format!("the built-in policies: {e}")))?;
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_service: BTreeMap<String, usize> = BTreeMap::new();
    for f in &outcome.findings {
        *by_rule.entry(f.policy.as_str()).or_default() += 1;
        *by_service.entry(f.subject.clone()).or_default() += 1;
    }
    let rule = query.get("rule");
    let service = query.get("service");
    let shown: Vec<&policy::Finding> = outcome
        .findings
        .iter()
        .filter(|f| {
            rule.is_none_or(|r| f.policy == r)
                && service.is_none_or(|s| f.subject == format!("service {s}"))
        })
        .collect();
    let (rows_page, pager) = paginate(
        &shown,
        page,
        &format!(
            "/policy?rule={}&service={}",
            enc(rule.unwrap_or("")),
            enc(service.unwrap_or(""))
        ),
    )?;
    let mut html = svg::bar_chart(
        "findings by rule",
        &by_rule
            .iter()
            .map(|(r, n)| (r.to_string(), *n))
            .collect::<Vec<_>>(),
    );
    let rows: Vec<Vec<String>> = rows_page
        .iter()
        .map(|f| {
            vec![
                format!(
                    "<a href=\"/policy?rule={}\">{}</a>",
                    enc(&f.policy),
                    esc(&f.policy)
                ),
                esc(&format!("{:?}", f.level).to_lowercase()),
                esc(&f.subject),
                esc(&f.message),
                f.at.as_ref().map_or("-".into(), link_at),
            ]
        })
        .collect();
    html.push_str(&table(
        "policy",
        &["POLICY", "LEVEL", "SUBJECT", "MESSAGE", "AT"],
        &rows,
    ));
    html.push_str(&pager);
    html.push_str("<h2>Admission decisions</h2><p>What the admission webhook (<code>bulkhead policy serve</code>) decided, from its /metrics.</p>");
    let (admission_html, admission) = traffic::admission_part(ctx);
    html.push_str(&admission_html);
    let value = json!({
        "admission": admission,
        "by_rule": by_rule,
        "by_service": by_service,
        "total": outcome.findings.len(),
        "findings": rows_page,
        "page": page,
    });
    Ok(Page::new("Policy", html, value))
}

fn hosts(graph: &Graph, query: &Query) -> Result<Page, Fail> {
    query.only(&["page"])?;
    let page = query.page()?;
    let (shown, pager) = paginate(&graph.fleet.hosts, page, "/hosts")?;
    // Maintenance windows come from host patching's reader of the same inventory.
    let inventory = graph.config.hosts.inventory.as_deref().and_then(|rel| {
        std::fs::read_to_string(graph.root.join(rel))
            .ok()
            .map(|text| patch::inventory::parse(rel, &text))
    });
    let window = |name: &str| -> String {
        inventory
            .as_ref()
            .and_then(|i| i.host(name))
            .and_then(|h| h.window.as_ref())
            .map_or_else(|| "any time".to_string(), ToString::to_string)
    };
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|h| {
            vec![
                esc(&h.name),
                esc(h.address.as_deref().unwrap_or("-")),
                esc(&h.groups.join(", ")),
                esc(&window(&h.name)),
                link_at(&h.at),
                format!("<a href=\"/impact?hosts={}\">impact</a>", enc(&h.name)),
            ]
        })
        .collect();
    let mut html = table(
        "hosts",
        &["HOST", "ADDRESS", "GROUPS", "WINDOW", "AT", ""],
        &rows,
    );
    html.push_str(&pager);
    let runs = rollouts::patch_runs(&graph.state_dir);
    html.push_str("<h2>Patch runs</h2>");
    html.push_str(&table(
        "runs",
        &["RUN", "STARTED", "OUTCOME"],
        &runs
            .iter()
            .map(|r| vec![r.0.to_string(), esc(&r.1), esc(&r.2)])
            .collect::<Vec<_>>(),
    ));
    let value = json!({
        "total": graph.fleet.hosts.len(),
        "hosts": shown.iter().map(|h| json!({"host": h, "window": window(&h.name)})).collect::<Vec<_>>(),
        "patch_runs": runs.iter().map(|r| json!({"run": r.0, "started": r.1, "outcome": r.2})).collect::<Vec<_>>(),
    });
    Ok(Page::new("Hosts", html, value))
}

fn login(ctx: &Ctx) -> Page {
    let html = if ctx.options.token.is_some() {
        format!(
            "<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><label>Token <input type=\"password\" name=\"token\" autofocus></label> <button>Log in</button></form>",
            ctx.csrf
        )
    } else {
        "<p>This console has no token: actions need none.</p>".to_string()
    };
    Page::new(
        "Log in",
        html,
        json!({"token_required": ctx.options.token.is_some()}),
    )
}
