use super::*;
use crate::check::{TemplateSource, check_fleet};
use crate::version::Tag;

const TEMPLATE: &str = "spec:\n  inputs:\n    image:\n      default: \"\"\n    language:\n      default: go\n      options: [go, java, python]\n    sbom:\n      type: boolean\n      default: false\n---\nbuild:\n  script: [build]\n";

fn source() -> TemplateSource {
    TemplateSource {
        gitlab_project: Some("platform/ci".into()),
        github_repo: None,
    }
}

/// A service whose `.gitlab-ci.yml` includes the build template at `version` with `inputs`.
fn app(name: &str, owner: &str, tier: u8, version: &str, inputs: &str) -> Service {
    let text = format!(
        "include:\n  - project: platform/ci\n    ref: {version}\n    file: templates/build.yml\n    inputs: {{{inputs}}}\n"
    );
    Service {
        name: name.into(),
        repo: Some(format!("services/{name}")),
        owner: Some(Owner(owner.into())),
        tier: Some(Tier(tier)),
        templates: scan::gitlab::parse(&format!("services/{name}/.gitlab-ci.yml"), &text).templates,
        ..Service::default()
    }
}

fn releases() -> Releases {
    let tags: Vec<Tag> = ["v1.0.0", "v1.1.0", "v2.0.0"]
        .iter()
        .map(|t| Tag {
            name: (*t).into(),
            commit: format!("{:0>40}", t.len()),
        })
        .collect();
    Releases::from_tags("ci", &tags).0
}

fn plan_for(mut services: Vec<Service>, options: &PlanOptions) -> (AdoptionPlan, Fleet) {
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let fleet = Fleet {
        services,
        ..Fleet::default()
    };
    let (set, _) = TemplateSet::read([("templates/build.yml", TEMPLATE)], &BTreeSet::new());
    let sets: BTreeMap<String, TemplateSet> = ["v1.0.0", "v1.1.0", "v2.0.0"]
        .iter()
        .map(|t| ((*t).to_string(), set.clone()))
        .collect();
    let releases = releases();
    let target = releases.by_tag("v2.0.0").expect("target").clone();
    let check = check_fleet(&fleet, &source(), &releases, &sets, &target);
    let plan = plan(
        &check,
        &fleet,
        &releases,
        &sets["v2.0.0"],
        &source(),
        options,
    );
    (plan, fleet)
}

/// `wave N name: app[covers] app ... | gate` lines, then blocked/unpinned/already/not-using.
fn render(plan: &AdoptionPlan) -> String {
    let mut out = String::new();
    for wave in &plan.waves {
        let apps: Vec<String> = wave
            .apps
            .iter()
            .map(|a| {
                if a.covers.is_empty() {
                    a.service.clone()
                } else {
                    format!("{}[{}]", a.service, a.covers.join("; "))
                }
            })
            .collect();
        out.push_str(&format!(
            "wave {} {}: {}\n",
            wave.number,
            wave.name,
            apps.join(" ")
        ));
    }
    let names = |apps: &[String]| apps.join(" ");
    let blocked: Vec<String> = plan.blocked.iter().map(|a| a.service.clone()).collect();
    out.push_str(&format!("blocked: {}\n", names(&blocked)));
    out.push_str(&format!("unpinned: {}\n", names(&plan.unpinned)));
    out.push_str(&format!("already: {}\n", names(&plan.already)));
    out.push_str(&format!("not using: {}\n", names(&plan.not_using)));
    out.push_str(&format!("combinations: {}\n", plan.combinations));
    out
}

#[track_caller]
fn check(services: Vec<Service>, options: &PlanOptions, expect: &str) -> (AdoptionPlan, Fleet) {
    let (plan, fleet) = plan_for(services, options);
    let actual = render(&plan);
    assert_eq!(
        actual,
        expect.trim_start_matches('\n'),
        "\n--- actual ---\n{actual}"
    );
    (plan, fleet)
}

#[test]
fn representatives_cover_every_combination_then_tiers_from_least_critical() {
    let services = vec![
        // Three combinations each: the less critical one (tier 3) is picked first.
        app(
            "a-orders",
            "team-a",
            1,
            "v1.0.0",
            "image: x, language: java, sbom: true",
        ),
        app(
            "b-cart",
            "team-b",
            3,
            "v1.0.0",
            "image: x, language: java, sbom: true",
        ),
        // One new combination each: tier 3 beats tier 2, then an owner not yet
        // represented (team-c) beats team-b, whatever the names say.
        app("c-search", "team-a", 2, "v1.1.0", "language: python"),
        app("d-ledger", "team-b", 3, "v1.1.0", "language: python"),
        app("e-mail", "team-c", 3, "v1.1.0", "language: python"),
        // No inputs: the template's defaults are a path of their own.
        app("f-geo", "team-d", 2, "v1.1.0", ""),
        app("g-web", "team-d", 1, "v1.1.0", ""),
        // Would break: an unknown input.
        app("h-bad", "team-e", 3, "v1.0.0", "image_name: x"),
        // Already there.
        app("i-done", "team-e", 3, "v2.0.0", "image: x"),
        Service {
            name: "j-other".into(),
            ..Service::default()
        },
    ];
    check(
        services,
        &PlanOptions::default(),
        "
wave 1 representatives: b-cart[templates/build.yml image=custom java; templates/build.yml language=java java; templates/build.yml sbom=true java] e-mail[templates/build.yml language=python python] f-geo[templates/build.yml (no inputs) unknown]
wave 2 tier 3: d-ledger
wave 3 tier 2: c-search
wave 4 tier 1: a-orders g-web
blocked: h-bad
unpinned: 
already: i-done
not using: j-other
combinations: 5
",
    );
}

#[test]
fn waves_are_cut_to_size_and_untiered_apps_go_last() {
    let mut services: Vec<Service> = (0..5)
        .map(|i| app(&format!("t3-{i}"), "team", 3, "v1.0.0", "image: x"))
        .collect();
    let mut untiered = app("zz-untiered", "team", 1, "v1.0.0", "image: x");
    untiered.tier = None;
    services.push(untiered);
    let options = PlanOptions {
        wave_size: 2,
        soak: std::time::Duration::from_secs(2 * 86_400),
    };
    let (plan, _) = check(
        services,
        &options,
        "
wave 1 representatives: t3-0[templates/build.yml image=custom unknown]
wave 2 tier 3 (1/2): t3-1 t3-2
wave 3 tier 3 (2/2): t3-3 t3-4
wave 4 untiered: zz-untiered
blocked: 
unpinned: 
already: 
not using: 
combinations: 1
",
    );
    assert_eq!(
        plan.waves[1].gate,
        "the 2 app pipeline(s) of this wave pass on v2.0.0 and their deployments stay healthy for 48h before wave 3 starts"
    );
    assert!(
        plan.waves[3]
            .gate
            .ends_with("before the adoption is declared done")
    );
    assert_eq!(plan.wave(2).map(|w| w.name.as_str()), Some("tier 3 (1/2)"));
}

#[test]
fn planning_is_deterministic_whatever_the_input_order() {
    let services = || {
        (0..12)
            .map(|i| {
                let language = ["go", "java", "python"][i % 3];
                let sbom = if i % 4 == 0 { ", sbom: true" } else { "" };
                app(
                    &format!("svc-{i:02}"),
                    &format!("team-{}", i % 5),
                    (i % 3) as u8 + 1,
                    "v1.0.0",
                    &format!("language: {language}{sbom}"),
                )
            })
            .collect::<Vec<_>>()
    };
    let (a, _) = plan_for(services(), &PlanOptions::default());
    let mut reversed = services();
    reversed.reverse();
    let (b, _) = plan_for(reversed, &PlanOptions::default());
    assert_eq!(a, b);
}

#[test]
fn the_plan_is_an_impact_report() {
    let services = vec![
        app("a-orders", "team-a", 3, "v1.0.0", "image: x"),
        app("b-bad", "team-b", 1, "v1.1.0", "nope: 1"),
    ];
    let (plan, fleet) = plan_for(services, &PlanOptions::default());
    let changes = vec![InterfaceChange {
        file: "templates/build.yml".into(),
        kind: crate::diff::ChangeKind::InputRemoved,
        subject: "input image_name".into(),
        severity: Severity::Major,
        reason: "input image_name removed".into(),
        at: Some(Provenance::new("templates/build.yml", 3)),
    }];
    let report = impact_report(&plan, &fleet, &changes, Some("v1.0.0..v1.1.0".into()));
    let table = model::report::render_table(&report);
    assert_eq!(
        table,
        "Change: template platform/ci v1.0.0..v1.1.0 -> v2.0.0

1. What breaks?
   [breaking] templates/build.yml input image_name: major: input image_name removed
       declared here in v2.0.0 (templates/build.yml:3)
   [breaking] b-bad: blocked from every wave until fixed: input nope is not declared in v2.0.0 (removed or misspelt)
       pinned here (services/b-bad/.gitlab-ci.yml:2)

2. Who is impacted? (2 service(s))
   SERVICE   OWNER   TIER  WHY                      PUBLIC ROUTES
   a-orders  team-a  3     uses platform/ci@v1.0.0  -
   b-bad     team-b  1     uses platform/ci@v1.1.0  -
   untouched: 0 service(s)

3. How fast can I roll back?
   re-pin the previous version: `bulkhead template bump v2.0.0 --wave N --rollback --apply` commits each app's old pin back on a branch (one commit per repository) (time not known)

4. How do I monitor impact?
   CI pipelines on v2.0.0: every pipeline on the bump branch passes before it is merged [a-orders]
   deployments after the merge: error rate and p99 latency stay within the pre-bump baseline for 24h [a-orders]

Plan:
   wave 1: representatives: a-orders — gate: the 1 app pipeline(s) of this wave pass on v2.0.0 and their deployments stay healthy for 24h before the adoption is declared done
"
    );
    assert_eq!(
        report.plan.waves[0].steps[0],
        Step {
            target: "a-orders".into(),
            action: "pin templates/build.yml v1.0.0 -> v2.0.0 (services/a-orders/.gitlab-ci.yml:2)"
                .into(),
            rollback: "re-pin v1.0.0".into(),
        }
    );
}

#[test]
fn value_classes() {
    let (set, _) = TemplateSet::read([("templates/build.yml", TEMPLATE)], &BTreeSet::new());
    let interface = &set.files["templates/build.yml"];
    let input = |n: &str| interface.inputs.get(n);
    let cases = [
        (input("language"), serde_json::json!("java"), "java"),
        (input("image"), serde_json::json!(""), "empty"),
        (input("image"), serde_json::json!("reg/x"), "custom"),
        (
            input("image"),
            serde_json::json!("${{ vars.X }}"),
            "expression",
        ),
        (
            input("image"),
            serde_json::json!("$CI_REGISTRY_IMAGE"),
            "expression",
        ),
        (input("sbom"), serde_json::json!(false), "default"),
        (input("sbom"), serde_json::json!(true), "true"),
        (None, serde_json::json!(3), "number"),
        (None, serde_json::json!([]), "empty-list"),
        (None, serde_json::json!(["a"]), "list"),
    ];
    for (input, value, expect) in cases {
        assert_eq!(value_class(input, &value), expect, "{value}");
    }
}
