//! Metric providers for analysis gates: the gateway's Prometheus `/metrics`
//! (scraped, and compared between two scrapes), a Prometheus HTTP API
//! (`/api/v1/query`), and the trace store's per-service statistics.

use http_client::{Url, encode, request};
use std::collections::BTreeMap;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);
/// The gateway's request counter, labelled `service`, `version`, `code` (`2xx` .. `5xx`).
pub const REQUESTS_TOTAL: &str = "bulkhead_gateway_requests_total";
/// The gateway's latency histogram, labelled `service`, `version`, `le`.
pub const DURATION_BUCKET: &str = "bulkhead_gateway_request_duration_seconds_bucket";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The HTTP error names the URL itself.
    #[error("{error}")]
    Http {
        url: String,
        /// Shown in this error's message, not as its cause: the HTTP error
        /// already names its own cause, which would print twice.
        error: http_client::HttpError,
    },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: {detail}")]
    Answer { url: String, detail: String },
    #[error("no requests to {service} in the window")]
    NoTraffic { service: String },
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments and malformed
/// lines are skipped: a scrape is judged by the series it has).
pub fn parse_text(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once([' ', '\t'])?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name: name.trim().to_string(),
        labels,
        value: parse_float(value)?,
    })
}

/// Reads `k="v",...}` and returns the labels and what follows the `}`.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once('=')?;
        let mut chars = rest.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key.trim().to_string(), value);
        text = &rest[end + 2..];
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

fn get(url_text: &str, headers: &[(&str, String)]) -> Result<Vec<u8>, MetricsError> {
    let url = Url::parse(url_text).map_err(|detail| MetricsError::Answer {
        url: url_text.to_string(),
        detail,
    })?;
    let response =
        request("GET", &url, headers, b"", TIMEOUT).map_err(|error| MetricsError::Http {
            url: url_text.to_string(),
            error,
        })?;
    if response.status != 200 {
        return Err(MetricsError::Status {
            url: url_text.to_string(),
            status: response.status,
            body: String::from_utf8_lossy(&response.body).trim().to_string(),
        });
    }
    Ok(response.body)
}

/// A scrape of the gateway's `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// Scrapes `url` (the gateway's metrics endpoint), with a bearer token when given.
    ///
    /// # Errors
    /// When the endpoint cannot be reached or answers with an error.
    pub fn take(url: &str, token: Option<&str>) -> Result<Scrape, MetricsError> {
        let headers: Vec<(&str, String)> = token.map(http_client::bearer).into_iter().collect();
        let body = get(url, &headers)?;
        Ok(Scrape::from_text(&String::from_utf8_lossy(&body)))
    }

    pub fn from_text(text: &str) -> Scrape {
        Scrape {
            samples: parse_text(text),
        }
    }

    /// Sums the samples of `name` for the service (and version, when given),
    /// grouped by the value of `by`.
    fn sum_by(
        &self,
        name: &str,
        service: &str,
        version: Option<&str>,
        by: &str,
    ) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for s in &self.samples {
            let matches = s.name == name
                && s.labels.get("service").map(String::as_str) == Some(service)
                && version.is_none_or(|v| s.labels.get("version").map(String::as_str) == Some(v));
            if matches {
                let key = s.labels.get(by).cloned().unwrap_or_default();
                *sums.entry(key).or_insert(0.0) += s.value;
            }
        }
        sums
    }
}

/// The counters' growth from `before` to `after`; a counter that went down
/// (the gateway restarted) counts from zero.
fn deltas(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, a)| {
            let b = before.get(k).copied().unwrap_or(0.0);
            (k.clone(), if a >= &b { a - b } else { *a })
        })
        .collect()
}

/// The share of the service's requests answered with a 5xx status between two scrapes.
///
/// # Errors
/// [`MetricsError::NoTraffic`] when the service had no request in the window.
pub fn error_rate(
    before: &Scrape,
    after: &Scrape,
    service: &str,
    version: Option<&str>,
) -> Result<f64, MetricsError> {
    let d = deltas(
        &before.sum_by(REQUESTS_TOTAL, service, version, "code"),
        &after.sum_by(REQUESTS_TOTAL, service, version, "code"),
    );
    let total: f64 = d.values().sum();
    if total <= 0.0 {
        return Err(MetricsError::NoTraffic {
            service: service.to_string(),
        });
    }
    Ok(d.get("5xx").copied().unwrap_or(0.0) / total)
}

/// The `q` quantile (0.99 for p99) of the service's request latency between
/// two scrapes, in milliseconds, interpolated within the bucket as
/// Prometheus' `histogram_quantile` does.
///
/// # Errors
/// [`MetricsError::NoTraffic`] when the service had no request in the window.
pub fn latency_quantile_ms(
    before: &Scrape,
    after: &Scrape,
    service: &str,
    version: Option<&str>,
    q: f64,
) -> Result<f64, MetricsError> {
    let d = deltas(
        &before.sum_by(DURATION_BUCKET, service, version, "le"),
        &after.sum_by(DURATION_BUCKET, service, version, "le"),
    );
    let mut buckets: Vec<(f64, f64)> = d
        .iter()
        .filter_map(|(le, count)| Some((parse_float(le)?, *count)))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    quantile(q, &buckets)
        .map(|seconds| seconds * 1000.0)
        .ok_or_else(|| MetricsError::NoTraffic {
            service: service.to_string(),
        })
}

/// `histogram_quantile` over cumulative `(le, count)` buckets sorted by `le`
/// (`+Inf` last); `None` when they count nothing.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                // Like Prometheus: the quantile is the highest finite bound.
                return Some(lower.0);
            }
            let width = count - lower.1;
            let within = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

/// Runs an instant query on a Prometheus HTTP API (`address` is its base
/// URL) and returns the first sample's value (a scalar's value for a scalar).
///
/// # Errors
/// When Prometheus cannot be reached, reports an error, or the result is empty.
pub fn prometheus_query(address: &str, query: &str) -> Result<f64, MetricsError> {
    let url = format!(
        "{}/api/v1/query?query={}",
        address.trim_end_matches('/'),
        encode(query)
    );
    let body = get(&url, &[])?;
    let bad = |detail: String| MetricsError::Answer {
        url: url.clone(),
        detail,
    };
    let answer: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| bad(format!("not JSON: {e}")))?;
    if answer["status"] != "success" {
        return Err(bad(format!(
            "{}: {}",
            answer["errorType"].as_str().unwrap_or("error"),
            answer["error"].as_str().unwrap_or("no message")
        )));
    }
    let data = &answer["data"];
    let pair = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => &data["result"][0]["value"],
        other => {
            return Err(bad(format!(
                "result type {other:?}: want a vector or a scalar"
            )));
        }
    };
    if pair.is_null() {
        return Err(bad(format!("the query {query:?} returned no sample")));
    }
    pair[1]
        .as_str()
        .and_then(parse_float)
        .ok_or_else(|| bad(format!("sample {pair} has no numeric value")))
}

/// The trace store's statistics for one service over a lookback window.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ServiceStats {
    pub service: String,
    pub spans: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `GET {address}/api/bulkhead/service-stats?service=NAME&lookback=MS` on the collector.
///
/// # Errors
/// When the collector cannot be reached or answers something else than the stats.
pub fn trace_stats(
    address: &str,
    service: &str,
    lookback: Duration,
) -> Result<ServiceStats, MetricsError> {
    let url = format!(
        "{}/api/bulkhead/service-stats?service={}&lookback={}",
        address.trim_end_matches('/'),
        encode(service),
        lookback.as_millis()
    );
    let body = get(&url, &[])?;
    serde_json::from_slice(&body).map_err(|e| MetricsError::Answer {
        url,
        detail: format!("not service stats: {e}"),
    })
}

#[cfg(test)]
mod tests;
