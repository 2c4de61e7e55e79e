use super::*;

fn metric(success: Option<&str>, failure: Option<&str>) -> Metric {
    Metric {
        name: "m".to_string(),
        provider: Provider::Gateway {
            metric: MetricKind::ErrorRate,
        },
        success_condition: success.map(|s| Condition::parse(s).unwrap()),
        failure_condition: failure.map(|s| Condition::parse(s).unwrap()),
        interval_seconds: 1,
        count: 3,
        failure_limit: 0,
        inconclusive_limit: 0,
        consecutive_error_limit: DEFAULT_CONSECUTIVE_ERROR_LIMIT,
    }
}

fn value(service: &str, v: f64) -> Measurement {
    Measurement {
        metric: "m".to_string(),
        service: service.to_string(),
        value: Some(v),
        error: None,
    }
}

fn error(service: &str) -> Measurement {
    Measurement {
        metric: "m".to_string(),
        service: service.to_string(),
        value: None,
        error: Some("connection refused".to_string()),
    }
}

#[test]
fn conditions_evaluate_like_argo_expressions() {
    let cases: &[(&str, f64, Result<bool, ()>)] = &[
        ("result < 0.05", 0.01, Ok(true)),
        ("result < 0.05", 0.05, Ok(false)),
        ("result[0] >= 0.95", 0.97, Ok(true)),
        ("result[0] >= 0.95", 0.5, Ok(false)),
        ("result <= 1 && result >= 0", 0.5, Ok(true)),
        ("result <= 1 && result >= 0", 1.5, Ok(false)),
        ("result < 0 || result > 10", 11.0, Ok(true)),
        ("result < 0 || result > 10", 5.0, Ok(false)),
        ("result > 1 && result < 3 || result == 10", 10.0, Ok(true)),
        ("result > 1 && (result < 3 || result == 10)", 10.0, Ok(true)),
        ("result > 1 && (result < 3 || result == 10)", 0.0, Ok(false)),
        ("!(result < 1)", 2.0, Ok(true)),
        ("result != 0", 0.0, Ok(false)),
        ("0.5 > result", 0.1, Ok(true)),
        ("result > -1", -0.5, Ok(true)),
        ("result < 1e-2", 0.001, Ok(true)),
        ("result < 1 and result > 0", 0.5, Ok(true)),
        ("result < 1 or result > 5", 3.0, Ok(false)),
        // NaN compares false everywhere, so a NaN never passes a success condition.
        ("result < 1", f64::NAN, Ok(false)),
        ("result[1] < 1", 0.0, Err(())),
    ];
    for (source, v, expected) in cases {
        let c = Condition::parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(
            c.holds(*v).map_err(|_| ()),
            *expected,
            "{source} with result = {v}"
        );
    }
}

#[test]
fn bad_conditions_are_errors_with_a_column() {
    let deep = format!("{}result < 1{}", "(".repeat(40), ")".repeat(40));
    let cases: &[(&str, &str, usize)] = &[
        ("result <", "expected a number or `result`", 9),
        ("resultt < 1", "unknown name `resultt`", 1),
        ("len(result) > 0", "unknown name `len`", 1),
        ("result < 1 &&", "expected a number or `result`", 14),
        ("result < 1 & result > 0", "unexpected `&`", 12),
        ("(result < 1", "expected `)`", 12),
        ("result", "expected a comparison", 7),
        ("result[x] < 1", "unknown name `x`", 8),
        ("result[0.5] < 1", "expected an index", 8),
        ("result < 1e999", "is not a number", 10),
        ("result < 1 result", "unexpected trailing input", 12),
        ("", "expected a number or `result`", 1),
        (&deep, "nested too deeply", 33),
    ];
    for (source, message, column) in cases {
        let e = Condition::parse(source).expect_err(source);
        assert!(
            e.message.contains(message),
            "{source}: {} does not contain {message}",
            e.message
        );
        assert_eq!(e.column, *column, "{source}: {e}");
    }
}

#[test]
fn conditions_serialize_as_their_text() {
    let c = Condition::parse(" result < 0.05 ").unwrap();
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(json, "\"result < 0.05\"");
    let back: Condition = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    assert!(serde_json::from_str::<Condition>("\"result <\"").is_err());
}

#[test]
fn a_measurement_is_judged_by_argos_rules() {
    let s = Some("result < 0.05");
    let f = Some("result > 0.2");
    // (successCondition, failureCondition, value or an error, verdict)
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<f64>, Verdict);
    let cases: &[Case] = &[
        (None, None, Some(0.9), Verdict::Successful),
        (s, None, Some(0.01), Verdict::Successful),
        (s, None, Some(0.1), Verdict::Failed),
        (None, f, Some(0.1), Verdict::Successful),
        (None, f, Some(0.3), Verdict::Failed),
        (s, f, Some(0.01), Verdict::Successful),
        (s, f, Some(0.1), Verdict::Inconclusive),
        (s, f, Some(0.3), Verdict::Failed),
        (s, f, None, Verdict::Error),
        (Some("result[2] < 1"), None, Some(0.0), Verdict::Error),
    ];
    for (success, failure, v, expected) in cases {
        let m = Measurement {
            metric: "m".into(),
            service: "a".into(),
            value: *v,
            error: v.is_none().then(|| "no data".to_string()),
        };
        assert_eq!(
            m.judge(&metric(*success, *failure)),
            *expected,
            "success {success:?} failure {failure:?} value {v:?}"
        );
    }
}

/// (failureLimit, inconclusiveLimit, consecutiveErrorLimit, count, measurements in order, progress, evaluate)
type LimitCase = (
    i32,
    i32,
    i32,
    u32,
    &'static [Option<f64>],
    Option<Verdict>,
    Verdict,
);

#[test]
fn limits_follow_argo_rollouts() {
    // success: result < 0.05; failure: result > 0.2; between is inconclusive; None is an error.
    const OK: Option<f64> = Some(0.01);
    const BAD: Option<f64> = Some(0.5);
    const MEH: Option<f64> = Some(0.1);
    const ERR: Option<f64> = None;
    use Verdict::*;
    let cases: &[LimitCase] = &[
        (0, 0, 4, 3, &[OK, OK, OK], Some(Successful), Successful),
        (0, 0, 4, 3, &[OK, OK], None, Successful),
        (0, 0, 4, 3, &[], None, Inconclusive),
        (0, 0, 4, 3, &[OK, BAD], Some(Failed), Failed),
        (1, 0, 4, 3, &[BAD, OK, OK], Some(Successful), Successful),
        (1, 0, 4, 5, &[BAD, OK, BAD], Some(Failed), Failed),
        (-1, 0, 4, 3, &[BAD, BAD, BAD], Some(Successful), Successful),
        (0, 0, 4, 3, &[MEH], Some(Inconclusive), Inconclusive),
        (0, 1, 4, 3, &[MEH, OK, OK], Some(Successful), Successful),
        (0, 1, 4, 3, &[MEH, MEH], Some(Inconclusive), Inconclusive),
        (0, 0, 4, 9, &[ERR, ERR, ERR, ERR], None, Inconclusive),
        (0, 0, 4, 9, &[ERR, ERR, ERR, ERR, ERR], Some(Error), Error),
        (
            0,
            0,
            4,
            9,
            &[ERR, ERR, ERR, ERR, OK, ERR, ERR],
            None,
            Successful,
        ),
        (0, 0, 0, 3, &[ERR], Some(Error), Error),
        (
            0,
            0,
            -1,
            3,
            &[ERR, ERR, ERR, ERR, ERR, ERR],
            Some(Inconclusive),
            Inconclusive,
        ),
        (0, 0, 4, 3, &[ERR, OK, ERR], Some(Successful), Successful),
        // The first limit crossed decides, as measurements arrive.
        (0, 0, 0, 3, &[BAD, ERR], Some(Failed), Failed),
        (0, 0, 0, 3, &[ERR, BAD], Some(Error), Error),
    ];
    for (fl, il, cel, count, series, progress_expected, final_expected) in cases {
        let mut m = metric(Some("result < 0.05"), Some("result > 0.2"));
        (
            m.failure_limit,
            m.inconclusive_limit,
            m.consecutive_error_limit,
            m.count,
        ) = (*fl, *il, *cel, *count);
        let spec = AnalysisSpec {
            templates: vec![],
            metrics: vec![m],
        };
        let ms: Vec<Measurement> = series
            .iter()
            .map(|v| v.map_or_else(|| error("a"), |v| value("a", v)))
            .collect();
        let what = format!("limits {fl}/{il}/{cel} count {count} series {series:?}");
        assert_eq!(progress(&spec, &ms), *progress_expected, "progress: {what}");
        assert_eq!(evaluate(&spec, &ms), *final_expected, "evaluate: {what}");
    }
}

#[test]
fn every_service_is_judged_on_its_own_and_the_worst_wins() {
    let mut m = metric(Some("result < 0.05"), None);
    m.count = 2;
    m.failure_limit = 1;
    let spec = AnalysisSpec {
        templates: vec![],
        metrics: vec![m],
    };
    // One failure per service stays within the limit of 1 per service.
    let within = [
        value("a", 0.5),
        value("b", 0.5),
        value("a", 0.0),
        value("b", 0.0),
    ];
    assert_eq!(progress(&spec, &within), Some(Verdict::Successful));
    // Two failures on the caller b fail the analysis though a is healthy.
    let caller_fails = [
        value("a", 0.0),
        value("b", 0.5),
        value("a", 0.0),
        value("b", 0.5),
    ];
    assert_eq!(progress(&spec, &caller_fails), Some(Verdict::Failed));
    // Still running on b while a is done.
    assert_eq!(
        progress(&spec, &[value("a", 0.0), value("a", 0.0), value("b", 0.0)]),
        None
    );
}

#[test]
fn metrics_are_combined_worst_first() {
    let mut a = metric(Some("result < 1"), None);
    a.name = "a".into();
    a.count = 1;
    let mut b = a.clone();
    b.name = "b".into();
    b.consecutive_error_limit = 0;
    let mut c = a.clone();
    c.name = "c".into();
    c.failure_condition = Some(Condition::parse("result > 5").unwrap());
    let spec = AnalysisSpec {
        templates: vec![],
        metrics: vec![a, b, c],
    };
    let m = |metric: &str, v: Option<f64>| Measurement {
        metric: metric.into(),
        service: "s".into(),
        value: v,
        error: v.is_none().then(|| "timeout".to_string()),
    };
    let cases: &[(&[Measurement], Verdict)] = &[
        (
            &[m("a", Some(0.0)), m("b", Some(0.0)), m("c", Some(0.0))],
            Verdict::Successful,
        ),
        (
            &[m("a", Some(0.0)), m("b", Some(0.0)), m("c", Some(3.0))],
            Verdict::Inconclusive,
        ),
        (
            &[m("a", Some(0.0)), m("b", None), m("c", Some(3.0))],
            Verdict::Error,
        ),
        (
            &[m("a", Some(2.0)), m("b", None), m("c", Some(3.0))],
            Verdict::Failed,
        ),
        // A metric the spec does not name changes nothing; a metric never measured is inconclusive.
        (
            &[m("a", Some(0.0)), m("b", Some(0.0)), m("zz", Some(9.0))],
            Verdict::Inconclusive,
        ),
    ];
    for (ms, expected) in cases {
        assert_eq!(evaluate(&spec, ms), *expected, "{ms:?}");
    }
    assert_eq!(
        evaluate(&AnalysisSpec::default(), &[]),
        Verdict::Successful,
        "an analysis without metrics"
    );
}

#[test]
fn builtin_analysis_and_prometheus_placeholders() {
    let b = AnalysisSpec::builtin();
    assert_eq!(b.duration_seconds(), 30);
    assert_eq!(
        progress(
            &b,
            &[value("x", 0.01), value("x", 0.02), value("x", 0.0)].map(|mut m| {
                m.metric = "error-rate".into();
                m
            })
        ),
        Some(Verdict::Successful)
    );
    assert_eq!(
        Provider::query_for(
            "sum(rate(x{svc=\"{{service}}\"}[1m])) / {{args.service-name}}",
            "orders"
        ),
        "sum(rate(x{svc=\"orders\"}[1m])) / orders"
    );
    let json = serde_json::to_value(&b).unwrap();
    let back: AnalysisSpec = serde_json::from_value(json).unwrap();
    assert_eq!(back, b);
}
