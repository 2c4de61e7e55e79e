//! Impact analysis: what a change breaks, who it reaches, how to roll it back
//! and what to watch — computed from the fleet graph, with evidence.
//!
//! Every impact question lives here: [`services`] (changing services: their
//! transitive callers) and [`image`] (changing a base image: the images built
//! on it and the services built on or running those).
//!
//! Pure: a [`model::Fleet`] (and, for images, the `images` crate's catalog)
//! and a change in, a [`model::ImpactReport`] out.

mod image;

pub use image::{image, image_report};

use model::{
    Change, Evidence, Finding, Fleet, ImpactReason, ImpactReport, ImpactedService, Plan, Risk,
    Rollback, Service, Signal, Step, Wave,
};
use std::collections::{BTreeMap, BTreeSet};

/// A change named services the fleet does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service(s): {}{}", .unknown.join(", "), suggestion(.suggestions))]
pub struct UnknownServices {
    pub unknown: Vec<String>,
    /// Close matches among the fleet's services.
    pub suggestions: Vec<String>,
}

fn suggestion(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", suggestions.join(", "))
    }
}

/// The blast radius of changing `names` together: the services themselves,
/// every transitive caller, their owners, tiers and public routes, and the
/// services provably untouched (nothing they call reaches a changed service).
///
/// # Errors
/// When a name is not a service of the fleet.
pub fn services(fleet: &Fleet, names: &[String]) -> Result<ImpactReport, UnknownServices> {
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| fleet.service(n).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        let suggestions = unknown
            .iter()
            .flat_map(|u| {
                fleet
                    .services
                    .iter()
                    .filter(move |s| s.name.contains(u.as_str()) || u.contains(s.name.as_str()))
            })
            .map(|s| s.name.clone())
            .take(5)
            .collect();
        return Err(UnknownServices {
            unknown,
            suggestions,
        });
    }
    let changed: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let callers = fleet.transitive_callers(&changed);

    let mut who = Vec::new();
    for name in &changed {
        let service = fleet.service(name).expect("checked above");
        who.push(impacted(service, ImpactReason::Changed, vec![]));
    }
    let mut by_distance: Vec<(&str, u32, &str)> =
        callers.iter().map(|(n, (d, via))| (*n, *d, *via)).collect();
    by_distance.sort_by_key(|(n, d, _)| (*d, *n));
    for (name, distance, via) in by_distance {
        let Some(service) = fleet.service(name) else {
            continue;
        };
        let evidence = service
            .dependencies
            .iter()
            .filter(|d| d.target == via)
            .map(|d| Evidence {
                statement: format!("{name} depends on {via}"),
                at: Some(d.at.clone()),
            })
            .take(3)
            .collect();
        who.push(impacted(
            service,
            ImpactReason::Calls {
                distance,
                via: via.to_string(),
            },
            evidence,
        ));
    }

    let reached: BTreeSet<&str> = who.iter().map(|w| w.service.as_str()).collect();
    let untouched = fleet
        .services
        .iter()
        .map(|s| s.name.clone())
        .filter(|n| !reached.contains(n.as_str()))
        .collect();

    Ok(ImpactReport {
        change: Change::ServiceUpgrade {
            services: changed.iter().map(|s| s.to_string()).collect(),
            to_version: None,
        },
        what_breaks: changed
            .iter()
            .filter_map(|n| fleet.service(n))
            .map(|s| what_breaks(fleet, s))
            .collect(),
        who_is_impacted: who,
        rollback: rollback(fleet, &changed),
        monitoring: monitoring(&changed, &callers),
        plan: plan(fleet, &changed),
        untouched,
    })
}

fn impacted(service: &Service, reason: ImpactReason, evidence: Vec<Evidence>) -> ImpactedService {
    ImpactedService {
        service: service.name.clone(),
        owner: service.owner.clone(),
        tier: service.tier,
        reason,
        public_routes: service
            .public_routes()
            .map(|r| format!("{}{}", r.host.as_deref().unwrap_or("*"), r.path))
            .collect(),
        evidence,
    }
}

fn what_breaks(fleet: &Fleet, service: &Service) -> Finding {
    let direct_callers = fleet
        .callers()
        .get(service.name.as_str())
        .map_or(0, BTreeSet::len);
    let mut evidence: Vec<Evidence> = service
        .declared_at
        .iter()
        .take(2)
        .map(|at| Evidence {
            statement: format!("{} is declared here", service.name),
            at: Some(at.clone()),
        })
        .collect();
    for route in service.public_routes() {
        evidence.push(Evidence {
            statement: format!(
                "public route {}{} reaches it directly",
                route.host.as_deref().unwrap_or("*"),
                route.path
            ),
            at: Some(route.at.clone()),
        });
    }
    for unresolved in &service.unresolved_dependencies {
        evidence.push(Evidence {
            statement: format!(
                "it calls {}, which is not in the fleet: verify it before the rollout",
                unresolved.target
            ),
            at: Some(unresolved.at.clone()),
        });
    }
    let risk = if direct_callers > 0 || service.public_routes().next().is_some() {
        Risk::Risky
    } else {
        Risk::Safe
    };
    Finding {
        subject: service.name.clone(),
        risk,
        summary: format!(
            "a new version replaces the live pool; its contract is used by {direct_callers} direct caller(s){}",
            if service.public_routes().next().is_some() {
                " and public traffic"
            } else {
                ""
            }
        ),
        evidence,
    }
}

fn rollback(fleet: &Fleet, changed: &[&str]) -> Rollback {
    let mut evidence = Vec::new();
    let mut all_blue_green = true;
    for name in changed {
        let Some(service) = fleet.service(name) else {
            continue;
        };
        let selects_version = fleet
            .workloads
            .iter()
            .filter(|w| w.service_name() == *name)
            .any(|w| w.pod_labels.contains_key("version"));
        if selects_version {
            evidence.push(Evidence {
                statement: format!("{name}: pods carry a version label; switch the Service selector back to the previous version"),
                at: service.declared_at.first().cloned(),
            });
        } else {
            all_blue_green = false;
            evidence.push(Evidence {
                statement: format!("{name}: no version label on its pods; rollback means redeploying the previous image (kubectl rollout undo)"),
                at: service.declared_at.first().cloned(),
            });
        }
    }
    Rollback {
        action: if all_blue_green {
            "switch each changed service's selector back to the previous version; one service at a time, others untouched".to_string()
        } else {
            "redeploy the previous version of each changed service; services with version labels can switch selectors instead".to_string()
        },
        // No rollback has been timed on this fleet yet; a selector switch is near-instant
        // while a redeploy waits for pods to become ready.
        expected_seconds: Some(if all_blue_green { 1.0 } else { 120.0 }),
        measured: false,
        evidence,
    }
}

fn monitoring(changed: &[&str], callers: &BTreeMap<&str, (u32, &str)>) -> Vec<Signal> {
    let changed_names: Vec<String> = changed.iter().map(|s| s.to_string()).collect();
    let direct: Vec<String> = callers
        .iter()
        .filter(|(_, (d, _))| *d == 1)
        .map(|(n, _)| n.to_string())
        .collect();
    let mut signals = vec![
        Signal {
            name: "error rate of the changed services".into(),
            services: changed_names.clone(),
            threshold: "5xx ratio < 1% over 5m, and no higher than before the change".into(),
        },
        Signal {
            name: "p99 latency of the changed services".into(),
            services: changed_names,
            threshold: "p99 within 20% of the previous version over 5m".into(),
        },
    ];
    if !direct.is_empty() {
        signals.push(Signal {
            name: "error rate of direct callers".into(),
            services: direct,
            threshold: "5xx ratio unchanged (+0.5 percentage points at most); traces that fail inside a changed service name the root cause".into(),
        });
    }
    signals
}

/// Waves over the changed services: providers before the services that call them,
/// and within a layer the least critical tier first.
fn plan(fleet: &Fleet, changed: &[&str]) -> Plan {
    let set: BTreeSet<&str> = changed.iter().copied().collect();
    let mut remaining: BTreeSet<&str> = set.clone();
    let mut waves = Vec::new();
    while !remaining.is_empty() {
        // A service is ready when none of the changed services it depends on is still pending.
        let mut ready: Vec<&str> = remaining
            .iter()
            .copied()
            .filter(|n| {
                fleet.service(n).is_none_or(|s| {
                    s.depends_on
                        .iter()
                        .all(|d| !remaining.contains(d.as_str()) || d == n)
                })
            })
            .collect();
        if ready.is_empty() {
            // A dependency cycle among the changed services: release them together.
            ready = remaining.iter().copied().collect();
        }
        ready.sort_by_key(|n| {
            (
                std::cmp::Reverse(fleet.service(n).and_then(|s| s.tier).map_or(0, |t| t.0)),
                *n,
            )
        });
        for n in &ready {
            remaining.remove(n);
        }
        let index = waves.len() + 1;
        waves.push(Wave {
            name: format!("wave {index}"),
            steps: ready
                .iter()
                .map(|n| Step {
                    target: n.to_string(),
                    action: "deploy the new version beside the live one, verify it on the preview route, switch the selector".into(),
                    rollback: "switch the selector back".into(),
                })
                .collect(),
            gate: "error rate and p99 latency of the wave's services and of their callers within thresholds for 5m".into(),
        });
    }
    Plan { waves }
}

#[cfg(test)]
mod tests;
