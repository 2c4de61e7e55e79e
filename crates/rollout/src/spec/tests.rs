use super::*;
use crate::analysis::Verdict;

const FULL: &str = r#"# rollouts for the shop
apiVersion: bulkhead.dev/v1alpha1
kind: Rollout
metadata: {name: orders}
spec:
  service: orders
  strategy:
    blueGreen:
      activeService: orders-live
      previewService: orders-preview
      autoPromotionEnabled: false
      scaleDownDelaySeconds: 60
      prePromotionAnalysis:
        templates: [{templateName: error-rate}]
      postPromotionAnalysis:
        templates:
          - templateName: error-rate
          - templateName: latency
---
apiVersion: bulkhead.dev/v1alpha1
kind: Rollout
metadata: {name: payments}
spec:
  service: payments
  strategy:
    canary:
      steps:
        - setWeight: 10
        - pause: {duration: 1m}
        - analysis: {templates: [error-rate]}
        - setWeight: 50
        - pause: {}
---
apiVersion: bulkhead.dev/v1alpha1
kind: Rollout
spec:
  service: search
  strategy:
    rolling:
      maxSurge: 25%
      pause: {duration: 5s}
      analysis: {templates: [{templateName: latency}]}
---
apiVersion: bulkhead.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-rate}
spec:
  metrics:
    - name: error-rate
      interval: 10s
      count: 3
      successCondition: result < 0.05
      failureLimit: 1
      provider:
        gateway: {metric: error-rate}
    - name: prom-success
      successCondition: result[0] >= 0.95
      failureCondition: result[0] < 0.5
      consecutiveErrorLimit: 2
      inconclusiveLimit: -1
      provider:
        prometheus:
          address: http://127.0.0.1:9090
          query: sum(rate(ok{service="{{service}}"}[1m]))
---
apiVersion: bulkhead.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: latency}
spec:
  metrics:
    - name: p99
      interval: 1m30s
      successCondition: result < 250
      provider:
        traces: {address: http://127.0.0.1:4318, metric: latency-p99}
"#;

#[test]
fn reads_rollouts_and_templates() {
    let specs = Specs::parse("rollouts.yaml", FULL);
    assert_eq!(specs.diagnostics, vec![], "{:#?}", specs.diagnostics);
    assert_eq!(
        specs.rollouts.keys().collect::<Vec<_>>(),
        ["orders", "payments", "search"]
    );
    assert_eq!(
        specs.templates.keys().collect::<Vec<_>>(),
        ["error-rate", "latency"]
    );
    assert_eq!(
        specs.rollouts["orders"].at,
        Provenance::new("rollouts.yaml", 2)
    );

    let Strategy::BlueGreen(bg) = specs.strategy_for("orders").unwrap() else {
        panic!("orders is blue-green");
    };
    assert_eq!(bg.active_service.as_deref(), Some("orders-live"));
    assert_eq!(bg.preview_service.as_deref(), Some("orders-preview"));
    assert!(!bg.auto_promotion_enabled);
    assert_eq!(bg.scale_down_delay_seconds, 60);
    let pre = bg.pre_promotion_analysis.unwrap();
    assert_eq!(pre.templates, ["error-rate"]);
    assert_eq!(
        pre.metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["error-rate", "prom-success"]
    );
    let post = bg.post_promotion_analysis.unwrap();
    assert_eq!(post.templates, ["error-rate", "latency"]);
    assert_eq!(post.metrics.len(), 3);

    let error_rate = &pre.metrics[0];
    assert_eq!(
        error_rate.provider,
        Provider::Gateway {
            metric: MetricKind::ErrorRate
        }
    );
    assert_eq!(
        (
            error_rate.interval_seconds,
            error_rate.count,
            error_rate.failure_limit,
            error_rate.inconclusive_limit,
            error_rate.consecutive_error_limit
        ),
        (10, 3, 1, 0, 4)
    );
    let prom = &pre.metrics[1];
    assert_eq!(
        prom.provider,
        Provider::Prometheus {
            address: "http://127.0.0.1:9090".into(),
            query: "sum(rate(ok{service=\"{{service}}\"}[1m]))".into()
        }
    );
    assert_eq!((prom.count, prom.interval_seconds), (1, 10), "defaults");
    assert_eq!(
        (prom.consecutive_error_limit, prom.inconclusive_limit),
        (2, -1)
    );
    let m = crate::analysis::Measurement {
        metric: "prom-success".into(),
        service: "orders".into(),
        value: Some(0.7),
        error: None,
    };
    assert_eq!(m.judge(prom), Verdict::Inconclusive);
    let p99 = &post.metrics[2];
    assert_eq!(p99.interval_seconds, 90);
    assert_eq!(
        p99.provider,
        Provider::Traces {
            address: "http://127.0.0.1:4318".into(),
            metric: MetricKind::LatencyP99
        }
    );

    let Strategy::Canary(c) = specs.strategy_for("payments").unwrap() else {
        panic!("payments is canary");
    };
    let shape: Vec<String> = c
        .steps
        .iter()
        .map(|s| match s {
            CanaryStep::SetWeight(w) => format!("weight {w}"),
            CanaryStep::Pause(d) => format!("pause {d:?}"),
            CanaryStep::Analysis(a) => format!("analysis {}", a.templates.join("+")),
        })
        .collect();
    assert_eq!(
        shape,
        [
            "weight 10",
            "pause Some(60)",
            "analysis error-rate",
            "weight 50",
            "pause None"
        ]
    );

    let Strategy::Rolling(r) = specs.strategy_for("search").unwrap() else {
        panic!("search is rolling");
    };
    assert_eq!((r.batch_percent, r.pause_seconds), (25, 5));
    assert_eq!(r.analysis.unwrap().templates, ["latency"]);
}

#[test]
fn a_service_without_a_spec_gets_blue_green_with_the_builtin_analysis() {
    let specs = Specs::default();
    let s = specs.strategy_for("anything").unwrap();
    assert_eq!(s, Strategy::default_for_unspecified());
    let Strategy::BlueGreen(bg) = s else {
        panic!("blue-green");
    };
    assert!(bg.auto_promotion_enabled);
    assert_eq!(bg.scale_down_delay_seconds, 30);
    assert_eq!(bg.pre_promotion_analysis, None);
    assert_eq!(bg.post_promotion_analysis, Some(AnalysisSpec::builtin()));
}

#[test]
fn an_empty_strategy_block_takes_every_default() {
    let specs = Specs::parse(
        "r.yaml",
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  service: a\n  strategy:\n    blueGreen:\n---\napiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  service: b\n  strategy:\n    rolling:\n",
    );
    assert_eq!(specs.diagnostics, vec![]);
    assert_eq!(
        specs.strategy_for("a").unwrap(),
        Strategy::BlueGreen(BlueGreen {
            active_service: None,
            preview_service: None,
            auto_promotion_enabled: true,
            scale_down_delay_seconds: 30,
            pre_promotion_analysis: None,
            post_promotion_analysis: None,
        })
    );
    assert_eq!(
        specs.strategy_for("b").unwrap(),
        Strategy::Rolling(Rolling {
            batch_percent: 25,
            pause_seconds: 0,
            analysis: None,
        })
    );
}

#[test]
fn an_undefined_template_is_an_error_with_its_place() {
    let text = "apiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  service: a\n  strategy:\n    canary:\n      steps:\n        - analysis: {templates: [nope]}\n";
    let specs = Specs::parse("r.yaml", text);
    assert_eq!(specs.diagnostics, vec![]);
    let err = specs.strategy_for("a").unwrap_err();
    assert_eq!(err.name, "nope");
    assert_eq!(err.at, Provenance::new("r.yaml", 8));
    assert_eq!(
        err.to_string(),
        "r.yaml:8: analysis template nope is not defined (known: none)"
    );
}

fn rollout(strategy: &str) -> String {
    format!(
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  service: a\n  strategy:\n{strategy}"
    )
}

fn template(metric: &str) -> String {
    format!(
        "apiVersion: bulkhead.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: t}}\nspec:\n  metrics:\n    - name: m\n{metric}"
    )
}

#[test]
fn problems_are_diagnostics_with_file_and_line() {
    let gw = "      provider: {gateway: {}}\n";
    let cases: Vec<(String, Vec<(u32, &str)>)> = vec![
        ("kind: Rollout\n".to_string(), vec![(1, "no apiVersion")]),
        (
            "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nspec: {}\n".to_string(),
            vec![(
                1,
                "apiVersion argoproj.io/v1alpha1 is not bulkhead.dev/v1alpha1",
            )],
        ),
        (
            "apiVersion: bulkhead.dev/v1alpha1\nkind: Deployment\nspec: {}\n".to_string(),
            vec![(2, "kind Deployment is not Rollout or AnalysisTemplate")],
        ),
        (
            "apiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  strategy: {}\n".to_string(),
            vec![(4, "Rollout has no spec.service")],
        ),
        (
            "- a\n- b\n".to_string(),
            vec![(1, "document must be a mapping, not a list")],
        ),
        (
            "apiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec: [\n".to_string(),
            vec![(4, "invalid YAML")],
        ),
        (
            rollout("    blueGreen: {}\n    canary: {steps: [{setWeight: 5}]}\n"),
            vec![(6, "exactly one of blueGreen, canary, rolling")],
        ),
        (
            rollout("    blueGreen:\n      autoPromote: false\n"),
            vec![
                (1, "rollout of a skipped"),
                (7, "unknown field `autoPromote`"),
            ],
        ),
        (
            rollout(
                "    blueGreen:\n      autoPromotionEnabled: maybe\n      scaleDownDelaySeconds: -3\n",
            ),
            vec![
                (1, "rollout of a skipped"),
                (
                    7,
                    "autoPromotionEnabled must be true or false, not \"maybe\"",
                ),
                (
                    8,
                    "scaleDownDelaySeconds must be a whole number from 0 to 86400",
                ),
            ],
        ),
        (
            rollout(
                "    canary:\n      steps:\n        - setWeight: 150\n        - pause: {duration: soon}\n        - setWeight: 5\n          pause: {}\n        - analysis: {}\n",
            ),
            vec![
                (1, "rollout of a skipped"),
                (
                    8,
                    "setWeight must be a whole number from 0 to 100, not \"150\"",
                ),
                (9, "duration: \"soon\" is not a duration"),
                (10, "needs exactly one of setWeight, pause, analysis"),
                (12, "analysis has no templates"),
            ],
        ),
        (
            rollout("    rolling: {batchSize: 0%}\n"),
            vec![
                (1, "rollout of a skipped"),
                (6, "batchSize must be a percentage from 1 to 100"),
            ],
        ),
        (
            rollout("    rolling: {batchSize: 10, maxSurge: 20}\n"),
            vec![
                (1, "rollout of a skipped"),
                (6, "give batchSize or maxSurge, not both"),
            ],
        ),
        (
            template(&format!("      sucessCondition: result < 1\n{gw}")),
            vec![
                (1, "analysis template t skipped"),
                (7, "unknown field `sucessCondition`"),
            ],
        ),
        (
            template(&format!("      successCondition: result <\n{gw}")),
            vec![
                (1, "analysis template t skipped"),
                (
                    7,
                    "condition `result <`: expected a number or `result` at column 9",
                ),
            ],
        ),
        (
            template(&format!("      count: 0\n{gw}")),
            vec![
                (1, "analysis template t skipped"),
                (7, "count must be at least 1"),
            ],
        ),
        (
            template("      provider: {gateway: {}, traces: {address: x}}\n"),
            vec![
                (1, "analysis template t skipped"),
                (7, "needs exactly one of gateway, prometheus, traces"),
            ],
        ),
        (
            template("      provider: {prometheus: {query: up}}\n"),
            vec![
                (1, "analysis template t skipped"),
                (7, "prometheus has no address"),
            ],
        ),
        (
            template(
                "      provider:\n        prometheus:\n          address: http://p\n          query: x{job=\"{{args.job}}\"}\n",
            ),
            vec![
                (1, "analysis template t skipped"),
                (
                    10,
                    "placeholder {{args.job}} is not known; only {{service}}",
                ),
            ],
        ),
        (
            template("      provider: {gateway: {metric: saturation}}\n"),
            vec![
                (1, "analysis template t skipped"),
                (7, "metric saturation is not error-rate or latency-p99"),
            ],
        ),
        (
            template("      interval: 10s\n"),
            vec![
                (1, "analysis template t skipped"),
                (6, "metric m has no provider"),
            ],
        ),
        (
            format!(
                "{}---\n{}",
                rollout("    rolling: {}\n"),
                rollout("    rolling: {}\n")
            ),
            vec![(
                8,
                "a second rollout for service a (the first is at f.yaml:1)",
            )],
        ),
    ];
    for (text, expected) in cases {
        let specs = Specs::parse("f.yaml", &text);
        let got: Vec<(u32, String)> = specs
            .diagnostics
            .iter()
            .map(|d| (d.line.unwrap_or(0), d.message.clone()))
            .collect();
        assert_eq!(got.len(), expected.len(), "{text}\ngot {got:#?}");
        for ((line, message), (want_line, want)) in got.iter().zip(&expected) {
            assert_eq!(line, want_line, "{text}\ngot {got:#?}");
            assert!(message.contains(want), "{text}\n{message:?} lacks {want:?}");
        }
        assert!(specs.diagnostics.iter().all(|d| d.path == "f.yaml"));
        assert!(specs.has_errors());
    }
}

/// The shared duration grammar in whole seconds, plus the bare number of
/// seconds that rollout specs have always accepted.
#[test]
fn durations() {
    let cases = [
        ("30", Ok(30)),
        ("30s", Ok(30)),
        ("5m", Ok(300)),
        ("1h30m", Ok(5400)),
        ("2h", Ok(7200)),
        ("2d", Ok(172_800)),
        ("1.5m", Ok(90)),
        ("", Err("it is empty")),
        ("s", Err("a unit without a number")),
        ("10x", Err("unknown unit")),
        ("5m3", Err("a number without a unit")),
        ("-1", Err("a unit without a number")),
        ("99999999999999999999h", Err("too long")),
        ("1500ms", Err("not a whole number of seconds")),
    ];
    for (text, expected) in cases {
        match (duration_seconds(text), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text:?}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{text:?}: {got}"),
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }
}

/// Every prefix of a valid file, and the file with any one byte replaced, reads
/// without a panic: a bad file is diagnostics, never a crash.
#[test]
fn damaged_files_never_panic() {
    for end in (0..FULL.len()).filter(|&i| FULL.is_char_boundary(i)) {
        let _ = Specs::parse("p.yaml", &FULL[..end]);
    }
    let bytes = FULL.as_bytes();
    for i in (0..bytes.len()).step_by(7) {
        for replacement in [b'{', b':', b'-', b'\n'] {
            let mut damaged = bytes.to_vec();
            damaged[i] = replacement;
            if let Ok(text) = String::from_utf8(damaged) {
                let specs = Specs::parse("p.yaml", &text);
                // Whatever was kept still resolves or names its missing template.
                for name in specs.rollouts.keys() {
                    let _ = specs.strategy_for(name);
                }
            }
        }
    }
}
