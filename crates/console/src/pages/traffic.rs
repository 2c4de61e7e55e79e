//! The live parts drawn from the sampler's series (`live`): a service's
//! traffic per version (requests/s, error %, p99), on its page and on the
//! rollouts it is part of, and the admission webhook's decisions on the
//! policy page.

use crate::Ctx;
use crate::live::{self, GatewayFeed, Point, WebhookFeed};
use crate::svg;
use crate::web::{enc, esc, table};
use serde_json::{Value as Json, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;

const WINDOW_MS: i64 = live::KEEP as i64 * live::EVERY.as_millis() as i64;

/// How often a live part is fetched again by the page, in ms.
pub const REFRESH_MS: u64 = 2000;

fn value(v: Option<f64>, unit: &str) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}{unit}"))
}

/// A service's three charts and its versions' latest numbers, from the gateway's feed.
fn service_charts(feed: &GatewayFeed, service: &str, id: &str, now_ms: i64) -> (String, Json) {
    let versions = feed.of_service(service);
    let pick = |f: fn(&Point) -> Option<f64>| -> Vec<(String, Vec<(i64, f64)>)> {
        versions
            .iter()
            .map(|(v, ring)| {
                (
                    v.to_string(),
                    ring.iter().filter_map(|p| Some((p.at_ms, f(p)?))).collect(),
                )
            })
            .collect()
    };
    let mut html = String::new();
    if let Some(e) = &feed.error {
        let _ = write!(
            html,
            "<p class=\"error\">The last scrape of {} failed: {}</p>",
            esc(&feed.url),
            esc(e)
        );
    }
    if versions.is_empty() {
        let _ = write!(
            html,
            "<p class=\"empty\">No request to {} through the gateway in the last {} minutes.</p>",
            esc(service),
            WINDOW_MS / 60_000
        );
    } else {
        html.push_str("<div class=\"charts\">");
        html.push_str(&svg::line_chart(
            "requests per second",
            "req/s",
            &pick(|p| Some(p.rps)),
            now_ms,
            WINDOW_MS,
        ));
        html.push_str(&svg::line_chart(
            "errors",
            "% 5xx",
            &pick(|p| p.error_pct),
            now_ms,
            WINDOW_MS,
        ));
        html.push_str(&svg::line_chart(
            "p99 latency",
            "ms",
            &pick(|p| p.p99_ms),
            now_ms,
            WINDOW_MS,
        ));
        html.push_str("</div>");
        let rows: Vec<Vec<String>> = versions
            .iter()
            .map(|(v, ring)| {
                let last = ring.back();
                vec![
                    esc(v),
                    value(last.map(|p| p.rps), ""),
                    value(last.and_then(|p| p.error_pct), "%"),
                    value(last.and_then(|p| p.p99_ms), " ms"),
                    ring.len().to_string(),
                ]
            })
            .collect();
        html.push_str(&table(
            id,
            &["VERSION", "REQ/S", "ERRORS", "P99", "POINTS"],
            &rows,
        ));
    }
    let value = json!({
        "service": service,
        "window_ms": WINDOW_MS,
        "every_ms": live::EVERY.as_millis() as u64,
        "scrape_error": feed.error,
        "versions": versions.iter().map(|(v, ring)| json!({"version": v, "points": ring})).collect::<Vec<_>>(),
    });
    (html, value)
}

/// The traffic part of a service page: refreshed by itself from
/// `/services/NAME/traffic`, so the rest of the page is not asked again.
pub fn service_part(ctx: &Ctx, service: &str) -> (String, Json) {
    let now = clock::now_ms();
    let Some((inner, value)) = ctx
        .live
        .gateway(|feed| service_charts(feed, service, "traffic-versions", now))
    else {
        return (
            "<p>Start the console with --gateway-admin URL to see the traffic.</p>".into(),
            Json::Null,
        );
    };
    (
        format!(
            "<div id=\"traffic\" data-refresh=\"{REFRESH_MS}\" data-src=\"/services/{}/traffic\">{inner}</div>",
            enc(service)
        ),
        value,
    )
}

/// The traffic of each of a rollout's services, inside the rollout page's own refreshing part.
pub fn rollout_part(ctx: &Ctx, services: &[String]) -> (String, Json) {
    let now = clock::now_ms();
    let unique: BTreeSet<&String> = services.iter().collect();
    let drawn = ctx.live.gateway(|feed| {
        let mut html = String::from("<div id=\"rollout-traffic\">");
        let mut values = serde_json::Map::new();
        for (i, service) in unique.iter().enumerate() {
            let (part, value) = service_charts(feed, service, &format!("traffic-{i}"), now);
            let _ = write!(
                html,
                "<h3><a href=\"/services/{}\">{}</a></h3>{part}",
                enc(service),
                esc(service)
            );
            values.insert(service.to_string(), value);
        }
        html.push_str("</div>");
        (html, Json::Object(values))
    });
    drawn.unwrap_or_else(|| {
        (
            "<p>Start the console with --gateway-admin URL to see the traffic during the rollout.</p>"
                .into(),
            Json::Null,
        )
    })
}

fn admission(feed: &WebhookFeed, now_ms: i64) -> (String, Json) {
    let mut html = String::new();
    if let Some(e) = &feed.error {
        let _ = write!(
            html,
            "<p class=\"error\">The last scrape of {} failed: {}</p>",
            esc(&feed.url),
            esc(e)
        );
    }
    let points: Vec<&live::DecisionPoint> = feed.points().collect();
    let results: BTreeSet<&String> = feed
        .latest()
        .map(|(by, _)| by.keys().collect())
        .unwrap_or_default();
    let last = points.last();
    let rows: Vec<Vec<String>> = feed
        .latest()
        .map(|(by, _)| {
            by.iter()
                .map(|(result, total)| {
                    vec![
                        esc(result),
                        format!("{total:.0}"),
                        value(last.and_then(|p| p.per_sec.get(result).copied()), "/s"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    html.push_str(&table(
        "decisions",
        &["RESULT", "SINCE THE WEBHOOK STARTED", "NOW"],
        &rows,
    ));
    let per_result: Vec<(String, Vec<(i64, f64)>)> = results
        .iter()
        .map(|r| {
            (
                r.to_string(),
                points
                    .iter()
                    .map(|p| (p.at_ms, p.per_sec.get(*r).copied().unwrap_or(0.0)))
                    .collect(),
            )
        })
        .collect();
    let p99: Vec<(i64, f64)> = points
        .iter()
        .filter_map(|p| Some((p.at_ms, p.p99_ms?)))
        .collect();
    html.push_str("<div class=\"charts\">");
    html.push_str(&svg::line_chart(
        "admission decisions",
        "per second",
        &per_result,
        now_ms,
        WINDOW_MS,
    ));
    html.push_str(&svg::line_chart(
        "p99 decision time",
        "ms",
        &[("all".to_string(), p99)],
        now_ms,
        WINDOW_MS,
    ));
    html.push_str("</div>");
    let value = json!({
        "url": feed.url,
        "scrape_error": feed.error,
        "totals": feed.latest().map(|(by, _)| by),
        "window_ms": WINDOW_MS,
        "points": points,
    });
    (html, value)
}

/// The policy page's admission decisions, refreshed by themselves from `/policy/admission`.
pub fn admission_part(ctx: &Ctx) -> (String, Json) {
    let now = clock::now_ms();
    match ctx.live.webhook(|feed| admission(feed, now)) {
        Some((inner, value)) => (
            format!(
                "<div id=\"admission\" data-refresh=\"{REFRESH_MS}\" data-src=\"/policy/admission\">{inner}</div>"
            ),
            value,
        ),
        None => (
            "<p>Start the console with --webhook-metrics URL (the webhook's /metrics) to see its decisions.</p>".into(),
            Json::Null,
        ),
    }
}
