use super::*;
use model::{Fleet, Service};

fn fleet(services: &[(&str, Option<u8>, &[&str])]) -> Fleet {
    let mut services: Vec<Service> = services
        .iter()
        .map(|(name, tier, deps)| Service {
            name: name.to_string(),
            tier: tier.map(Tier),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            ..Service::default()
        })
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Fleet {
        services,
        ..Fleet::default()
    }
}

/// web -> orders -> {db, payments}; web -> search; admin -> db; report (unchanged) is alone.
fn shop() -> Fleet {
    fleet(&[
        ("web", Some(3), &["orders", "search"]),
        ("orders", Some(2), &["db", "payments"]),
        ("db", Some(1), &[]),
        ("payments", Some(1), &[]),
        ("search", Some(4), &[]),
        ("admin", Some(3), &["db"]),
        ("report", None, &[]),
    ])
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn waves(p: &Plan) -> Vec<Vec<&str>> {
    p.waves
        .iter()
        .map(|w| w.services.iter().map(String::as_str).collect())
        .collect()
}

#[test]
fn waves_put_providers_first_then_the_least_critical_tier() {
    let changed = names(&["web", "orders", "db", "search", "payments"]);
    let p = plan(
        &shop(),
        &changed,
        None,
        &Specs::default(),
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(
        waves(&p),
        [
            vec!["search"],
            vec!["db", "payments"],
            vec!["orders"],
            vec!["web"]
        ]
    );
    assert_eq!(p.services, ["db", "orders", "payments", "search", "web"]);
    assert_eq!(p.to_version, "green");
    let db = p.service("db").unwrap();
    assert_eq!(db.wave, 1);
    assert_eq!(
        db.stable,
        Selector::from([("version".into(), "blue".into())])
    );
    assert_eq!(
        db.candidate,
        Selector::from([("version".into(), "green".into())])
    );
    assert_eq!(db.analysis_services, ["db", "admin", "orders"]);
    assert_eq!(db.holds_on_failure, ["orders", "web"]);
    assert_eq!(db.blast_radius, ["admin", "orders", "web"]);
    assert_eq!(db.route, "db");
    assert_eq!(p.service("search").unwrap().holds_on_failure, ["web"]);
    assert_eq!(
        p.service("web").unwrap().depends_on,
        ["db", "orders", "payments", "search"]
    );
    assert_eq!(
        p.service("web").unwrap().holds_on_failure,
        Vec::<String>::new()
    );
    assert!(p.notes.is_empty());
}

#[test]
fn consumers_first_reverses_the_order_and_what_a_failure_holds() {
    let changed = names(&["web", "orders", "db", "search", "payments"]);
    let options = PlanOptions {
        consumers_first: true,
        ..PlanOptions::default()
    };
    let p = plan(&shop(), &changed, Some("v2"), &Specs::default(), &options).unwrap();
    assert_eq!(
        waves(&p),
        [
            vec!["web"],
            vec!["search"],
            vec!["orders"],
            vec!["db", "payments"]
        ]
    );
    assert_eq!(
        p.service("web").unwrap().holds_on_failure,
        ["db", "orders", "payments", "search"]
    );
    assert_eq!(
        p.service("orders").unwrap().holds_on_failure,
        ["db", "payments"]
    );
    assert_eq!(p.service("db").unwrap().candidate["version"], "v2");
}

#[test]
fn dependencies_through_unchanged_services_order_waves() {
    let p = plan(
        &shop(),
        &names(&["web", "db"]),
        None,
        &Specs::default(),
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(waves(&p), [vec!["db"], vec!["web"]]);
    assert_eq!(p.service("db").unwrap().holds_on_failure, ["web"]);
}

#[test]
fn a_cycle_among_changed_services_moves_as_one_wave_with_a_note() {
    let f = fleet(&[
        ("a", Some(2), &["b"]),
        ("b", Some(2), &["x"]),
        ("x", None, &["a"]),
        ("c", Some(3), &["a"]),
        ("d", Some(3), &[]),
    ]);
    let p = plan(
        &f,
        &names(&["c", "b", "a", "d"]),
        None,
        &Specs::default(),
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(waves(&p), [vec!["d"], vec!["a", "b"], vec!["c"]]);
    assert_eq!(
        p.notes,
        ["a, b depend on each other in a cycle; they move in one wave"]
    );
    // Members of a cycle do not hold each other: they run side by side.
    assert_eq!(p.service("a").unwrap().holds_on_failure, ["c"]);
}

#[test]
fn strategies_and_routes_come_from_the_specs() {
    let specs = Specs::parse(
        "rollouts.yaml",
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  service: orders\n  strategy:\n    blueGreen: {activeService: orders-live}\n---\napiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  service: db\n  strategy:\n    canary: {steps: [{setWeight: 20}, {pause: {duration: 10s}}]}\n",
    );
    let p = plan(
        &shop(),
        &names(&["orders", "db", "web"]),
        None,
        &specs,
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(p.service("orders").unwrap().route, "orders-live");
    assert_eq!(
        p.service("orders").unwrap().spec,
        Some(model::Provenance::new("rollouts.yaml", 1))
    );
    assert_eq!(p.service("web").unwrap().spec, None);
    assert!(p.notes.is_empty());

    let typo = Specs::parse(
        "r.yaml",
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  service: order\n  strategy: {rolling: {}}\n",
    );
    let misspelt = plan(
        &shop(),
        &names(&["orders"]),
        None,
        &typo,
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(
        misspelt.notes,
        ["r.yaml:1: the rollout for order names no service of the fleet (did you mean orders?)"]
    );
    assert_eq!(
        misspelt.service("orders").unwrap().strategy,
        Strategy::default_for_unspecified()
    );
    assert_eq!(p.service("orders").unwrap().strategy.name(), "blue-green");
    assert_eq!(p.service("db").unwrap().strategy.name(), "canary");
    assert_eq!(
        p.service("web").unwrap().strategy,
        Strategy::default_for_unspecified()
    );
    let steps: Vec<&model::Step> = p.report.plan.waves.iter().flat_map(|w| &w.steps).collect();
    assert_eq!(
        steps[0].action,
        "canary to version=green in 2 step(s) (20%, pause 10s); analysis on db and its callers admin, orders"
    );
    assert_eq!(
        steps[0].rollback,
        "switch db back to version=blue; holds orders, web"
    );
    assert_eq!(
        steps[1].action,
        "blue-green: switch orders-live to version=green; analysis on orders and its callers web"
    );
}

#[test]
fn the_plan_renders_as_an_impact_report() {
    let p = plan(
        &shop(),
        &names(&["orders", "db"]),
        Some("v7"),
        &Specs::default(),
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(p.report.change.title(), "upgrade db, orders to v7");
    assert_eq!(
        p.report
            .plan
            .waves
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>(),
        ["wave 1", "wave 2"]
    );
    assert_eq!(p.report.untouched, ["payments", "report", "search"]);
    let impacted: Vec<&str> = p
        .report
        .who_is_impacted
        .iter()
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(impacted, ["db", "orders", "admin", "web"]);
    let table = model::report::render_table(&p.report);
    assert!(table.contains("wave 1"), "{table}");
    let markdown = model::report::render_markdown(&p.report);
    assert!(
        markdown.contains("2. **wave 2**: `orders` — gate: every service"),
        "{markdown}"
    );
    assert!(
        markdown
            .contains("- rollout analysis of orders: error-rate: result &lt; 0.05 (orders, web)"),
        "{markdown}"
    );
    let json = serde_json::to_string(&p).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn bad_requests_are_errors() {
    let f = shop();
    let none = Specs::default();
    let opts = PlanOptions::default();
    let err = |changed: &[&str], to: Option<&str>, specs: &Specs, opts: &PlanOptions| {
        plan(&f, &names(changed), to, specs, opts)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(&[], None, &none, &opts), "no services to roll out");
    assert_eq!(
        err(&["order"], None, &none, &opts),
        "unknown service(s): order (did you mean orders?)"
    );
    assert_eq!(
        err(&["db"], Some("blue"), &none, &opts),
        "the target version blue is the live version"
    );
    let v1 = PlanOptions {
        stable_version: "v1".into(),
        ..PlanOptions::default()
    };
    assert_eq!(
        err(&["db"], None, &none, &v1),
        "no target version: give one (the live version v1 has no blue/green counterpart)"
    );
    assert!(plan(&f, &names(&["db"]), Some("v2"), &none, &v1).is_ok());
    assert_eq!(
        err(&["db"], Some(" "), &none, &opts),
        "empty version label or version (label \"version\", live \"blue\", target \"\")"
    );
    let broken = Specs::parse(
        "r.yaml",
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  service: db\n  strategy: {rolling: {batchSize: 500}}\n",
    );
    let message = err(&["db"], None, &broken, &opts);
    assert_eq!(
        message,
        "the rollout specs have errors:\n  r.yaml:1: rollout of db skipped because of its errors\n  r.yaml:5: spec.strategy.rolling.batchSize must be a percentage from 1 to 100 (25 or 25%), not \"500\""
    );
    let missing = Specs::parse(
        "r.yaml",
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nspec:\n  service: db\n  strategy: {rolling: {analysis: {templates: [gone]}}}\n",
    );
    assert_eq!(
        err(&["db"], None, &missing, &opts),
        "r.yaml:5: analysis template gone is not defined (known: none)"
    );
}

/// splitmix64: a tiny seeded generator, so every failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A random DAG: service `i` may call services created before it; names are a
/// random permutation, so name order says nothing about dependency order.
fn random_fleet(rng: &mut Rng, n: usize, edge_percent: u64) -> Fleet {
    let mut ids: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut ids);
    let name = |i: usize| format!("svc-{:03}", ids[i]);
    let services: Vec<(String, Option<u8>, Vec<String>)> = (0..n)
        .map(|i| {
            let tier = match rng.below(5) {
                0 => None,
                t => Some(t as u8 * 2 - 1),
            };
            let deps = (0..i)
                .filter(|_| rng.chance(edge_percent))
                .map(name)
                .collect();
            (name(i), tier, deps)
        })
        .collect();
    let mut services: Vec<Service> = services
        .into_iter()
        .map(|(name, tier, mut deps)| {
            deps.sort();
            Service {
                name,
                tier: tier.map(Tier),
                depends_on: deps,
                ..Service::default()
            }
        })
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Fleet {
        services,
        ..Fleet::default()
    }
}

/// Whether `from` reaches `to` through `depends_on`.
fn reaches(fleet: &Fleet, from: &str, to: &str) -> bool {
    let mut stack = vec![from];
    let mut seen = BTreeSet::new();
    while let Some(n) = stack.pop() {
        for d in &fleet.service(n).unwrap().depends_on {
            if d == to {
                return true;
            }
            if seen.insert(d.as_str()) {
                stack.push(d);
            }
        }
    }
    false
}

#[test]
fn property_wave_order_respects_every_dependency_and_is_deterministic() {
    for seed in 0..300u64 {
        let mut rng = Rng(seed);
        let n = if seed % 50 == 0 {
            100
        } else {
            2 + rng.below(40)
        };
        let density = [3, 10, 30][rng.below(3)];
        let f = random_fleet(&mut rng, n, density);
        let k = if n == 100 { 10 } else { 1 + rng.below(n) };
        let mut changed: Vec<String> = f.services.iter().map(|s| s.name.clone()).collect();
        rng.shuffle(&mut changed);
        changed.truncate(k);
        let consumers_first = rng.chance(30);
        let options = PlanOptions {
            consumers_first,
            ..PlanOptions::default()
        };
        let p = plan(&f, &changed, None, &Specs::default(), &options).unwrap();
        let context = format!("seed {seed}, {n} services, changed {changed:?}");

        // Every changed service is in exactly one wave, sorted within it.
        let mut listed: Vec<&str> = p
            .waves
            .iter()
            .flat_map(|w| w.services.iter().map(String::as_str))
            .collect();
        for w in &p.waves {
            assert!(!w.services.is_empty(), "{context}");
            assert!(w.services.windows(2).all(|x| x[0] < x[1]), "{context}");
        }
        listed.sort_unstable();
        let mut expected: Vec<&str> = changed.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(listed, expected, "{context}");

        // Which changed service reaches which, through any service.
        let calls: BTreeSet<(&str, &str)> = changed
            .iter()
            .flat_map(|a| changed.iter().map(move |b| (a.as_str(), b.as_str())))
            .filter(|(a, b)| a != b && reaches(&f, a, b))
            .collect();

        // Every dependency between changed services, direct or not, is respected.
        for a in &changed {
            for b in &changed {
                if calls.contains(&(a.as_str(), b.as_str())) {
                    let (wa, wb) = (p.rollouts[a].wave, p.rollouts[b].wave);
                    if consumers_first {
                        assert!(wa < wb, "{context}: {a} calls {b}: wave {wa} !< {wb}");
                    } else {
                        assert!(wb < wa, "{context}: {a} calls {b}: wave {wb} !< {wa}");
                    }
                    let held = if consumers_first {
                        &p.rollouts[a]
                    } else {
                        &p.rollouts[b]
                    };
                    let other = if consumers_first { b } else { a };
                    assert!(held.holds_on_failure.contains(other), "{context}");
                }
            }
        }
        assert!(p.notes.is_empty(), "a DAG has no cycle: {context}");

        // Within one dependency level (longest chain of changed services below
        // it), the less critical tier goes first and equal tiers share a wave.
        let mut level: BTreeMap<&str, usize> = BTreeMap::new();
        while level.len() < changed.len() {
            for a in &changed {
                if level.contains_key(a.as_str()) {
                    continue;
                }
                let below: Vec<&String> = changed
                    .iter()
                    .filter(|b| {
                        if consumers_first {
                            calls.contains(&(b.as_str(), a.as_str()))
                        } else {
                            calls.contains(&(a.as_str(), b.as_str()))
                        }
                    })
                    .collect();
                if below.iter().all(|b| level.contains_key(b.as_str())) {
                    let l = below
                        .iter()
                        .map(|b| level[b.as_str()] + 1)
                        .max()
                        .unwrap_or(0);
                    level.insert(a, l);
                }
            }
        }
        let tier = |s: &str| p.rollouts[s].tier.map_or(0, |t| t.0);
        for a in &changed {
            for b in &changed {
                if level[a.as_str()] != level[b.as_str()] {
                    continue;
                }
                let (wa, wb) = (p.rollouts[a].wave, p.rollouts[b].wave);
                match tier(a).cmp(&tier(b)) {
                    std::cmp::Ordering::Equal => assert_eq!(wa, wb, "{context}: {a} {b}"),
                    std::cmp::Ordering::Greater => assert!(wa < wb, "{context}: {a} {b}"),
                    std::cmp::Ordering::Less => assert!(wa > wb, "{context}: {a} {b}"),
                }
            }
        }

        // The same inputs in another order give the same plan.
        let again = plan(&f, &changed, None, &Specs::default(), &options).unwrap();
        assert_eq!(again, p, "{context}");
        let mut shuffled = changed.clone();
        rng.shuffle(&mut shuffled);
        shuffled.push(shuffled[0].clone());
        let mut f2 = f.clone();
        for s in &mut f2.services {
            rng.shuffle(&mut s.depends_on);
        }
        let other = plan(&f2, &shuffled, None, &Specs::default(), &options).unwrap();
        assert_eq!(
            serde_json::to_string(&other).unwrap(),
            serde_json::to_string(&p).unwrap(),
            "{context}"
        );
    }
}
