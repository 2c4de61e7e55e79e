use crate::Outcome;
use crate::metrics::Metrics;
use crate::tls::SelfSigned;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::time::Duration;

#[test]
fn self_signed_certificate_makes_a_server_config() {
    let cert = SelfSigned::generate(&["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("generate");
    assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let bundle = cert.ca_bundle();
    assert_eq!(
        STANDARD.decode(&bundle).expect("padded standard base64"),
        cert.cert_pem.as_bytes()
    );
    cert.server_config()
        .expect("rustls accepts the generated key");
    assert!(SelfSigned::generate(&["b\u{e4}d.example".to_string()]).is_err());
}

#[test]
fn server_config_names_the_file_without_pem() {
    let error = crate::tls::server_config(b"nothing", "cert.pem", b"", "key.pem")
        .expect_err("no certificate");
    assert!(
        error
            .to_string()
            .starts_with("cert.pem: no PEM certificate found"),
        "{error}"
    );
}

#[test]
fn metrics_render_counters_and_a_cumulative_histogram() {
    let metrics = Metrics::default();
    metrics.record(Outcome::Allow, Duration::from_micros(300));
    metrics.record(Outcome::Allow, Duration::from_millis(3));
    metrics.record(Outcome::Deny, Duration::from_millis(3));
    metrics.record(Outcome::Error, Duration::from_secs(60));
    let text = metrics.render();
    for line in [
        "bulkhead_admission_decisions_total{result=\"allow\"} 2",
        "bulkhead_admission_decisions_total{result=\"deny\"} 1",
        "bulkhead_admission_decisions_total{result=\"error\"} 1",
        "bulkhead_admission_duration_seconds_bucket{le=\"0.0005\"} 1",
        "bulkhead_admission_duration_seconds_bucket{le=\"0.0025\"} 1",
        "bulkhead_admission_duration_seconds_bucket{le=\"0.005\"} 3",
        "bulkhead_admission_duration_seconds_bucket{le=\"10\"} 3",
        "bulkhead_admission_duration_seconds_bucket{le=\"+Inf\"} 4",
        "bulkhead_admission_duration_seconds_count 4",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn ca_bundle_is_given_only_for_a_chain_valid_for_the_service_name() {
    let host = "bulkhead-admission.bulkhead-system.svc";
    let cert = SelfSigned::generate(&[host.to_string()]).expect("generate");
    let pem = cert.cert_pem.as_bytes();
    let bundle =
        crate::tls::ca_bundle_for(pem, "tls.crt", pem, "tls.crt", host).expect("valid for host");
    assert_eq!(bundle, cert.ca_bundle());
    let other = SelfSigned::generate(&["elsewhere.svc".to_string()]).expect("generate");
    for (cert_pem, ca_pem, name, expect) in [
        (
            pem,
            pem,
            "bulkhead-admission.default.svc",
            "tls.crt is not valid for bulkhead-admission.default.svc",
        ),
        (
            pem,
            other.cert_pem.as_bytes(),
            host,
            "tls.crt is not valid for bulkhead-admission.bulkhead-system.svc",
        ),
        (
            b"".as_slice(),
            pem,
            host,
            "tls.crt: no PEM certificate found",
        ),
    ] {
        let error = crate::tls::ca_bundle_for(cert_pem, "tls.crt", ca_pem, "ca.crt", name)
            .expect_err(expect);
        assert!(error.to_string().starts_with(expect), "{error}");
    }
}
