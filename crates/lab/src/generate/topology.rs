//! The shape of the fleet before any file exists: service names, layers, owners, the dependency
//! DAG, and the fleet-wide mix of languages, CI forms, template versions and pinning styles.
//! Mixes are assigned by quota (see [`quota`]) so that every fleet of a reasonable size holds
//! every planted case.

use std::collections::{HashMap, HashSet};

use super::rng::{Rng, quota};
use super::templates::{RELEASES, V1_4};
use super::truth::{Language, Layer, Pinning};

/// Teams and the Backstage system each one owns.
const TEAMS: [(&str, &str); 12] = [
    ("team-checkout", "checkout"),
    ("team-payments", "payments"),
    ("team-catalog", "catalog"),
    ("team-identity", "identity"),
    ("team-fulfillment", "fulfillment"),
    ("team-growth", "growth"),
    ("team-search", "discovery"),
    ("team-storefront", "storefront"),
    ("team-mobile", "mobile"),
    ("team-risk", "risk"),
    ("team-logistics", "logistics"),
    ("team-data", "data-platform"),
];

const WORDS: [&str; 84] = [
    "orders",
    "payments",
    "checkout",
    "cart",
    "inventory",
    "ledger",
    "pricing",
    "catalog",
    "search",
    "shipping",
    "invoices",
    "refunds",
    "accounts",
    "identity",
    "auth",
    "notifications",
    "email",
    "sms",
    "reviews",
    "ratings",
    "recommendations",
    "wishlist",
    "loyalty",
    "promotions",
    "coupons",
    "tax",
    "fraud",
    "risk",
    "billing",
    "subscriptions",
    "customers",
    "profiles",
    "sessions",
    "media",
    "warehouse",
    "fulfillment",
    "returns",
    "tracking",
    "geo",
    "currency",
    "reporting",
    "analytics",
    "audit",
    "settlement",
    "payouts",
    "merchants",
    "sellers",
    "quotes",
    "contracts",
    "documents",
    "content",
    "availability",
    "reservations",
    "bookings",
    "scheduling",
    "delivery",
    "carriers",
    "labels",
    "stock",
    "suppliers",
    "procurement",
    "discounts",
    "gift-cards",
    "vouchers",
    "referrals",
    "consent",
    "preferences",
    "addresses",
    "devices",
    "feeds",
    "exports",
    "imports",
    "webhooks",
    "rates",
    "limits",
    "quotas",
    "entitlements",
    "plans",
    "usage",
    "metering",
    "disputes",
    "chargebacks",
    "kyc",
    "onboarding",
];

const EDGE_NAMES: [&str; 8] = [
    "storefront-web",
    "mobile-api",
    "partner-api",
    "public-api",
    "admin-portal",
    "merchant-portal",
    "checkout-web",
    "graphql-gateway",
];
const CHANNELS: [&str; 5] = ["web", "mobile", "partner", "admin", "merchant"];
const DATA_KINDS: [&str; 6] = ["store", "db", "cache", "events", "indexer", "archive"];

/// Env references planted on purpose to services that do not exist.
pub(crate) const UNRESOLVED: [(&str, EnvForm); 3] = [
    ("legacy-billing", EnvForm::HostPort),
    ("crm-adapter", EnvForm::Url),
    ("mainframe-bridge", EnvForm::ClusterDns),
];
/// Namespace used in the cluster-DNS form of unresolved references.
pub(crate) const LEGACY_NAMESPACE: &str = "legacy";

/// The three ways a container env value points at another service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvForm {
    /// `http://<dep>:8080/`
    Url,
    /// `<dep>:9090`
    HostPort,
    /// `<dep>.<ns>.svc.cluster.local:8080`
    ClusterDns,
}

/// How the service's CI pins the shared build template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CiForm {
    /// `include: - project:` with a single `file:`.
    GitlabProject,
    /// `include: - project:` with `file:` listing both templates (and therefore no inputs).
    GitlabProjectList,
    /// `include: - component: ...@X.Y.Z`
    GitlabComponent,
    /// `jobs.<id>.uses: acme/ci-templates/.github/workflows/build.yml@vX.Y.Z`
    Github,
}

/// What the final stage of the Dockerfile is built FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BaseChoice {
    /// The company language base, pinned as given.
    Company(Pinning),
    /// An image from a registry outside the approved prefix.
    NonApproved,
}

#[derive(Debug, Clone)]
pub(crate) struct Team {
    pub(crate) name: &'static str,
    pub(crate) system: &'static str,
}

impl Team {
    pub(crate) fn namespace(&self) -> &'static str {
        self.name.trim_start_matches("team-")
    }
}

/// One service before rendering.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) layer: Layer,
    pub(crate) language: Language,
    pub(crate) team: usize,
    pub(crate) namespace: String,
    pub(crate) tier: u8,
    /// Indexes of the services it depends on; always in lower layers.
    pub(crate) deps: Vec<usize>,
    /// Indexes into [`UNRESOLVED`].
    pub(crate) unresolved: Vec<usize>,
    pub(crate) ci: CiForm,
    /// Index into [`RELEASES`].
    pub(crate) release: usize,
    /// Migrated to the v2 inputs already (uses `image`, nothing removed in v2).
    pub(crate) v2_ready: bool,
    pub(crate) base: BaseChoice,
    pub(crate) image_pinning: Pinning,
    pub(crate) kustomize: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Topology {
    pub(crate) teams: Vec<Team>,
    /// Layer blocks in order edge, bff, domain, data.
    pub(crate) nodes: Vec<Node>,
}

/// How many services go to each layer: edge ~5%, bff ~15%, data ~30%, the rest domain.
fn layer_sizes(n: usize) -> [(Layer, usize); 4] {
    let (edge, bff, data) = if n >= 4 {
        (
            (n * 5 / 100).max(1),
            (n * 15 / 100).max(1),
            (n * 30 / 100).max(1),
        )
    } else {
        // Too small for every layer: keep one provider so the rest still have an edge.
        (0, 0, n.min(1))
    };
    [
        (Layer::Edge, edge),
        (Layer::Bff, bff),
        (Layer::Domain, n - edge - bff - data),
        (Layer::Data, data),
    ]
}

/// Hands out unique names: the first use of a base name is bare, later ones get `-2`, `-3`, …
#[derive(Debug, Default)]
struct Names {
    used: HashSet<String>,
    next_suffix: HashMap<String, usize>,
}

impl Names {
    fn claim(&mut self, base: String) -> String {
        if self.used.insert(base.clone()) {
            return base;
        }
        let suffix = self.next_suffix.entry(base.clone()).or_insert(2);
        loop {
            let candidate = format!("{base}-{suffix}");
            *suffix += 1;
            if self.used.insert(candidate.clone()) {
                return candidate;
            }
        }
    }
}

/// Plants one call chain six services deep: the first edge service calls the
/// first bff, which calls the first domain service, which calls the second,
/// which calls the third (domain services calling each other, as orders calls
/// payments calls ledger), which calls the data layer as every domain service
/// does. A request to that edge service thus crosses six services, which the
/// live lab's trace scenario needs. Only the domain layer calls within itself,
/// always from an earlier to a later service of its block, so the graph stays
/// acyclic. No random draw is made, so every other fact of a seed stays as it was.
fn plant_core_flow(nodes: &mut [Node], blocks: &[std::ops::Range<usize>]) {
    let [edge, bff, domain, data] = blocks else {
        return;
    };
    if edge.is_empty() || bff.is_empty() || domain.len() < 3 || data.is_empty() {
        return;
    }
    let flow = [
        edge.start,
        bff.start,
        domain.start,
        domain.start + 1,
        domain.start + 2,
    ];
    for pair in flow.windows(2) {
        let (caller, callee) = (pair[0], pair[1]);
        let deps = &mut nodes[caller].deps;
        if !deps.contains(&callee) {
            // Keep at most four providers: the planted call replaces the last drawn one.
            if deps.len() >= 4 {
                deps.pop();
            }
            deps.push(callee);
        }
    }
}

pub(crate) fn build(seed: u64, n: usize) -> Topology {
    let mut rng = Rng::derive(seed, "topology");
    let mut teams: Vec<Team> = TEAMS
        .iter()
        .map(|(name, system)| Team { name, system })
        .collect();
    rng.shuffle(&mut teams);
    teams.truncate(rng.range(8, 12));

    let mut names = Names::default();
    for (name, _) in UNRESOLVED {
        // Reserved so that a generated service never accidentally resolves a planted dangling ref.
        names.used.insert(name.to_owned());
    }
    let mut words = WORDS;
    rng.shuffle(&mut words);

    let mut nodes = Vec::with_capacity(n);
    let mut blocks = Vec::new();
    for (layer, size) in layer_sizes(n) {
        let start = nodes.len();
        for i in 0..size {
            let word = words[(i + layer.rank() * 17) % words.len()];
            let base = match layer {
                Layer::Edge => EDGE_NAMES
                    .get(i)
                    .map_or_else(|| format!("{word}-api"), |name| (*name).to_owned()),
                Layer::Bff => format!("{}-{word}-bff", rng.pick(&CHANNELS)),
                Layer::Domain => word.to_owned(),
                Layer::Data => format!("{word}-{}", rng.pick(&DATA_KINDS)),
            };
            let tier = match layer {
                Layer::Edge => [1, 1, 1, 2][rng.below(4)],
                Layer::Bff => [1, 2, 2][rng.below(3)],
                Layer::Domain | Layer::Data => [1, 2, 2, 3, 3][rng.below(5)],
            };
            nodes.push(Node {
                name: names.claim(base),
                layer,
                language: Language::Go,
                team: 0,
                namespace: String::new(),
                tier,
                deps: Vec::new(),
                unresolved: Vec::new(),
                ci: CiForm::Github,
                release: 0,
                v2_ready: false,
                base: BaseChoice::Company(Pinning::Digest),
                image_pinning: Pinning::Digest,
                kustomize: false,
            });
        }
        blocks.push(start..nodes.len());
    }

    // Dependencies: 1-4 providers from strictly lower layers, mostly the next one down.
    for (block_index, block) in blocks.iter().enumerate() {
        let lower: Vec<usize> = blocks[block_index + 1..]
            .iter()
            .flat_map(Clone::clone)
            .collect();
        let next = blocks[block_index + 1..]
            .iter()
            .find(|candidate| !candidate.is_empty())
            .cloned();
        let Some(next) = next else { continue };
        for index in block.clone() {
            let want = rng.range(1, 4).min(lower.len());
            let mut deps = Vec::with_capacity(want);
            while deps.len() < want {
                let dep = if rng.percent(75) {
                    next.start + rng.below(next.len())
                } else {
                    *rng.pick(&lower)
                };
                if !deps.contains(&dep) {
                    deps.push(dep);
                }
            }
            nodes[index].deps = deps;
        }
    }
    plant_core_flow(&mut nodes, &blocks);

    // Owners: round robin so that every team owns something, then shuffled.
    let mut owners: Vec<usize> = (0..n).map(|index| index % teams.len()).collect();
    rng.shuffle(&mut owners);
    for (node, team) in nodes.iter_mut().zip(owners) {
        node.team = team;
        // Most teams deploy to their own namespace; some services still live in the shared one.
        node.namespace = if rng.percent(80) {
            teams[team].namespace().to_owned()
        } else {
            "prod".to_owned()
        };
    }

    let languages = quota(
        &mut rng,
        n,
        &[
            (Language::Go, 35),
            (Language::Java, 25),
            (Language::Python, 20),
            (Language::Node, 15),
            (Language::Rust, 5),
        ],
    );
    let ci_forms = quota(
        &mut rng,
        n,
        &[
            (CiForm::GitlabProject, 27),
            (CiForm::GitlabProjectList, 12),
            (CiForm::GitlabComponent, 21),
            (CiForm::Github, 40),
        ],
    );
    let ready = quota(&mut rng, n, &[(false, 88), (true, 12)]);
    let not_ready = ready.iter().filter(|ready| !**ready).count();
    let mut releases = quota(
        &mut rng,
        not_ready,
        &[
            (0, 2),
            (1, 3),
            (2, 8),
            (3, 10),
            (4, 15),
            (5, 22),
            (6, 15),
            (7, 10),
            (8, 15),
        ],
    )
    .into_iter();
    let bases = quota(
        &mut rng,
        n,
        &[
            (BaseChoice::Company(Pinning::Digest), 80),
            (BaseChoice::Company(Pinning::Tag), 12),
            (BaseChoice::Company(Pinning::Latest), 4),
            (BaseChoice::Company(Pinning::Untagged), 2),
            (BaseChoice::NonApproved, 2),
        ],
    );
    let images = quota(
        &mut rng,
        n,
        &[
            (Pinning::Digest, 88),
            (Pinning::Tag, 10),
            (Pinning::Latest, 2),
        ],
    );
    let kustomize = quota(&mut rng, n, &[(false, 95), (true, 5)]);
    for (index, node) in nodes.iter_mut().enumerate() {
        node.language = languages[index];
        node.v2_ready = ready[index];
        // A file list passes no inputs and so can never be v2-ready.
        node.ci = match ci_forms[index] {
            CiForm::GitlabProjectList if node.v2_ready => CiForm::GitlabProject,
            form => form,
        };
        node.release = if node.v2_ready {
            rng.range(V1_4, RELEASES.len() - 2)
        } else {
            releases.next().unwrap_or(V1_4)
        };
        node.base = bases[index];
        node.image_pinning = images[index];
        node.kustomize = kustomize[index];
    }

    // Plant the dangling env references, preferring callers above the data layer.
    let mut callers: Vec<usize> = (0..n)
        .filter(|index| !nodes[*index].deps.is_empty())
        .collect();
    if callers.is_empty() {
        callers = (0..n).collect();
    }
    rng.shuffle(&mut callers);
    let planted = if n >= 50 { 3 } else { 2 };
    for (target, caller) in callers.into_iter().take(planted).enumerate() {
        nodes[caller].unresolved.push(target);
    }

    Topology { teams, nodes }
}
