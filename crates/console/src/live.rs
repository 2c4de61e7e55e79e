//! Live traffic: a thread of the console's own scrapes the gateway's and the
//! admission webhook's Prometheus `/metrics` every [`EVERY`] and keeps the
//! last [`KEEP`] points (ten minutes) of each series: requests per second,
//! error % and p99 latency per service and version, and admission decisions
//! per second by result. The pages draw them; nothing here blocks a request.
//!
//! Each point's rates come from the scrape [`RATE_OVER`] scrapes before it
//! and its own (a counter that went down means the process restarted and
//! counts from zero), the p99 from the histogram's buckets between them, as
//! Prometheus' `rate` over five seconds and `histogram_quantile` would
//! answer: a service asked twice a second would otherwise jump between 0, 2
//! and 4 requests per second with the moment of each scrape.

use orchestrator::metrics::{DURATION_BUCKET, REQUESTS_TOTAL, Sample, parse_text, quantile};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

/// How often the sampler scrapes.
pub const EVERY: Duration = Duration::from_secs(1);
/// Points kept per series: ten minutes at one a second.
pub const KEEP: usize = 600;
/// Scrapes a point's rates span.
pub const RATE_OVER: usize = 5;

/// The webhook's decision counter, labelled `result` (allow, deny, error).
const DECISIONS_TOTAL: &str = "bulkhead_admission_decisions_total";
/// The webhook's latency histogram, labelled `le`.
const ADMISSION_BUCKET: &str = "bulkhead_admission_duration_seconds_bucket";

/// One point of a service version's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Wall-clock time of the scrape, in ms since the epoch.
    pub at_ms: i64,
    pub rps: f64,
    /// 5xx answers among the requests since the previous scrape; none without requests.
    pub error_pct: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One point of the webhook's decisions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionPoint {
    pub at_ms: i64,
    /// Decisions per second by result.
    pub per_sec: BTreeMap<String, f64>,
    pub p99_ms: Option<f64>,
}

/// Cumulative counters of one series in one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub requests: f64,
    pub errors: f64,
    /// Cumulative `(le, count)`, sorted by `le`.
    pub buckets: Vec<(f64, f64)>,
}

/// The gateway's counters by `(service, version)`.
pub fn gateway_totals(samples: &[Sample]) -> HashMap<(String, String), Totals> {
    let mut totals: HashMap<(String, String), Totals> = HashMap::new();
    for s in samples {
        let (Some(service), Some(version)) = (s.labels.get("service"), s.labels.get("version"))
        else {
            continue;
        };
        // Requests the gateway could not route carry no service.
        if service.is_empty() {
            continue;
        }
        if s.name == REQUESTS_TOTAL {
            let t = totals
                .entry((service.clone(), version.clone()))
                .or_default();
            t.requests += s.value;
            if s.labels.get("code").map(String::as_str) == Some("5xx") {
                t.errors += s.value;
            }
        } else if s.name == DURATION_BUCKET
            && let Some(le) = s.labels.get("le").and_then(|l| parse_le(l))
        {
            totals
                .entry((service.clone(), version.clone()))
                .or_default()
                .buckets
                .push((le, s.value));
        }
    }
    for t in totals.values_mut() {
        t.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    totals
}

/// The webhook's decisions by result, and its latency histogram.
pub fn webhook_totals(samples: &[Sample]) -> (BTreeMap<String, f64>, Vec<(f64, f64)>) {
    let mut by_result = BTreeMap::new();
    let mut buckets = Vec::new();
    for s in samples {
        if s.name == DECISIONS_TOTAL
            && let Some(result) = s.labels.get("result")
        {
            *by_result.entry(result.clone()).or_insert(0.0) += s.value;
        } else if s.name == ADMISSION_BUCKET
            && let Some(le) = s.labels.get("le").and_then(|l| parse_le(l))
        {
            buckets.push((le, s.value));
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    (by_result, buckets)
}

fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        t => t.parse().ok(),
    }
}

/// Growth of a counter; one that went down restarted from zero.
fn grew(before: f64, after: f64) -> f64 {
    if after >= before {
        after - before
    } else {
        after
    }
}

/// The p99 between two cumulative histograms, in ms.
fn p99_between(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let restarted = after
        .last()
        .zip(before.last())
        .is_some_and(|(a, b)| a.1 < b.1);
    let buckets: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, count)| {
            let was = if restarted {
                0.0
            } else {
                before
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map_or(0.0, |(_, c)| *c)
            };
            (le, (count - was).max(0.0))
        })
        .collect();
    quantile(0.99, &buckets).map(|seconds| seconds * 1000.0)
}

/// The point between two scrapes `seconds` apart.
pub fn point(before: &Totals, after: &Totals, seconds: f64, at_ms: i64) -> Point {
    let requests = grew(before.requests, after.requests);
    let errors = grew(before.errors, after.errors).min(requests);
    Point {
        at_ms,
        rps: if seconds > 0.0 {
            requests / seconds
        } else {
            0.0
        },
        error_pct: (requests > 0.0).then(|| errors / requests * 100.0),
        p99_ms: if requests > 0.0 {
            p99_between(&before.buckets, &after.buckets)
        } else {
            None
        },
    }
}

/// One scrape's values, and when it was taken.
#[derive(Debug, Clone)]
struct Scraped<T> {
    monotonic_ms: u64,
    values: T,
}

/// What one scraped endpoint has given so far.
#[derive(Debug)]
pub struct Feed<K: Ord, P, T> {
    pub url: String,
    /// The last scrape's failure, if it failed.
    pub error: Option<String>,
    pub series: BTreeMap<K, VecDeque<P>>,
    /// Scrapes in a row without a request, by series.
    quiet: BTreeMap<K, usize>,
    /// The last scrapes, up to [`RATE_OVER`] of them, oldest first.
    history: VecDeque<Scraped<T>>,
}

impl<K: Ord, P, T> Feed<K, P, T> {
    fn new(url: &str) -> Self {
        Feed {
            url: url.to_string(),
            error: None,
            series: BTreeMap::new(),
            quiet: BTreeMap::new(),
            history: VecDeque::new(),
        }
    }

    /// The values of the last scrape.
    pub fn latest(&self) -> Option<&T> {
        self.history.back().map(|s| &s.values)
    }

    fn remember(&mut self, monotonic_ms: u64, values: T) {
        if self.history.len() == RATE_OVER {
            self.history.pop_front();
        }
        self.history.push_back(Scraped {
            monotonic_ms,
            values,
        });
        self.error = None;
    }
}

pub type GatewayFeed = Feed<(String, String), Point, HashMap<(String, String), Totals>>;
pub type WebhookFeed = Feed<String, DecisionPoint, (BTreeMap<String, f64>, Vec<(f64, f64)>)>;

fn push<P>(ring: &mut VecDeque<P>, point: P) {
    if ring.len() == KEEP {
        ring.pop_front();
    }
    ring.push_back(point);
}

impl GatewayFeed {
    /// Adds a scrape. A series starts with its first request and is dropped
    /// once it has had none for the whole window (or the gateway no longer
    /// counts it), so only busy pairs hold memory.
    pub fn add(
        &mut self,
        monotonic_ms: u64,
        at_ms: i64,
        totals: HashMap<(String, String), Totals>,
    ) {
        if let Some(last) = self.history.front() {
            let seconds = monotonic_ms.saturating_sub(last.monotonic_ms) as f64 / 1000.0;
            let empty = Totals::default();
            for quiet in self.quiet.values_mut() {
                *quiet += 1;
            }
            for (key, after) in &totals {
                let before = last.values.get(key).unwrap_or(&empty);
                let p = point(before, after, seconds, at_ms);
                if p.rps > 0.0 {
                    self.quiet.insert(key.clone(), 0);
                }
                if self.quiet.contains_key(key) {
                    push(self.series.entry(key.clone()).or_default(), p);
                }
            }
            self.quiet.retain(|_, quiet| *quiet < KEEP);
            let quiet = &self.quiet;
            self.series.retain(|key, _| quiet.contains_key(key));
        }
        self.remember(monotonic_ms, totals);
    }

    /// The series of one service, by version.
    pub fn of_service(&self, service: &str) -> Vec<(&str, &VecDeque<Point>)> {
        let from = (service.to_string(), String::new());
        self.series
            .range(from..)
            .take_while(|((s, _), _)| s == service)
            .map(|((_, v), ring)| (v.as_str(), ring))
            .collect()
    }
}

impl WebhookFeed {
    pub fn add(
        &mut self,
        monotonic_ms: u64,
        at_ms: i64,
        totals: (BTreeMap<String, f64>, Vec<(f64, f64)>),
    ) {
        if let Some(last) = self.history.front() {
            let seconds = monotonic_ms.saturating_sub(last.monotonic_ms) as f64 / 1000.0;
            let (before, before_buckets) = &last.values;
            let per_sec: BTreeMap<String, f64> = totals
                .0
                .iter()
                .map(|(result, after)| {
                    let grown = grew(before.get(result).copied().unwrap_or(0.0), *after);
                    (
                        result.clone(),
                        if seconds > 0.0 { grown / seconds } else { 0.0 },
                    )
                })
                .collect();
            let any = per_sec.values().any(|v| *v > 0.0);
            let p = DecisionPoint {
                at_ms,
                per_sec,
                p99_ms: if any {
                    p99_between(before_buckets, &totals.1)
                } else {
                    None
                },
            };
            push(self.series.entry(String::new()).or_default(), p);
        }
        self.remember(monotonic_ms, totals);
    }

    /// The decision points, oldest first.
    pub fn points(&self) -> impl Iterator<Item = &DecisionPoint> {
        self.series.values().flatten()
    }
}

/// Where the sampler reads.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The gateway's admin API and its token.
    pub gateway: Option<(String, Option<String>)>,
    /// The webhook's metrics URL and the CA file its certificate is checked
    /// against (read at every scrape: a restarted webhook has a new one).
    pub webhook: Option<(String, Option<PathBuf>)>,
}

/// The sampled series, shared by the sampler thread and the pages.
#[derive(Debug)]
pub struct Live {
    pub gateway: Option<RwLock<GatewayFeed>>,
    pub webhook: Option<RwLock<WebhookFeed>>,
}

impl Live {
    pub fn new(sources: &Sources) -> Live {
        Live {
            gateway: sources.gateway.as_ref().map(|(url, _)| {
                RwLock::new(Feed::new(&format!("{}/metrics", url.trim_end_matches('/'))))
            }),
            webhook: sources
                .webhook
                .as_ref()
                .map(|(url, _)| RwLock::new(Feed::new(url))),
        }
    }

    /// Reads the gateway's series under its lock.
    pub fn gateway<R>(&self, f: impl FnOnce(&GatewayFeed) -> R) -> Option<R> {
        self.gateway
            .as_ref()
            .map(|l| f(&l.read().unwrap_or_else(PoisonError::into_inner)))
    }

    /// Reads the webhook's series under its lock.
    pub fn webhook<R>(&self, f: impl FnOnce(&WebhookFeed) -> R) -> Option<R> {
        self.webhook
            .as_ref()
            .map(|l| f(&l.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

fn scrape(
    url: &str,
    headers: &[(&str, String)],
    tls: Option<&http_client::Tls>,
) -> Result<Vec<Sample>, String> {
    let parsed = http_client::Url::parse(url)?;
    let response =
        http_client::request_with("GET", &parsed, headers, b"", Duration::from_secs(2), tls)
            .map_err(|e| e.to_string())?;
    if response.status != 200 {
        return Err(format!("{url} answered {}", response.status));
    }
    Ok(parse_text(&String::from_utf8_lossy(&response.body)))
}

/// Starts the sampler thread; it ends when the console drops `live`.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn(live: &Arc<Live>, sources: Sources) -> std::io::Result<()> {
    let weak: Weak<Live> = Arc::downgrade(live);
    std::thread::Builder::new()
        .name("console-sampler".into())
        .spawn(move || {
            while let Some(live) = weak.upgrade() {
                sample_once(&live, &sources);
                drop(live);
                std::thread::sleep(EVERY);
            }
        })?;
    Ok(())
}

fn sample_once(live: &Live, sources: &Sources) {
    if let (Some(feed), Some((_, token))) = (&live.gateway, &sources.gateway) {
        let url = feed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .url
            .clone();
        let headers: Vec<(&str, String)> = token
            .as_deref()
            .map(http_client::bearer)
            .into_iter()
            .collect();
        let result = scrape(&url, &headers, None);
        let mut feed = feed.write().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(samples) => feed.add(
                clock::monotonic_ms(),
                clock::now_ms(),
                gateway_totals(&samples),
            ),
            Err(e) => feed.error = Some(e),
        }
    }
    if let (Some(feed), Some((url, ca))) = (&live.webhook, &sources.webhook) {
        let tls = match ca {
            Some(path) => std::fs::read(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))
                .and_then(|pem| {
                    http_client::Tls::with_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
                })
                .map(Some),
            None => Ok(None),
        };
        let result = tls.and_then(|tls| scrape(url, &[], tls.as_ref()));
        let mut feed = feed.write().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(samples) => feed.add(
                clock::monotonic_ms(),
                clock::now_ms(),
                webhook_totals(&samples),
            ),
            Err(e) => feed.error = Some(e),
        }
    }
}

#[cfg(test)]
mod tests;
