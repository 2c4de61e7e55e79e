//! `cve ID`: from a vulnerability to the images that carry it, the image that
//! introduced it, the services built on them, what runs them, who owns them
//! and what is internet-facing; then the four-answer report and the
//! emergency plan.
//!
//! [`reach`] (from affected images to the services they reach) is shared with
//! `impact::image`, which asks the same of a base image change.

use crate::catalog::Catalog;
use crate::check::{owners, services_by_repo};
use crate::cluster::RunningContainer;
use crate::reports::{ReportFormat, ScanReport, Severity, Vulnerability};
use model::{
    Change, Evidence, Finding, Fleet, ImageRef, ImpactReason, ImpactReport, ImpactedService, Owner,
    Plan, Provenance, Risk, Rollback, Signal, Step, Tier, Wave,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Services per wave after the canary.
pub const WAVE_SIZE: usize = 50;

/// What a CVE query reads.
#[derive(Debug, Clone, Copy)]
pub struct CveQuery<'a> {
    pub fleet: &'a Fleet,
    pub catalog: &'a Catalog,
    pub running: &'a [RunningContainer],
}

/// Where a finding's layer was added.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Introduction {
    /// The image whose own layers contain the vulnerable package.
    pub image: String,
    pub layer: Option<String>,
    pub package: String,
    pub installed: Option<String>,
    pub fixed: Option<String>,
    /// The report (and line) that found it, and in which image.
    pub found_in: String,
    pub at: Provenance,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AffectedImage {
    pub name: String,
    /// The image itself, then what it is built on, down to the image that introduced the CVE.
    pub lineage: Vec<String>,
    /// Whether a scanner report of this image lists the CVE (else: inherited by lineage).
    pub reported: bool,
    pub digests: Vec<String>,
}

impl AffectedImage {
    /// `name` with its lineage walked down to the first image `root` accepts
    /// (where the CVE or the change came in), and its digests from the catalog.
    pub fn new(
        catalog: &Catalog,
        name: &str,
        reported: bool,
        root: impl Fn(&str) -> bool,
    ) -> AffectedImage {
        let mut lineage = Vec::new();
        for (n, _) in catalog.lineage(name) {
            let stop = root(&n);
            lineage.push(n);
            if stop {
                break;
            }
        }
        AffectedImage {
            name: name.to_string(),
            lineage,
            reported,
            digests: catalog
                .get(name)
                .map(|i| i.digests.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AffectedService {
    pub service: String,
    pub owner: Option<Owner>,
    pub tier: Option<Tier>,
    /// The affected image it is built on (or runs).
    pub image: String,
    /// The `FROM` reference, where the service builds on it.
    pub from: Option<ImageRef>,
    pub at: Option<Provenance>,
    /// `namespace/name` of its workloads in the manifests.
    pub workloads: Vec<String>,
    /// Containers of it found in cluster snapshots: `cluster/namespace/name (digest)`.
    pub running: Vec<String>,
    pub public_routes: Vec<String>,
}

/// `bulkhead cve --json`'s document, one shape for the command and for a
/// console answering in its place.
#[derive(Debug, Serialize)]
pub struct CveDocument<'a> {
    pub schema: &'static str,
    pub cve: &'a CveAnswer,
    pub report: &'a model::ImpactReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<CveTimings>,
}

/// The schema name [`CveDocument`] carries.
pub const CVE_SCHEMA: &str = "bulkhead.cve/v1";

/// Where the time of a CVE query went.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CveTimings {
    /// Scan (through the cache), base catalog, scanner reports and cluster snapshots.
    pub load_ms: f64,
    /// The CVE answer and its impact report, from the loaded fleet.
    pub query_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CveAnswer {
    pub id: String,
    pub severity: Option<Severity>,
    pub introduced: Vec<Introduction>,
    pub images: Vec<AffectedImage>,
    /// Ranked: internet-facing first, then by tier (1 first), then by name.
    pub services: Vec<AffectedService>,
    /// Containers in cluster snapshots running an affected image directly.
    pub running_images: Vec<RunningContainer>,
}

/// Answers "which services does this CVE reach?".
pub fn cve(query: CveQuery<'_>, id: &str) -> CveAnswer {
    let catalog = query.catalog;
    let mut severity: Option<Severity> = None;
    let mut introduced: BTreeSet<Introduction> = BTreeSet::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut clean: BTreeSet<String> = BTreeSet::new();
    // Findings of source reports (`trivy repo`, `trivy fs`): the services
    // built from the scanned repository, each with the finding's location.
    // Their introductions name the source, no image: they start no lineage.
    let mut from_source: BTreeMap<&str, (&str, &Provenance)> = BTreeMap::new();
    let mut source_introduced: BTreeSet<Introduction> = BTreeSet::new();
    let from_sboms = sbom_findings(&catalog.reports, id);
    let scanned = catalog
        .reports
        .iter()
        .filter(|r| r.format != ReportFormat::Spdx);
    for report in scanned.chain(&from_sboms) {
        if let Some(source) = &report.source {
            let services = services_of_source(query.fleet, source);
            for v in report
                .vulnerabilities
                .iter()
                .filter(|v| v.id.eq_ignore_ascii_case(id))
            {
                severity = Some(severity.map_or(v.severity, |s| s.min(v.severity)));
                source_introduced.insert(Introduction {
                    image: source.clone(),
                    layer: None,
                    package: v.package.clone(),
                    installed: v.installed.clone(),
                    fixed: v.fixed.clone(),
                    found_in: source.clone(),
                    at: v.at.clone(),
                });
                for service in &services {
                    from_source.entry(service).or_insert((source, &v.at));
                }
            }
            continue;
        }
        let Some(name) = report.image_name() else {
            continue;
        };
        let mut found = false;
        for v in report
            .vulnerabilities
            .iter()
            .filter(|v| v.id.eq_ignore_ascii_case(id))
        {
            found = true;
            severity = Some(severity.map_or(v.severity, |s| s.min(v.severity)));
            introduced.insert(Introduction {
                image: catalog.introduced_by(&name, v.layer.as_deref()),
                layer: v.layer.clone(),
                package: v.package.clone(),
                installed: v.installed.clone(),
                fixed: v.fixed.clone(),
                found_in: name.clone(),
                at: v.at.clone(),
            });
        }
        if found {
            reported.insert(name);
        } else {
            clean.insert(name);
        }
    }
    // An image built on an affected one inherits the CVE, unless its own report says it does not.
    let mut affected: BTreeSet<String> = reported.clone();
    let roots: BTreeSet<String> = reported
        .iter()
        .cloned()
        .chain(introduced.iter().map(|i| i.image.clone()))
        .collect();
    for root in &roots {
        affected.insert(root.clone());
        for d in catalog.descendants(root) {
            if !clean.contains(&d) || reported.contains(&d) {
                affected.insert(d);
            }
        }
    }
    affected.retain(|a| !clean.contains(a) || reported.contains(a));
    let introducers: BTreeSet<&str> = introduced.iter().map(|i| i.image.as_str()).collect();
    let images: Vec<AffectedImage> = affected
        .iter()
        .map(|name| {
            AffectedImage::new(catalog, name, reported.contains(name), |n| {
                introducers.contains(n)
            })
        })
        .collect();

    let mut answer = reach(
        query,
        ReachStart {
            id,
            severity,
            introduced: introduced.into_iter().chain(source_introduced).collect(),
            images,
        },
        &affected,
    );
    for (name, (source, at)) in from_source {
        let Some(service) = query.fleet.service(name) else {
            continue;
        };
        if answer.services.iter().any(|s| s.service == name) {
            continue;
        }
        answer.services.push(AffectedService {
            service: service.name.clone(),
            owner: service.owner.clone(),
            tier: service.tier,
            image: source.to_string(),
            from: None,
            at: Some(at.clone()),
            workloads: service.workloads.clone(),
            running: Vec::new(),
            public_routes: public_routes(service),
        });
    }
    rank(&mut answer.services);
    answer
}

/// SBOMs list packages, not findings: a package of an SBOM that a scanner
/// report finds vulnerable to `id` (the same package at the same version) is a
/// finding of the SBOM's image or source, at the package's line. An SBOM
/// without such a package is left out rather than counted clean: one that
/// spells the package differently must not stop the CVE's inheritance.
fn sbom_findings(reports: &[ScanReport], id: &str) -> Vec<ScanReport> {
    let found: Vec<&Vulnerability> = reports
        .iter()
        .filter(|r| r.format != ReportFormat::Spdx)
        .flat_map(|r| &r.vulnerabilities)
        .filter(|v| v.id.eq_ignore_ascii_case(id))
        .collect();
    reports
        .iter()
        .filter(|r| r.format == ReportFormat::Spdx)
        .filter_map(|sbom| {
            let vulnerabilities: Vec<Vulnerability> = sbom
                .packages
                .iter()
                .filter_map(|p| {
                    let v = found
                        .iter()
                        .find(|v| p.is(&v.package, v.installed.as_deref()))?;
                    Some(Vulnerability {
                        id: v.id.clone(),
                        package: p.name.clone(),
                        installed: Some(p.version.clone()),
                        fixed: v.fixed.clone(),
                        severity: v.severity,
                        layer: p.layer.clone(),
                        at: p.at.clone(),
                    })
                })
                .collect();
            (!vulnerabilities.is_empty()).then(|| ScanReport {
                vulnerabilities,
                packages: Vec::new(),
                ..sbom.clone()
            })
        })
        .collect()
}

/// The services built from the repository a source report scanned. The
/// report names it by a path (`ArtifactName`) or a remote URL (`RepoURL`);
/// either is matched against each service's repository folder, and the path
/// of that repository's git remote, on whole trailing components, and the
/// longest match wins: `ci/work/orders` and `https://git.acme/apps/orders.git`
/// both name the repository `services/orders`, and `/builds/fin/ledger` names
/// a clone in `ledger-clone` whose remote is `.../fin/ledger.git`.
pub fn services_of_source<'f>(fleet: &'f Fleet, source: &str) -> Vec<&'f str> {
    let components = path_components(source);
    let mut best = 0;
    let mut found = Vec::new();
    for service in &fleet.services {
        let Some(repo) = service.repo.as_deref().filter(|r| !r.is_empty()) else {
            continue;
        };
        let remote = fleet
            .repos
            .iter()
            .find(|r| r.path == repo)
            .and_then(|r| r.remote.as_deref())
            .map(path_components)
            .unwrap_or_default();
        let shared_with = |candidate: &[&str]| {
            candidate
                .iter()
                .rev()
                .zip(components.iter().rev())
                .take_while(|(a, b)| a == b)
                .count()
        };
        let folder: Vec<&str> = repo.split('/').collect();
        let shared = shared_with(&folder).max(shared_with(&remote));
        if shared == 0 || shared < best {
            continue;
        }
        if shared > best {
            best = shared;
            found.clear();
        }
        found.push(service.name.as_str());
    }
    found
}

/// The path of a repository named by a path or a URL, in components:
/// a URL's path, an scp-like remote's (`git@host:acme/orders`), without `.git`.
fn path_components(source: &str) -> Vec<&str> {
    let source = source.trim().trim_end_matches('/');
    let source = source.strip_suffix(".git").unwrap_or(source);
    let path = match source.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, path)| path),
        None => match source.split_once(':') {
            Some((host, path)) if host.contains('@') => path,
            _ => source,
        },
    };
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

fn public_routes(service: &model::Service) -> Vec<String> {
    service
        .public_routes()
        .map(|r| format!("{}{}", r.host.as_deref().unwrap_or("*"), r.path))
        .collect()
}

/// Internet-facing first, then by tier (1 first), then by name.
fn rank(services: &mut [AffectedService]) {
    services.sort_by(|a, b| {
        (
            a.public_routes.is_empty(),
            a.tier.map_or(10, |t| t.0),
            &a.service,
        )
            .cmp(&(
                b.public_routes.is_empty(),
                b.tier.map_or(10, |t| t.0),
                &b.service,
            ))
    });
}

/// What [`reach`] starts from: the affected images and what made them so.
#[derive(Debug, Clone)]
pub struct ReachStart<'a> {
    /// The answer's id: the CVE, or the image whose change is asked about.
    pub id: &'a str,
    pub severity: Option<Severity>,
    pub introduced: Vec<Introduction>,
    pub images: Vec<AffectedImage>,
}

/// From the affected images (`affected` names them all) to the services built
/// on them or running them, their workloads, running containers and public
/// routes, ranked. [`cve`] starts it from a vulnerability's images;
/// `impact::image` from an image and everything built on it.
pub fn reach(query: CveQuery<'_>, start: ReachStart<'_>, affected: &BTreeSet<String>) -> CveAnswer {
    let CveQuery {
        fleet,
        catalog,
        running,
    } = query;
    let by_repo = services_by_repo(fleet);
    let mut services: BTreeMap<&str, AffectedService> = BTreeMap::new();
    let mut add = |name: &str, image: String, from: Option<&ImageRef>, at: Option<&Provenance>| {
        let Some(service) = fleet.service(name) else {
            return;
        };
        services
            .entry(service.name.as_str())
            .or_insert_with(|| AffectedService {
                service: service.name.clone(),
                owner: service.owner.clone(),
                tier: service.tier,
                image,
                from: from.cloned(),
                at: at.cloned(),
                workloads: service.workloads.clone(),
                running: Vec::new(),
                public_routes: public_routes(service),
            });
    };
    for dockerfile in &fleet.dockerfiles {
        let Some(base) = dockerfile.final_base() else {
            continue;
        };
        let name = base.name();
        if !affected.contains(&name) {
            continue;
        }
        let at = dockerfile.final_stage().map(|s| &s.at);
        for owner in owners(&by_repo, &dockerfile.path) {
            add(owner, name.clone(), Some(base), at);
        }
    }
    for service in &fleet.services {
        if let Some(image) = service.images.iter().find(|i| affected.contains(&i.name())) {
            add(&service.name, image.name(), None, None);
        }
    }
    let mut running_images = Vec::new();
    for container in running {
        if let Some(s) = services.get_mut(container.service.as_str()) {
            s.running.push(format!(
                "{}/{}/{}{}",
                container.cluster,
                container.namespace,
                container.name,
                container
                    .digest
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ));
        }
        let direct = container.image_ref.as_ref().is_some_and(|r| {
            affected.contains(&r.name())
                || container.digest.as_ref().is_some_and(|d| {
                    affected
                        .iter()
                        .filter_map(|a| catalog.get(a))
                        .any(|i| i.digests.contains(d))
                })
        });
        if direct {
            running_images.push(container.clone());
        }
    }
    let mut services: Vec<AffectedService> = services.into_values().collect();
    rank(&mut services);
    CveAnswer {
        id: start.id.to_string(),
        severity: start.severity,
        introduced: start.introduced,
        images: start.images,
        services,
        running_images,
    }
}

/// The four answers for remediating the CVE, with the emergency plan: rebuild
/// the bases (the introducing image first, then the images built on it), a
/// canary service, then the rest in large waves, internet-facing first, then
/// by tier.
pub fn impact_report(answer: &CveAnswer, fleet: &Fleet) -> ImpactReport {
    let mut what_breaks = Vec::new();
    for i in &answer.introduced {
        let fix = i.fixed.as_deref().map_or_else(
            || "no fixed version known".to_string(),
            |f| format!("fixed in {f}"),
        );
        let mut evidence = vec![Evidence {
            statement: format!("found in {}", i.found_in),
            at: Some(i.at.clone()),
        }];
        if let Some(layer) = &i.layer {
            evidence.push(Evidence {
                statement: format!("in layer {layer}, which {} added", i.image),
                at: None,
            });
        }
        what_breaks.push(Finding {
            subject: i.image.clone(),
            risk: Risk::Breaking,
            summary: format!(
                "{} {} {} ({fix}){}",
                i.package,
                i.installed.as_deref().unwrap_or(""),
                answer.id,
                if i.image == i.found_in {
                    String::new()
                } else {
                    format!("; inherited by {}", i.found_in)
                }
            ),
            evidence,
        });
    }
    what_breaks.dedup_by(|a, b| a.subject == b.subject && a.summary == b.summary);
    for image in answer.images.iter().filter(|i| !i.reported) {
        what_breaks.push(Finding {
            subject: image.name.clone(),
            risk: Risk::Risky,
            summary: format!(
                "inherits {} through {}",
                answer.id,
                image.lineage.join(" -> ")
            ),
            evidence: Vec::new(),
        });
    }
    let who_is_impacted: Vec<ImpactedService> = answer
        .services
        .iter()
        .map(|s| {
            let mut evidence = Vec::new();
            if let Some(from) = &s.from {
                evidence.push(Evidence {
                    statement: format!("FROM {from}"),
                    at: s.at.clone(),
                });
            } else if let Some(at) = &s.at {
                evidence.push(Evidence {
                    statement: format!("a scanner report of its source {} lists it", s.image),
                    at: Some(at.clone()),
                });
            }
            if let Some(image) = answer.images.iter().find(|i| i.name == s.image) {
                evidence.push(Evidence {
                    statement: format!("lineage {}", image.lineage.join(" -> ")),
                    at: None,
                });
            }
            for w in &s.workloads {
                evidence.push(Evidence {
                    statement: format!("workload {w}"),
                    at: None,
                });
            }
            for r in &s.running {
                evidence.push(Evidence {
                    statement: format!("running {r}"),
                    at: None,
                });
            }
            ImpactedService {
                service: s.service.clone(),
                owner: s.owner.clone(),
                tier: s.tier,
                reason: ImpactReason::Uses {
                    artefact: s.image.clone(),
                },
                public_routes: s.public_routes.clone(),
                evidence,
            }
        })
        .collect();
    let impacted: BTreeSet<&str> = answer.services.iter().map(|s| s.service.as_str()).collect();
    let untouched = fleet
        .services
        .iter()
        .filter(|s| !impacted.contains(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();
    ImpactReport {
        change: Change::Cve {
            id: answer.id.clone(),
        },
        what_breaks,
        who_is_impacted,
        rollback: Rollback {
            action: "redeploy each service's previous image digest (kept in the registry); revert the FROM commit".to_string(),
            expected_seconds: None,
            measured: false,
            evidence: Vec::new(),
        },
        monitoring: vec![
            Signal {
                name: "error rate".into(),
                services: impacted.iter().map(|s| s.to_string()).collect(),
                threshold: "< 1% over 5m, and no worse than before the wave".into(),
            },
            Signal {
                name: "p99 latency".into(),
                services: impacted.iter().map(|s| s.to_string()).collect(),
                threshold: "within 10% of the previous day".into(),
            },
            Signal {
                name: format!("{} in scanner reports", answer.id),
                services: Vec::new(),
                threshold: "absent from the rebuilt images' reports".into(),
            },
        ],
        plan: plan(answer),
        untouched,
    }
}

fn plan(answer: &CveAnswer) -> Plan {
    let mut waves = Vec::new();
    // Bases first, each after the images it is built on: shorter lineage first.
    let mut bases: Vec<&crate::cve::AffectedImage> = answer.images.iter().collect();
    bases.sort_by_key(|i| (i.lineage.len(), i.name.clone()));
    if !bases.is_empty() {
        let fixed: BTreeSet<&str> = answer
            .introduced
            .iter()
            .filter_map(|i| i.fixed.as_deref())
            .collect();
        let fix = fixed.into_iter().collect::<Vec<_>>().join(", ");
        waves.push(Wave {
            name: "rebuild base images".into(),
            steps: bases
                .iter()
                .map(|b| Step {
                    target: b.name.clone(),
                    action: if fix.is_empty() {
                        "rebuild with the fixed package and publish a new digest".to_string()
                    } else {
                        format!("rebuild with {fix} and publish a new digest")
                    },
                    rollback: match b.digests.first() {
                        Some(d) => format!("keep serving the previous digest {d}"),
                        None => "keep serving the previous digest".into(),
                    },
                })
                .collect(),
            gate: format!(
                "{} absent from the rebuilt images' scanner reports",
                answer.id
            ),
        });
    }
    let step = |s: &AffectedService| Step {
        target: s.service.clone(),
        // A service reached through a report of its source carries the CVE in
        // its own dependencies, not in an image it builds on.
        action: if answer.images.iter().any(|i| i.name == s.image) {
            format!(
                "bulkhead images upgrade --to <rebuilt {}>, rebuild, deploy",
                s.image
            )
        } else {
            "upgrade the vulnerable dependency to its fixed version, rebuild, deploy".to_string()
        },
        rollback: "redeploy the previous image digest".into(),
    };
    let canary = answer
        .services
        .iter()
        .filter(|s| s.public_routes.is_empty())
        .max_by_key(|s| {
            (
                s.tier.map_or(10, |t| t.0),
                std::cmp::Reverse(s.service.clone()),
            )
        })
        .or_else(|| answer.services.last());
    if let Some(canary) = canary {
        waves.push(Wave {
            name: "canary".into(),
            steps: vec![step(canary)],
            gate: "error rate < 1% and p99 latency within 10% for 30m".into(),
        });
    }
    let rest: Vec<&AffectedService> = answer
        .services
        .iter()
        .filter(|s| Some(s.service.as_str()) != canary.map(|c| c.service.as_str()))
        .collect();
    let (public, internal): (Vec<&AffectedService>, Vec<&AffectedService>) =
        rest.into_iter().partition(|s| !s.public_routes.is_empty());
    for chunk in public.chunks(WAVE_SIZE) {
        waves.push(Wave {
            name: "internet-facing".into(),
            steps: chunk.iter().map(|s| step(s)).collect(),
            gate: "error rate < 1% and p99 latency within 10% for 15m".into(),
        });
    }
    let mut by_tier: BTreeMap<u8, Vec<&AffectedService>> = BTreeMap::new();
    for s in internal {
        by_tier
            .entry(s.tier.map_or(10, |t| t.0))
            .or_default()
            .push(s);
    }
    for (tier, services) in by_tier {
        for chunk in services.chunks(WAVE_SIZE) {
            waves.push(Wave {
                name: if tier == 10 {
                    "no tier".into()
                } else {
                    format!("tier {tier}")
                },
                steps: chunk.iter().map(|s| step(s)).collect(),
                gate: "error rate < 1% and p99 latency within 10% for 15m".into(),
            });
        }
    }
    Plan { waves }
}
