//! Running an analysis: every metric is measured on every service the
//! analysis covers, `count` times, `interval` apart, through its provider;
//! the verdict comes from `rollout::progress` (as soon as a limit is crossed)
//! or `rollout::evaluate` (once every measurement is in).

use crate::metrics::{self, Scrape};
use crate::state::now_us;
use rollout::{AnalysisSpec, Measurement, MetricKind, Provider, Verdict};
use std::time::Duration;

/// Where the gateway provider reads: the gateway's Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources {
    pub gateway_metrics: Option<String>,
    pub gateway_token: Option<String>,
}

impl Sources {
    fn scrape(&self) -> Result<Scrape, String> {
        let url = self
            .gateway_metrics
            .as_deref()
            .ok_or("no gateway metrics endpoint configured (--gateway-metrics)".to_string())?;
        Scrape::take(url, self.gateway_token.as_deref()).map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
struct MetricRun {
    next_us: i64,
    taken: u32,
    /// The previous scrape of the gateway, for metrics it provides.
    previous: Option<Result<Scrape, String>>,
}

/// One analysis in progress.
#[derive(Debug)]
pub struct AnalysisRun {
    pub id: String,
    /// The row of the `Analyze` action in the state database.
    pub action: i64,
    spec: AnalysisSpec,
    services: Vec<String>,
    /// The value of the version label of the pool measured (the preview), when only one pool is.
    version: Option<String>,
    metrics: Vec<MetricRun>,
    measurements: Vec<Measurement>,
}

impl AnalysisRun {
    /// Starts measuring: takes the gateway baseline now; the first
    /// measurement of each metric is due one interval later.
    pub fn start(
        id: String,
        action: i64,
        spec: AnalysisSpec,
        services: Vec<String>,
        version: Option<String>,
        sources: &Sources,
    ) -> AnalysisRun {
        let now = now_us();
        let metrics = spec
            .metrics
            .iter()
            .map(|m| MetricRun {
                next_us: now + interval_us(m.interval_seconds),
                taken: 0,
                previous: matches!(m.provider, Provider::Gateway { .. }).then(|| sources.scrape()),
            })
            .collect();
        AnalysisRun {
            id,
            action,
            spec,
            services,
            version,
            metrics,
            measurements: Vec::new(),
        }
    }

    /// When the next measurement is due (microseconds since the epoch).
    pub fn next_due_us(&self) -> Option<i64> {
        self.spec
            .metrics
            .iter()
            .zip(&self.metrics)
            .filter(|(m, r)| r.taken < m.count.max(1))
            .map(|(_, r)| r.next_us)
            .min()
    }

    /// Takes every measurement that is due; returns the verdict once it is decided.
    pub fn poll(&mut self, sources: &Sources) -> Option<(Verdict, Vec<Measurement>)> {
        let now = now_us();
        for (metric, run) in self.spec.metrics.iter().zip(self.metrics.iter_mut()) {
            if run.taken >= metric.count.max(1) || run.next_us > now {
                continue;
            }
            let current =
                matches!(metric.provider, Provider::Gateway { .. }).then(|| sources.scrape());
            for service in &self.services {
                let value = measure(
                    &metric.provider,
                    service,
                    self.version.as_deref(),
                    run.previous.as_ref(),
                    current.as_ref(),
                    metric.interval_seconds,
                );
                self.measurements.push(Measurement {
                    metric: metric.name.clone(),
                    service: service.clone(),
                    value: value.as_ref().ok().copied(),
                    error: value.err(),
                });
            }
            if current.is_some() {
                run.previous = current;
            }
            run.taken += 1;
            run.next_us += interval_us(metric.interval_seconds);
        }
        if let Some(verdict) = rollout::progress(&self.spec, &self.measurements) {
            return Some((verdict, self.measurements.clone()));
        }
        let all_taken = self
            .spec
            .metrics
            .iter()
            .zip(&self.metrics)
            .all(|(m, r)| r.taken >= m.count.max(1));
        all_taken.then(|| {
            (
                rollout::evaluate(&self.spec, &self.measurements),
                self.measurements.clone(),
            )
        })
    }
}

fn interval_us(seconds: u64) -> i64 {
    i64::try_from(seconds.max(1).saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

/// One value from one provider.
fn measure(
    provider: &Provider,
    service: &str,
    version: Option<&str>,
    previous: Option<&Result<Scrape, String>>,
    current: Option<&Result<Scrape, String>>,
    interval_seconds: u64,
) -> Result<f64, String> {
    match provider {
        Provider::Gateway { metric } => {
            let (Some(previous), Some(current)) = (previous, current) else {
                return Err("no gateway scrape".to_string());
            };
            let (previous, current) = (previous.as_ref()?, current.as_ref()?);
            match metric {
                MetricKind::ErrorRate => metrics::error_rate(previous, current, service, version),
                MetricKind::LatencyP99 => {
                    metrics::latency_quantile_ms(previous, current, service, version, 0.99)
                }
            }
            .map_err(|e| e.to_string())
        }
        Provider::Prometheus { address, query } => {
            metrics::prometheus_query(address, &Provider::query_for(query, service))
                .map_err(|e| e.to_string())
        }
        Provider::Traces { address, metric } => {
            let lookback = Duration::from_secs(interval_seconds.max(1));
            let stats =
                metrics::trace_stats(address, service, lookback).map_err(|e| e.to_string())?;
            if stats.spans == 0 {
                return Err(format!("no spans of {service} in the window"));
            }
            Ok(match metric {
                MetricKind::ErrorRate => stats.error_rate,
                MetricKind::LatencyP99 => stats.p99_ms,
            })
        }
    }
}
