//! Table-driven tests of the state machine: event scripts in, actions and
//! status out. Every step of every script also checks the invariants a driver
//! relies on: the state survives a JSON round trip, replaying the event
//! applied last yields no action, and [`Rollout::outstanding`] re-issues
//! exactly the routing last sent and the timers and analyses still pending.

use super::*;
use crate::plan::{PlanOptions, plan};
use crate::spec::Specs;
use model::{Fleet, Service, Tier};
use std::collections::BTreeSet;

/// db <- orders <- web; cache <- ui; all tier 2, so waves follow dependencies only:
/// [cache, db], [orders, ui], [web].
fn fleet() -> Fleet {
    let services = [
        ("cache", vec![]),
        ("db", vec![]),
        ("orders", vec!["db"]),
        ("ui", vec!["cache"]),
        ("web", vec!["orders"]),
    ];
    Fleet {
        services: services
            .iter()
            .map(|(name, deps)| Service {
                name: name.to_string(),
                tier: Some(Tier(2)),
                depends_on: deps.iter().map(|d| d.to_string()).collect(),
                ..Service::default()
            })
            .collect(),
        ..Fleet::default()
    }
}

const TEMPLATE: &str = "apiVersion: bulkhead.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
    - name: error-rate
      successCondition: result < 0.05
      provider: {gateway: {metric: error-rate}}
";

/// A rollout of `changed`; `strategies` gives some services a strategy block
/// (YAML under `strategy:`); the others get blue-green with post-promotion
/// analysis and no scale-down delay.
fn rollout(changed: &[&str], strategies: &[(&str, &str)]) -> Rollout {
    let mut text = TEMPLATE.to_string();
    for name in ["cache", "db", "orders", "ui", "web"] {
        let strategy = strategies.iter().find(|(n, _)| *n == name).map_or(
            "blueGreen: {scaleDownDelaySeconds: 0, postPromotionAnalysis: {templates: [t]}}",
            |(_, s)| s,
        );
        text.push_str(&format!(
            "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  service: {name}\n  strategy:\n    {strategy}\n"
        ));
    }
    let specs = Specs::parse("rollouts.yaml", &text);
    assert_eq!(specs.diagnostics, vec![], "{text}");
    let changed: Vec<String> = changed.iter().map(|s| s.to_string()).collect();
    Rollout::new(plan(&fleet(), &changed, None, &specs, &PlanOptions::default()).unwrap())
}

fn selector(s: &Selector) -> String {
    s.values().cloned().collect::<Vec<_>>().join(",")
}

/// One action in a line: `select db green`, `weights db blue:80 green:20`,
/// `analyze db/analysis-1 post-promotion on db,orders`, `wait db/pause-2 60s`, `human db`.
fn show(action: &Action) -> String {
    match action {
        Action::SetSelector {
            service,
            selector: s,
        } => format!("select {service} {}", selector(s)),
        Action::SetWeights { service, weights } => format!(
            "weights {service} {}",
            weights
                .iter()
                .map(|(s, w)| format!("{}:{w}", selector(s)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Action::Analyze {
            id,
            stage,
            services,
            pool,
            ..
        } => format!(
            "analyze {id} {} on {}{}",
            serde_json::to_value(stage).unwrap().as_str().unwrap(),
            services.join(","),
            pool.as_ref()
                .map(|p| format!(" pool {}", selector(p)))
                .unwrap_or_default()
        ),
        Action::SetImage { service, from, to } => format!("image {service} {from} -> {to}"),
        Action::Wait { id, seconds, .. } => format!("wait {id} {seconds}s"),
        Action::AwaitHuman { service, .. } => {
            format!("human {}", service.as_deref().unwrap_or("*"))
        }
    }
}

/// Every service as `name:phase`, in wave order, then ` paused` / ` done`.
fn summary(r: &Rollout) -> String {
    let status = r.status();
    let mut out: Vec<String> = status
        .services
        .iter()
        .map(|s| format!("{}:{}", s.service, s.phase.name()))
        .collect();
    if status.paused {
        out.push("paused".into());
    }
    if status.done {
        out.push("done".into());
    }
    out.join(" ")
}

/// `start`, `pause`, `resume`, `timer ID`, `analysis ID VERDICT`, `promote [S]`,
/// `abort [S]`, `undo [S]`, `fail N` (the N-th action of the last step that had any failed).
fn event(text: &str, previous: &[Action]) -> Event {
    let words: Vec<&str> = text.split_whitespace().collect();
    let service = words.get(1).map(|s| s.to_string());
    match words[0] {
        "start" => Event::Start,
        "pause" => Event::Pause,
        "resume" => Event::Resume,
        "timer" => Event::TimerFired {
            id: words[1].to_string(),
        },
        "analysis" => Event::AnalysisDone {
            id: words[1].to_string(),
            verdict: match words[2] {
                "ok" => Verdict::Successful,
                "failed" => Verdict::Failed,
                "error" => Verdict::Error,
                "inconclusive" => Verdict::Inconclusive,
                other => panic!("verdict {other}"),
            },
            measurements: match words[2] {
                "failed" => vec![Measurement {
                    metric: "error-rate".into(),
                    service: words[1].split('/').next().unwrap().into(),
                    value: Some(0.5),
                    error: None,
                }],
                _ => vec![],
            },
        },
        "promote" => Event::Promote { service },
        "abort" => Event::Abort { service },
        "undo" => Event::Undo { service },
        "fail" => Event::ActionFailed {
            action: previous[words[1].parse::<usize>().unwrap()].clone(),
            error: "connection refused".into(),
        },
        other => panic!("event {other}"),
    }
}

/// Runs a script of (event, expected actions) and returns the rollout.
/// Checks after every step: JSON round trip, replay of the event yields
/// nothing, `outstanding` re-issues the last routing sent and what is pending.
fn run(mut r: Rollout, script: &[(&str, &[&str])]) -> Rollout {
    let mut previous: Vec<Action> = Vec::new();
    // A script may continue an earlier one: start from what that one left.
    let mut last_route: BTreeMap<String, Action> = BTreeMap::new();
    let mut issued: BTreeSet<String> = BTreeSet::new();
    for a in r.outstanding() {
        match a {
            Action::SetSelector { ref service, .. }
            | Action::SetWeights { ref service, .. }
            | Action::SetImage { ref service, .. } => {
                last_route.insert(service.clone(), a.clone());
            }
            Action::Analyze { id, .. } | Action::Wait { id, .. } => {
                issued.insert(id);
            }
            Action::AwaitHuman { .. } => {}
        }
    }
    let mut answered: BTreeSet<String> = BTreeSet::new();
    for (text, expected) in script {
        let e = event(text, &previous);
        if let Event::TimerFired { id } | Event::AnalysisDone { id, .. } = &e {
            answered.insert(id.clone());
        }
        let actions = r.step(e.clone());
        let shown: Vec<String> = actions.iter().map(show).collect();
        assert_eq!(shown, *expected, "after `{text}`\nlog: {:#?}", r.log);

        for a in &actions {
            match a {
                Action::SetSelector { service, .. }
                | Action::SetWeights { service, .. }
                | Action::SetImage { service, .. } => {
                    last_route.insert(service.clone(), a.clone());
                }
                Action::Analyze { id, .. } | Action::Wait { id, .. } => {
                    assert!(issued.insert(id.clone()), "id {id} issued twice");
                }
                Action::AwaitHuman { .. } => {}
            }
        }
        let json = serde_json::to_string(&r).unwrap();
        let back: Rollout = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r, "JSON round trip after `{text}`");

        let mut replay = r.clone();
        let again = replay.step(e);
        assert_eq!(
            again.iter().map(show).collect::<Vec<_>>(),
            Vec::<String>::new(),
            "replaying `{text}` must do nothing"
        );

        let outstanding = r.outstanding();
        let routes: Vec<&Action> = outstanding
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::SetSelector { .. }
                        | Action::SetWeights { .. }
                        | Action::SetImage { .. }
                )
            })
            .collect();
        assert_eq!(
            routes,
            last_route.values().collect::<Vec<_>>(),
            "outstanding routing after `{text}`"
        );
        for a in &outstanding {
            if let Action::Analyze { id, .. } | Action::Wait { id, .. } = a {
                assert!(
                    issued.contains(id) && !answered.contains(id),
                    "outstanding {id} after `{text}`"
                );
            }
        }
        if !actions.is_empty() {
            previous = actions;
        }
    }
    r
}

#[test]
fn blue_green_waves_promote_in_dependency_order() {
    let r = run(
        rollout(&["db", "orders", "web"], &[]),
        &[
            (
                "start",
                &[
                    "select db green",
                    "analyze db/analysis-1 post-promotion on db,orders",
                ],
            ),
            (
                "analysis db/analysis-1 ok",
                &[
                    "select orders green",
                    "analyze orders/analysis-2 post-promotion on orders,web",
                ],
            ),
            (
                "analysis orders/analysis-2 ok",
                &[
                    "select web green",
                    "analyze web/analysis-3 post-promotion on web",
                ],
            ),
            ("analysis web/analysis-3 ok", &[]),
        ],
    );
    assert_eq!(summary(&r), "db:promoted orders:promoted web:promoted done");
    let status = r.status();
    assert_eq!((status.wave, status.waves, status.promoted), (3, 3, 3));
    assert_eq!(status.services[0].candidate_percent, 100);
    assert_eq!(status.services[0].analyses[0].verdict, Verdict::Successful);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["services"][0]["phase"], "promoted");
    assert_eq!(json["services"][0]["analyses"][0]["verdict"], "successful");
    assert_eq!(json["services"][0]["service"], "db");
    let back: Status = serde_json::from_value(json).unwrap();
    assert_eq!(back, status);
}

#[test]
fn a_failed_analysis_rolls_back_that_service_alone_and_holds_its_dependents() {
    let r = run(
        rollout(&["cache", "db", "orders", "ui", "web"], &[]),
        &[
            (
                "start",
                &[
                    "select cache green",
                    "analyze cache/analysis-1 post-promotion on cache,ui",
                    "select db green",
                    "analyze db/analysis-2 post-promotion on db,orders",
                ],
            ),
            ("analysis db/analysis-2 failed", &["select db blue"]),
            (
                "analysis cache/analysis-1 ok",
                &[
                    "select ui green",
                    "analyze ui/analysis-3 post-promotion on ui",
                ],
            ),
            ("analysis ui/analysis-3 ok", &[]),
        ],
    );
    assert_eq!(
        summary(&r),
        "cache:promoted db:rolled-back orders:held ui:promoted web:held done"
    );
    let status = r.status();
    assert_eq!(
        status.services[1].phase,
        Phase::RolledBack {
            reason: "analysis db/analysis-2 failed".into()
        }
    );
    assert_eq!(
        status.services[2].phase,
        Phase::Held {
            because: "db".into()
        }
    );
    assert_eq!(
        status.services[1].analyses[0].findings,
        ["error-rate on db: 0.5 (failed)"]
    );
    assert_eq!(
        (status.promoted, status.rolled_back, status.held),
        (2, 1, 2)
    );
}

#[test]
fn an_analysis_error_or_a_failed_routing_action_also_rolls_back() {
    let r = run(
        rollout(&["db", "cache"], &[]),
        &[
            (
                "start",
                &[
                    "select cache green",
                    "analyze cache/analysis-1 post-promotion on cache,ui",
                    "select db green",
                    "analyze db/analysis-2 post-promotion on db,orders",
                ],
            ),
            ("analysis cache/analysis-1 error", &["select cache blue"]),
            ("fail 0", &["human cache"]),
        ],
    );
    // The rollback of cache failed: a human must look; db goes on.
    assert_eq!(summary(&r), "cache:needs-attention db:analyzing");
    let r = run(
        r,
        &[
            ("resume", &["select cache blue"]),
            ("analysis db/analysis-2 ok", &[]),
        ],
    );
    assert_eq!(summary(&r), "cache:rolled-back db:promoted done");

    let r = run(
        rollout(&["db"], &[]),
        &[
            (
                "start",
                &[
                    "select db green",
                    "analyze db/analysis-1 post-promotion on db,orders",
                ],
            ),
            ("fail 0", &["select db blue"]),
            ("analysis db/analysis-1 ok", &[]),
        ],
    );
    assert_eq!(summary(&r), "db:rolled-back done");
    assert!(
        r.log.iter().any(
            |l| l == "ignored analysis db/analysis-1 (successful): no such analysis is running"
        )
    );
}

#[test]
fn the_failure_of_an_action_no_longer_current_is_ignored() {
    let r = run(
        rollout(
            &["db"],
            &[(
                "db",
                "canary: {steps: [{setWeight: 20}, {setWeight: 60}, {pause: {}}]}",
            )],
        ),
        &[
            (
                "start",
                &[
                    "weights db blue:80 green:20",
                    "weights db blue:40 green:60",
                    "human db",
                ],
            ),
            ("fail 0", &[]),
            ("fail 1", &["select db blue"]),
        ],
    );
    assert_eq!(summary(&r), "db:rolled-back done");
    assert!(
        r.log
            .iter()
            .any(|l| l.starts_with("ignored failure of a stale action for db"))
    );
}

#[test]
fn inconclusive_analyses_wait_for_a_human() {
    // promote accepts it
    let r = run(
        rollout(&["db", "orders"], &[]),
        &[
            (
                "start",
                &[
                    "select db green",
                    "analyze db/analysis-1 post-promotion on db,orders",
                ],
            ),
            ("analysis db/analysis-1 inconclusive", &["human db"]),
            (
                "promote db",
                &[
                    "select orders green",
                    "analyze orders/analysis-2 post-promotion on orders,web",
                ],
            ),
        ],
    );
    assert_eq!(summary(&r), "db:promoted orders:analyzing");
    // resume measures again, under a new id; the old id is dead
    let r = run(
        rollout(&["db", "orders"], &[]),
        &[
            (
                "start",
                &[
                    "select db green",
                    "analyze db/analysis-1 post-promotion on db,orders",
                ],
            ),
            ("analysis db/analysis-1 inconclusive", &["human db"]),
            (
                "resume",
                &["analyze db/analysis-2 post-promotion on db,orders"],
            ),
            ("analysis db/analysis-1 ok", &[]),
            (
                "analysis db/analysis-2 ok",
                &[
                    "select orders green",
                    "analyze orders/analysis-3 post-promotion on orders,web",
                ],
            ),
        ],
    );
    assert_eq!(summary(&r), "db:promoted orders:analyzing");
    // abort rolls it back and holds its dependents
    let r = run(
        rollout(&["db", "orders"], &[]),
        &[
            (
                "start",
                &[
                    "select db green",
                    "analyze db/analysis-1 post-promotion on db,orders",
                ],
            ),
            ("analysis db/analysis-1 inconclusive", &["human db"]),
            ("abort db", &["select db blue"]),
        ],
    );
    assert_eq!(summary(&r), "db:aborted orders:held done");
    assert_eq!(
        r.status().awaiting_human,
        Vec::<String>::new(),
        "nothing is asked of a human any more"
    );
}

#[test]
fn blue_green_with_preview_analysis_and_manual_promotion() {
    let bg = "blueGreen: {previewService: db-preview, autoPromotionEnabled: false, scaleDownDelaySeconds: 45, prePromotionAnalysis: {templates: [t]}, postPromotionAnalysis: {templates: [t]}}";
    let r = run(
        rollout(&["db", "orders"], &[("db", bg)]),
        &[
            (
                "start",
                &["analyze db/analysis-1 pre-promotion on db pool green"],
            ),
            ("promote db", &[]),
            ("analysis db/analysis-1 ok", &["human db"]),
        ],
    );
    let status = r.status();
    assert_eq!(
        status.awaiting_human,
        ["db: autoPromotionEnabled is false: promote to switch traffic"]
    );
    assert_eq!(status.services[0].candidate_percent, 0);
    let r = run(
        r,
        &[
            (
                "promote",
                &[
                    "select db green",
                    "analyze db/analysis-2 post-promotion on db,orders",
                ],
            ),
            (
                "analysis db/analysis-2 ok",
                &[
                    "wait db/scale-down-3 45s",
                    "select orders green",
                    "analyze orders/analysis-4 post-promotion on orders,web",
                ],
            ),
            ("analysis orders/analysis-4 ok", &[]),
        ],
    );
    // Promoted, but the old pool is kept until the scale-down delay passes.
    assert_eq!(summary(&r), "db:promoted orders:promoted");
    let r = run(r, &[("timer db/scale-down-3", &[])]);
    assert_eq!(summary(&r), "db:promoted orders:promoted done");
    assert!(r.status().services[0].stable_released);
}

#[test]
fn a_failed_preview_analysis_never_moves_traffic() {
    let bg = "blueGreen: {scaleDownDelaySeconds: 0, prePromotionAnalysis: {templates: [t]}}";
    let r = run(
        rollout(&["db", "orders"], &[("db", bg)]),
        &[
            (
                "start",
                &["analyze db/analysis-1 pre-promotion on db pool green"],
            ),
            // The rollback re-asserts the stable selector: idempotent and harmless.
            ("analysis db/analysis-1 failed", &["select db blue"]),
        ],
    );
    assert_eq!(summary(&r), "db:rolled-back orders:held done");
}

#[test]
fn canary_steps_weights_pauses_and_analyses() {
    let canary = "canary: {steps: [{setWeight: 20}, {pause: {duration: 1m}}, {analysis: {templates: [t]}}, {setWeight: 50}, {pause: {}}]}";
    let r = run(
        rollout(&["db"], &[("db", canary)]),
        &[
            (
                "start",
                &["weights db blue:80 green:20", "wait db/pause-1 60s"],
            ),
            (
                "timer db/pause-1",
                &["analyze db/analysis-2 step on db,orders"],
            ),
            (
                "analysis db/analysis-2 ok",
                &["weights db blue:50 green:50", "human db"],
            ),
        ],
    );
    let status = r.status();
    assert_eq!(status.services[0].candidate_percent, 50);
    assert_eq!(
        status.services[0].phase,
        Phase::Paused {
            reason: "canary pause: promote to continue".into()
        }
    );
    let r = run(r, &[("promote db", &["select db green"])]);
    // A canary keeps no old pool once it is promoted: no scale-down delay.
    assert_eq!(summary(&r), "db:promoted done");
}

#[test]
fn promote_skips_a_running_pause_and_its_late_timer_is_ignored() {
    let canary = "canary: {steps: [{setWeight: 10}, {pause: {duration: 1h}}, {setWeight: 100}]}";
    let r = run(
        rollout(&["db"], &[("db", canary)]),
        &[
            (
                "start",
                &["weights db blue:90 green:10", "wait db/pause-1 3600s"],
            ),
            (
                "promote db",
                &["weights db blue:0 green:100", "select db green"],
            ),
            ("timer db/pause-1", &[]),
        ],
    );
    assert_eq!(summary(&r), "db:promoted done");
}

#[test]
fn rolling_moves_traffic_in_batches() {
    let rolling = "rolling: {batchSize: 40%, pause: {duration: 5s}, analysis: {templates: [t]}}";
    let r = run(
        rollout(&["db"], &[("db", rolling)]),
        &[
            (
                "start",
                &["weights db blue:60 green:40", "wait db/pause-1 5s"],
            ),
            (
                "timer db/pause-1",
                &["analyze db/analysis-2 step on db,orders"],
            ),
            (
                "analysis db/analysis-2 ok",
                &["weights db blue:20 green:80", "wait db/pause-3 5s"],
            ),
            (
                "timer db/pause-3",
                &["analyze db/analysis-4 step on db,orders"],
            ),
            (
                "analysis db/analysis-4 ok",
                &["select db green", "wait db/pause-5 5s"],
            ),
            (
                "timer db/pause-5",
                &["analyze db/analysis-6 step on db,orders"],
            ),
        ],
    );
    assert_eq!(summary(&r), "db:analyzing");
    let r = run(r, &[("analysis db/analysis-6 failed", &["select db blue"])]);
    assert_eq!(summary(&r), "db:rolled-back done");
}

/// By image, the workload's controller paces the replacement: one step
/// whatever the batch size, then the pause and the analysis; the rollback
/// puts the old image back, and only rolling strategies take an image.
#[test]
fn rolling_by_image_replaces_it_in_one_step() {
    let rolling = "rolling: {batchSize: 40%, pause: {duration: 5s}, analysis: {templates: [t]}}";
    let mut r = rollout(&["db", "orders"], &[("db", rolling)]);
    r.plan.set_image("db", "db:1.0", "db:1.1").unwrap();
    let r = run(
        r,
        &[
            (
                "start",
                &["image db db:1.0 -> db:1.1", "wait db/pause-1 5s"],
            ),
            (
                "timer db/pause-1",
                &["analyze db/analysis-2 step on db,orders"],
            ),
            (
                "analysis db/analysis-2 failed",
                &["image db db:1.1 -> db:1.0"],
            ),
        ],
    );
    assert_eq!(summary(&r), "db:rolled-back orders:held done");
    let mut plan = r.plan.clone();
    assert_eq!(
        plan.set_image("orders", "o:1", "o:2")
            .unwrap_err()
            .to_string(),
        "orders uses the blue-green strategy: only rolling replaces the image in place (blue-green and canary move traffic between pools that already run their versions)"
    );
    assert_eq!(
        plan.set_image("db", "db:1", "db:1")
            .unwrap_err()
            .to_string(),
        "db already runs db:1"
    );
    assert_eq!(
        plan.set_image("web", "w:1", "w:2").unwrap_err().to_string(),
        "web is not in the change set"
    );
}

/// A failed image replacement (a Deployment past its progress deadline, an
/// Argo CD Application Degraded) rolls the service back to its old image.
#[test]
fn a_failed_image_replacement_rolls_back() {
    let mut r = rollout(&["db"], &[("db", "rolling: {batchSize: 100%}")]);
    r.plan.set_image("db", "db:1.0", "db:1.1").unwrap();
    let r = run(
        r,
        &[
            ("start", &["image db db:1.0 -> db:1.1"]),
            ("fail 0", &["image db db:1.1 -> db:1.0"]),
            ("fail 0", &["human db"]),
        ],
    );
    assert_eq!(summary(&r), "db:needs-attention");
}

#[test]
fn pause_stops_new_steps_and_waves_but_not_rollbacks() {
    let r = run(
        rollout(&["cache", "db", "orders", "ui"], &[]),
        &[
            (
                "start",
                &[
                    "select cache green",
                    "analyze cache/analysis-1 post-promotion on cache,ui",
                    "select db green",
                    "analyze db/analysis-2 post-promotion on db,orders",
                ],
            ),
            ("pause", &[]),
            ("analysis cache/analysis-1 ok", &[]),
            ("analysis db/analysis-2 failed", &["select db blue"]),
        ],
    );
    // cache's post-promotion analysis passed: it is promoted (its last step), yet the next wave waits.
    assert_eq!(
        summary(&r),
        "cache:progressing db:rolled-back orders:held ui:pending paused"
    );
    assert_eq!(
        r.status().awaiting_human,
        ["the rollout is paused: resume to continue"]
    );
    let r = run(
        r,
        &[
            (
                "resume",
                &[
                    "select ui green",
                    "analyze ui/analysis-3 post-promotion on ui",
                ],
            ),
            ("analysis ui/analysis-3 ok", &[]),
        ],
    );
    assert_eq!(
        summary(&r),
        "cache:promoted db:rolled-back orders:held ui:promoted done"
    );
}

#[test]
fn pause_before_start_holds_everything_until_resume() {
    let r = run(
        rollout(&["db"], &[]),
        &[
            ("pause", &[]),
            ("start", &[]),
            (
                "resume",
                &[
                    "select db green",
                    "analyze db/analysis-1 post-promotion on db,orders",
                ],
            ),
        ],
    );
    assert_eq!(summary(&r), "db:analyzing");
}

#[test]
fn abort_rolls_back_every_started_service_at_once() {
    let slow = "blueGreen: {scaleDownDelaySeconds: 30, postPromotionAnalysis: {templates: [t]}}";
    let r = run(
        rollout(&["cache", "db", "orders", "ui", "web"], &[("cache", slow)]),
        &[
            (
                "start",
                &[
                    "select cache green",
                    "analyze cache/analysis-1 post-promotion on cache,ui",
                    "select db green",
                    "analyze db/analysis-2 post-promotion on db,orders",
                ],
            ),
            (
                "analysis cache/analysis-1 ok",
                &["wait cache/scale-down-3 30s"],
            ),
            (
                "analysis db/analysis-2 ok",
                &[
                    "select orders green",
                    "analyze orders/analysis-4 post-promotion on orders,web",
                    "select ui green",
                    "analyze ui/analysis-5 post-promotion on ui",
                ],
            ),
            (
                "abort",
                &[
                    "select cache blue",
                    "select db blue",
                    "select orders blue",
                    "select ui blue",
                ],
            ),
            ("analysis orders/analysis-4 ok", &[]),
            ("timer cache/scale-down-3", &[]),
        ],
    );
    assert_eq!(
        summary(&r),
        "cache:aborted db:aborted orders:aborted ui:aborted web:aborted done"
    );
    assert_eq!(r.status().aborted, 5);
}

#[test]
fn undo_rolls_a_promoted_service_back_and_holds_what_depends_on_it() {
    let manual = "blueGreen: {scaleDownDelaySeconds: 0, autoPromotionEnabled: false}";
    let r = run(
        rollout(
            &["cache", "db", "orders", "ui"],
            &[("orders", manual), ("ui", manual)],
        ),
        &[
            (
                "start",
                &[
                    "select cache green",
                    "analyze cache/analysis-1 post-promotion on cache,ui",
                    "select db green",
                    "analyze db/analysis-2 post-promotion on db,orders",
                ],
            ),
            ("analysis cache/analysis-1 ok", &[]),
            ("analysis db/analysis-2 ok", &["human orders", "human ui"]),
            ("undo db", &["select db blue"]),
            ("undo orders", &[]),
            ("promote ui", &["select ui green"]),
        ],
    );
    // orders had started (it awaits promotion), so it is not held: it may still go.
    assert_eq!(
        summary(&r),
        "cache:promoted db:rolled-back orders:paused ui:promoted"
    );
    let r = run(r, &[("undo", &["select cache blue", "select ui blue"])]);
    assert_eq!(
        summary(&r),
        "cache:rolled-back db:rolled-back orders:paused ui:rolled-back"
    );
    let r = run(r, &[("promote orders", &["select orders green"])]);
    assert_eq!(
        summary(&r),
        "cache:rolled-back db:rolled-back orders:promoted ui:rolled-back done"
    );
}

#[test]
fn events_that_do_not_apply_are_noted_not_acted_on() {
    let mut r = rollout(&["db"], &[]);
    let quiet = [
        Event::Resume,
        Event::Promote { service: None },
        Event::Promote {
            service: Some("nope".into()),
        },
        Event::Abort { service: None },
        Event::Undo { service: None },
        Event::TimerFired { id: "x".into() },
        Event::AnalysisDone {
            id: "y".into(),
            verdict: Verdict::Failed,
            measurements: vec![],
        },
        Event::ActionFailed {
            action: Action::AwaitHuman {
                service: None,
                reason: "r".into(),
            },
            error: "e".into(),
        },
    ];
    for e in quiet {
        assert_eq!(r.step(e.clone()), vec![], "{e:?}");
    }
    assert_eq!(r.log.len(), 8, "{:#?}", r.log);
    assert_eq!(summary(&r), "db:pending");
    assert!(!r.is_finished());
    assert_eq!(r.status().wave, 0);
    assert_eq!(r.outstanding(), vec![]);
}

/// Every event in every phase a service can be in: the phase it moves to and
/// the actions, as one table. The service is `db`; `orders` depends on it, so
/// the events naming `orders` meet it pending, held, progressing or aborted.
#[test]
fn every_event_in_every_phase() {
    let canary = "canary: {steps: [{setWeight: 30}, {pause: {duration: 10s}}, {analysis: {templates: [t]}}, {pause: {}}]}";
    let slow_bg = "blueGreen: {scaleDownDelaySeconds: 30}";
    // (phase name, strategy of db, events that lead there)
    let setups: &[(&str, &str, &[&str])] = &[
        ("pending", canary, &[]),
        ("waiting-timer", canary, &["start"]),
        ("analyzing", canary, &["start", "timer db/pause-1"]),
        (
            "inconclusive",
            canary,
            &[
                "start",
                "timer db/pause-1",
                "analysis db/analysis-2 inconclusive",
            ],
        ),
        (
            "manual-gate",
            canary,
            &["start", "timer db/pause-1", "analysis db/analysis-2 ok"],
        ),
        ("releasing", slow_bg, &["start"]),
        (
            "promoted",
            canary,
            &[
                "start",
                "timer db/pause-1",
                "analysis db/analysis-2 ok",
                "promote db",
            ],
        ),
        (
            "rolled-back",
            canary,
            &["start", "timer db/pause-1", "analysis db/analysis-2 failed"],
        ),
        (
            "needs-attention",
            canary,
            &[
                "start",
                "timer db/pause-1",
                "analysis db/analysis-2 failed",
                "fail 0",
            ],
        ),
        ("aborted", canary, &["start", "abort"]),
        ("paused-rollout", canary, &["start", "pause"]),
    ];
    let events = [
        "start",
        "timer db/pause-1",
        "timer db/scale-down-1",
        "analysis db/analysis-2 ok",
        "analysis db/analysis-2 failed",
        "analysis db/analysis-2 inconclusive",
        "fail-route",
        "promote db",
        "promote",
        "pause",
        "resume",
        "abort db",
        "abort",
        "undo db",
        "undo",
        "promote orders",
        "abort orders",
        "undo orders",
    ];
    let mut table = String::new();
    for (name, strategy, path) in setups {
        let mut r = rollout(&["db", "orders"], &[("db", strategy)]);
        let mut previous = Vec::new();
        for e in *path {
            previous = r.step(event(e, &previous));
        }
        for e in events {
            let mut r = r.clone();
            let ev = if e == "fail-route" {
                Event::ActionFailed {
                    action: r
                        .outstanding()
                        .into_iter()
                        .find(|a| {
                            matches!(a, Action::SetSelector { .. } | Action::SetWeights { .. })
                        })
                        .unwrap_or(Action::SetSelector {
                            service: "db".into(),
                            selector: Selector::from([("version".into(), "green".into())]),
                        }),
                    error: "refused".into(),
                }
            } else {
                event(e, &previous)
            };
            let actions: Vec<String> = r.step(ev).iter().map(show).collect();
            // Settled services never move traffic towards the new version again.
            if let Some(Phase::RolledBack { .. } | Phase::Aborted { .. } | Phase::Held { .. }) =
                r.phase("db")
            {
                assert!(
                    !actions
                        .iter()
                        .any(|a| a.starts_with("weights db") || a == "select db green"),
                    "{name} + {e}: {actions:?}"
                );
            }
            table.push_str(&format!(
                "{name} + {e} -> {} | {}\n",
                summary(&r),
                actions.join("; ")
            ));
        }
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/machine/every_event_in_every_phase.txt"
    );
    test_support::expect_file(&table, path);
}

/// splitmix64, seeded, so a failing case reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// Whether an action sends traffic towards the new version.
fn moves_forward(a: &Action) -> bool {
    match a {
        Action::SetWeights { .. } => true,
        Action::SetSelector { selector, .. } => {
            selector.get("version").map(String::as_str) == Some("green")
        }
        _ => false,
    }
}

/// Random event sequences (real ids answered with random verdicts, stale and
/// unknown ids, failures of old actions, human commands) never panic, never
/// move traffic of a settled service forward, never start a service before
/// its wave, keep `outstanding` equal to the routing last sent, survive a JSON
/// round trip, ignore replayed observations; and a driver that then answers
/// everything positively always finishes.
#[test]
fn property_random_event_sequences_keep_the_invariants() {
    let strategies = [
        "blueGreen: {scaleDownDelaySeconds: 0, postPromotionAnalysis: {templates: [t]}}",
        "blueGreen: {scaleDownDelaySeconds: 20, autoPromotionEnabled: false, prePromotionAnalysis: {templates: [t]}, postPromotionAnalysis: {templates: [t]}}",
        "canary: {steps: [{setWeight: 25}, {pause: {duration: 5s}}, {analysis: {templates: [t]}}, {pause: {}}, {setWeight: 75}]}",
        "rolling: {batchSize: 50, pause: {duration: 1s}, analysis: {templates: [t]}}",
    ];
    let all = ["cache", "db", "orders", "ui", "web"];
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for seed in 0..150u64 {
        let mut rng = Rng(seed);
        let changed: Vec<&str> = all.iter().copied().filter(|_| rng.below(3) > 0).collect();
        if changed.is_empty() {
            continue;
        }
        let chosen: Vec<(&str, &str)> = all
            .iter()
            .map(|s| (*s, strategies[rng.below(strategies.len())]))
            .collect();
        let mut r = rollout(&changed, &chosen);
        let context = format!("seed {seed}, changed {changed:?}");
        let mut issued: Vec<Action> = Vec::new();
        let mut settled_at: BTreeMap<String, usize> = BTreeMap::new();
        let mut last_route: BTreeMap<String, Action> = BTreeMap::new();
        for step in 0..60 {
            let ids: Vec<String> = issued
                .iter()
                .filter_map(|a| match a {
                    Action::Analyze { id, .. } | Action::Wait { id, .. } => Some(id.clone()),
                    _ => None,
                })
                .collect();
            let some_service = |rng: &mut Rng| {
                if rng.below(3) == 0 {
                    None
                } else {
                    Some(changed[rng.below(changed.len())].to_string())
                }
            };
            let e = match rng.below(20) {
                0 => Event::Start,
                1..=4 => Event::TimerFired {
                    id: rng.pick(&ids).cloned().unwrap_or_else(|| "bogus".into()),
                },
                5..=10 => Event::AnalysisDone {
                    id: rng.pick(&ids).cloned().unwrap_or_else(|| "bogus".into()),
                    verdict: [
                        Verdict::Successful,
                        Verdict::Successful,
                        Verdict::Successful,
                        Verdict::Failed,
                        Verdict::Error,
                        Verdict::Inconclusive,
                    ][rng.below(6)],
                    measurements: vec![],
                },
                11 => match rng.pick(&issued) {
                    Some(a) => Event::ActionFailed {
                        action: a.clone(),
                        error: "refused".into(),
                    },
                    None => Event::Pause,
                },
                12..=14 => Event::Promote {
                    service: some_service(&mut rng),
                },
                15 => Event::Pause,
                16 | 17 => Event::Resume,
                18 => Event::Abort {
                    service: Some(changed[rng.below(changed.len())].to_string()),
                },
                _ => Event::Undo {
                    service: some_service(&mut rng),
                },
            };
            let before = r.status();
            let actions = r.step(e.clone());
            let what = format!("{context}, step {step}, {e:?}");
            for a in &actions {
                let name = a.service().unwrap_or_default().to_string();
                if moves_forward(a) {
                    assert!(
                        !settled_at.contains_key(&name),
                        "{what}: {name} was settled, yet {a:?}"
                    );
                }
                if let Action::SetSelector { service, .. } | Action::SetWeights { service, .. } = a
                {
                    last_route.insert(service.clone(), a.clone());
                }
            }
            issued.extend(actions.iter().cloned());
            let status = r.status();
            for s in &status.services {
                *seen.entry(s.phase.name()).or_default() += 1;
                // Rolled back, aborted and held are final (promoted may still be undone).
                if matches!(
                    s.phase,
                    Phase::RolledBack { .. } | Phase::Aborted { .. } | Phase::Held { .. }
                ) {
                    settled_at.entry(s.service.clone()).or_insert(step);
                }
                if let Phase::Held { because } = &s.phase {
                    assert!(
                        matches!(
                            r.phase(because),
                            Some(
                                Phase::RolledBack { .. }
                                    | Phase::Aborted { .. }
                                    | Phase::NeedsAttention { .. }
                            )
                        ),
                        "{what}: {} held because of {because}, which is {:?}",
                        s.service,
                        r.phase(because)
                    );
                }
                // No service runs before its wave.
                if s.wave > status.wave {
                    assert!(
                        matches!(
                            s.phase,
                            Phase::Pending | Phase::Held { .. } | Phase::Aborted { .. }
                        ),
                        "{what}: {} of wave {} is {:?} while wave {} runs",
                        s.service,
                        s.wave,
                        s.phase,
                        status.wave
                    );
                }
            }
            for s in &before.services {
                if matches!(s.phase, Phase::Held { .. }) {
                    assert!(
                        matches!(
                            r.phase(&s.service),
                            Some(Phase::Held { .. } | Phase::Aborted { .. })
                        ),
                        "{what}: held {} moved",
                        s.service
                    );
                }
            }
            let routes: Vec<Action> = r
                .outstanding()
                .into_iter()
                .filter(|a| matches!(a, Action::SetSelector { .. } | Action::SetWeights { .. }))
                .collect();
            assert_eq!(
                routes,
                last_route.values().cloned().collect::<Vec<_>>(),
                "{what}"
            );
            let back: Rollout = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(back, r, "{what}");
            if matches!(
                e,
                Event::TimerFired { .. } | Event::AnalysisDone { .. } | Event::ActionFailed { .. }
            ) {
                assert_eq!(r.clone().step(e), vec![], "{what}: replay");
            }
        }

        // A driver that answers everything positively finishes.
        let mut pending: Vec<Action> = r.outstanding();
        r.step(Event::Start);
        r.step(Event::Resume);
        for _ in 0..200 {
            if r.is_finished() {
                break;
            }
            let mut next = Vec::new();
            for a in pending.drain(..) {
                let e = match a {
                    Action::Wait { id, .. } => Event::TimerFired { id },
                    Action::Analyze { id, .. } => Event::AnalysisDone {
                        id,
                        verdict: Verdict::Successful,
                        measurements: vec![],
                    },
                    Action::AwaitHuman { service, .. } => Event::Promote { service },
                    _ => continue,
                };
                next.extend(r.step(e));
            }
            next.extend(r.step(Event::Resume));
            pending = if next.is_empty() {
                r.outstanding()
            } else {
                next
            };
        }
        assert!(r.is_finished(), "{context}: {}\n{:#?}", summary(&r), r.log);
        assert!(
            r.status().services.iter().all(|s| s.phase.is_settled()),
            "{context}"
        );
    }
    // The sequences reached every phase, so the invariants were exercised.
    for phase in [
        "pending",
        "held",
        "progressing",
        "analyzing",
        "paused",
        "promoted",
        "rolled-back",
        "aborted",
        "needs-attention",
    ] {
        assert!(
            seen.get(phase).copied().unwrap_or(0) > 0,
            "{phase} never reached: {seen:?}"
        );
    }
}
