use super::*;

#[test]
fn no_faults_by_default() {
    let faults = Faults::default();
    let rng = Rng::seeded(1, 2);
    for _ in 0..100 {
        assert_eq!(
            faults.decide(&rng),
            Decision {
                error: false,
                delay: Duration::ZERO
            }
        );
    }
    assert!(!faults.fails_call("http://127.0.0.1:1/"));
}

#[test]
fn decisions_repeat_with_the_seed() {
    let faults = Faults {
        error_rate: 0.3,
        latency_ms: 5,
        latency_jitter_ms: 20,
        jitter: Jitter::Exponential,
        ..Faults::default()
    };
    let run = |seed| {
        let rng = Rng::seeded(seed, 2);
        (0..200).map(|_| faults.decide(&rng)).collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    let decisions = run(7);
    let errors = decisions.iter().filter(|d| d.error).count();
    // 200 draws at 0.3: far outside this band only if the draws are not uniform.
    assert!((30..=90).contains(&errors), "{errors} errors of 200");
    for d in &decisions {
        assert!(d.delay >= Duration::from_millis(5), "{d:?}");
        assert!(d.delay <= Duration::from_millis(5 + 200), "{d:?}");
    }
}

#[test]
fn error_rate_bounds() {
    let rng = Rng::seeded(3, 2);
    let always = Faults {
        error_rate: 1.0,
        ..Faults::default()
    };
    assert!((0..100).all(|_| always.decide(&rng).error));
    let uniform = Faults {
        latency_ms: 10,
        latency_jitter_ms: 10,
        ..Faults::default()
    };
    for _ in 0..100 {
        let d = uniform.decide(&rng).delay;
        assert!(
            d >= Duration::from_millis(10) && d < Duration::from_millis(20),
            "{d:?}"
        );
    }
}

#[test]
fn validation_names_the_problem() {
    let check = |json: &str, expect: Result<(), &str>| {
        let faults: Faults = serde_json::from_str(json).expect(json);
        assert_eq!(faults.validate(), expect.map_err(str::to_string), "{json}");
    };
    check(r#"{}"#, Ok(()));
    check(r#"{"error_rate": 1.0, "not_ready": true}"#, Ok(()));
    check(
        r#"{"error_rate": 1.5}"#,
        Err("error_rate must be between 0.0 and 1.0, got 1.5"),
    );
    check(
        r#"{"error_rate": -0.1}"#,
        Err("error_rate must be between 0.0 and 1.0, got -0.1"),
    );
    check(
        r#"{"latency_ms": 600001}"#,
        Err("latency_ms and latency_jitter_ms must be at most 600000"),
    );
    // Typos are refused rather than ignored.
    let typo = serde_json::from_str::<Faults>(r#"{"eror_rate": 1.0}"#).unwrap_err();
    assert!(
        typo.to_string().contains("unknown field `eror_rate`"),
        "{typo}"
    );
    let jitter = serde_json::from_str::<Faults>(r#"{"jitter": "pareto"}"#).unwrap_err();
    assert!(jitter.to_string().contains("unknown variant"), "{jitter}");
}

#[test]
fn fail_calls_match_the_configured_url() {
    let faults = Faults {
        fail_calls: vec!["http://127.0.0.1:4001/".into()],
        ..Faults::default()
    };
    assert!(faults.fails_call("http://127.0.0.1:4001/"));
    assert!(!faults.fails_call("http://127.0.0.1:4002/"));
    assert_eq!(faults.check_calls(["http://127.0.0.1:4001/"]), Ok(()));
    assert_eq!(
        faults.check_calls(["http://127.0.0.1:4002/", "http://b/"]),
        Err(r#"fail_calls names "http://127.0.0.1:4001/", which is not one of the calls (http://127.0.0.1:4002/, http://b/)"#.to_string())
    );
    assert_eq!(
        faults.check_calls([]),
        Err(
            r#"fail_calls names "http://127.0.0.1:4001/", which is not one of the calls (none)"#
                .to_string()
        )
    );
}

#[test]
fn constant_time_comparison() {
    assert!(constant_time_eq(b"s3cret", b"s3cret"));
    assert!(!constant_time_eq(b"s3cret", b"s3creT"));
    assert!(!constant_time_eq(b"s3cre", b"s3cret"));
    assert!(!constant_time_eq(b"s3cret!", b"s3cret"));
    assert!(!constant_time_eq(b"", b"s3cret"));
    assert!(constant_time_eq(b"", b""));
}
