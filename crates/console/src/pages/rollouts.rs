//! Rollouts from the state directory's `rollouts.db`: the list, one rollout
//! live (waves, phases, analyses, every transition), and the operator actions,
//! delivered through `orchestrator::operator` as `bulkhead rollout` delivers them.

use crate::Ctx;
use crate::graph::Graph;
use crate::web::{Fail, Page, Query, esc, table};
use orchestrator::driver::{action_name, event_name, rollback_times};
use orchestrator::operator;
use orchestrator::state::StateDb;
use rollout::Event;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

/// The records database, when the fleet has one (opening would create it).
fn open(dir: &Path) -> Result<Option<StateDb>, Fail> {
    if !dir.join(orchestrator::state::DB_FILE).exists() {
        return Ok(None);
    }
    StateDb::open(dir)
        .map(Some)
        .map_err(|e| Fail::Internal(e.to_string()))
}

fn internal(e: impl std::fmt::Display) -> Fail {
    Fail::Internal(e.to_string())
}

pub fn list(graph: &Graph, query: &Query) -> Result<Page, Fail> {
    query.only(&[])?;
    let Some(db) = open(&graph.state_dir)? else {
        return Ok(Page::new(
            "Rollouts",
            "<p>No rollout has been recorded for this fleet yet (<code>bulkhead rollout start</code>).</p>".into(),
            json!({"rollouts": []}),
        ));
    };
    let latest = db.latest().unwrap_or(0);
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for id in (1..=latest).rev() {
        let Ok(row) = db.row(id) else { continue };
        let status = db.load(id).map_err(internal)?.status();
        rows.push(vec![
            format!("<a href=\"/rollouts/{id}\">{id}</a>"),
            esc(&row.status),
            format!("{}/{}", status.wave, status.waves),
            status
                .services
                .iter()
                .map(|s| esc(&s.service))
                .collect::<Vec<_>>()
                .join(", "),
            format!(
                "{} promoted, {} rolled back, {} held, {} aborted",
                status.promoted, status.rolled_back, status.held, status.aborted
            ),
        ]);
        items.push(json!({"id": id, "status": row.status, "rollout": status}));
    }
    let html = table(
        "rollouts",
        &["ID", "STATUS", "WAVE", "SERVICES", "OUTCOME"],
        &rows,
    );
    Ok(Page::new("Rollouts", html, json!({"rollouts": items})))
}

pub fn show(ctx: &Ctx, graph: &Graph, id: &str, query: &Query) -> Result<Page, Fail> {
    query.only(&[])?;
    let missing = || Fail::not_found(format!("no rollout {id:?} is recorded"), "");
    let id: i64 = id.parse().map_err(|_| missing())?;
    let db = open(&graph.state_dir)?.ok_or_else(missing)?;
    let row = db.row(id).map_err(|_| missing())?;
    let status = db.load(id).map_err(internal)?.status();
    let transitions = db.transitions(id).map_err(internal)?;
    let rollbacks = rollback_times(&db, id).map_err(internal)?;
    let form = |verb: &str, service: Option<&str>, label: &str| {
        format!(
            "<form method=\"post\" action=\"/rollouts/{id}/{verb}\" class=\"action\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{}<button name=\"do\" value=\"{verb}\" data-action=\"{verb}{}\">{}</button></form>",
            ctx.csrf,
            service.map_or(String::new(), |s| format!(
                "<input type=\"hidden\" name=\"service\" value=\"{}\">",
                esc(s)
            )),
            service.map_or(String::new(), |s| format!(":{}", esc(s))),
            esc(label)
        )
    };
    let mut html = format!(
        "<div data-refresh=\"1000\"><p class=\"summary\">rollout {id} · <strong id=\"rollout-status\">{}</strong> · wave {}/{}{}{}</p>",
        esc(&row.status),
        status.wave,
        status.waves,
        if status.paused { " · paused" } else { "" },
        row.driver
            .map_or(String::new(), |p| format!(" · driven by process {p}")),
    );
    if !status.done {
        html.push_str("<div class=\"actions\">");
        html.push_str(&form("promote", None, "Promote"));
        html.push_str(&form(
            if status.paused { "resume" } else { "pause" },
            None,
            if status.paused { "Resume" } else { "Pause" },
        ));
        html.push_str(&form("abort", None, "Abort"));
        html.push_str("</div>");
    }
    let rows: Vec<Vec<String>> = status
        .services
        .iter()
        .map(|s| {
            let detail = s.phase.detail().to_string();
            let mut actions = String::new();
            if s.phase.name() == "promoted" {
                actions.push_str(&form("undo", Some(&s.service), "Undo"));
            } else if !status.done {
                actions.push_str(&form("promote", Some(&s.service), "Promote"));
                actions.push_str(&form("abort", Some(&s.service), "Abort"));
            }
            vec![
                s.wave.to_string(),
                format!(
                    "<a href=\"/services/{}\">{}</a>",
                    crate::web::enc(&s.service),
                    esc(&s.service)
                ),
                esc(&s.strategy),
                format!("<span class=\"phase {0}\">{0}</span>", s.phase.name()),
                format!("{}%", s.candidate_percent),
                s.analyses
                    .last()
                    .map_or("-".into(), |a| esc(&format!("{} ({})", a.verdict, a.id))),
                esc(&detail),
                actions,
            ]
        })
        .collect();
    html.push_str(&table(
        "waves",
        &[
            "WAVE",
            "SERVICE",
            "STRATEGY",
            "PHASE",
            "NEW",
            "LAST ANALYSIS",
            "DETAIL",
            "",
        ],
        &rows,
    ));
    html.push_str("<h2>Traffic</h2>");
    let services: Vec<String> = status.services.iter().map(|s| s.service.clone()).collect();
    let (traffic_html, traffic) = super::traffic::rollout_part(ctx, &services);
    html.push_str(&traffic_html);
    for a in &status.awaiting_human {
        let _ = write!(
            html,
            "<p class=\"attention\">awaiting a human: {}</p>",
            esc(a)
        );
    }
    for rb in &rollbacks {
        let _ = write!(
            html,
            "<p>rollback of {} ({}): traffic on the stable pool {:.1} ms after the decision</p>",
            esc(&rb.service),
            esc(&rb.trigger),
            rb.millis
        );
    }
    html.push_str("<h2>Transitions</h2>");
    let rows: Vec<Vec<String>> = transitions
        .iter()
        .rev()
        .map(|t| {
            let actions: Vec<String> = t.actions.iter().map(action_name).collect();
            vec![
                t.seq.to_string(),
                esc(&event_name(&t.event)),
                esc(&actions.join("; ")),
            ]
        })
        .collect();
    html.push_str(&table("transitions", &["#", "EVENT", "ACTIONS"], &rows));
    html.push_str("</div>");
    let value = json!({
        "id": id,
        "status": row.status,
        "driver": row.driver,
        "target": row.target,
        "rollout": status,
        "rollbacks": rollbacks,
        "transitions": transitions,
        "traffic": traffic,
    });
    Ok(Page::new(format!("Rollout {id}"), html, value))
}

/// Delivers an operator command: to the process driving the rollout, or
/// applied here; promote and resume with no driver running drive the
/// rollout on in a thread of the console's own.
pub fn act(dir: &Path, id: i64, event: Event) -> Result<(), Fail> {
    let mut db =
        open(dir)?.ok_or_else(|| Fail::not_found(format!("no rollout {id} is recorded"), ""))?;
    db.row(id)
        .map_err(|_| Fail::not_found(format!("no rollout {id} is recorded"), ""))?;
    if operator::send_to_driver(&db, id, &event)
        .map_err(internal)?
        .is_some()
    {
        return Ok(());
    }
    if operator::keeps_driving(&event) {
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name(format!("rollout-{id}"))
            .spawn(move || {
                let drive = || -> Result<(), String> {
                    let mut db = StateDb::open(&dir).map_err(|e| e.to_string())?;
                    let (executor, sources) =
                        orchestrator::connect(&db.row(id).map_err(|e| e.to_string())?.target)
                            .map_err(|e| e.to_string())?;
                    operator::drive(&mut db, id, executor, sources, Some(event))
                        .map_err(|e| e.to_string())?;
                    Ok(())
                };
                if let Err(e) = drive() {
                    eprintln!("console: driving rollout {id}: {e}");
                }
            })
            .map_err(internal)?;
        return Ok(());
    }
    operator::apply(&mut db, id, event).map_err(internal)?;
    Ok(())
}

/// Host patch runs from `patch.db`, newest first: (run, started, outcome).
pub fn patch_runs(dir: &Path) -> Vec<(i64, String, String)> {
    if !dir.join(hostops::state::DB_FILE).exists() {
        return Vec::new();
    }
    let Ok(db) = hostops::state::StateDb::open(dir) else {
        return Vec::new();
    };
    let mut runs: Vec<(i64, String, String)> = db
        .runs()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            (
                r.id,
                format!("{} ms since the epoch", r.created_ms),
                r.outcome
                    .unwrap_or_else(|| "in progress or interrupted".into()),
            )
        })
        .collect();
    runs.reverse();
    runs
}
