use super::*;
use crate::version::Tag;
use model::Service;

fn source() -> TemplateSource {
    TemplateSource {
        gitlab_project: Some("platform/ci".into()),
        github_repo: Some("acme/ci".into()),
    }
}

fn gitlab_app(name: &str, owner: &str, reference: &str) -> Service {
    let text =
        format!("include:\n  - project: platform/ci\n{reference}    file: templates/build.yml\n");
    Service {
        name: name.into(),
        owner: Some(Owner(owner.into())),
        tier: Some(Tier(2)),
        templates: scan::gitlab::parse(&format!("{name}/.gitlab-ci.yml"), &text).templates,
        ..Service::default()
    }
}

fn github_app(name: &str, owner: &str, version: &str) -> Service {
    let text = format!("jobs:\n  b:\n    uses: acme/ci/.github/workflows/build.yml@{version}\n");
    Service {
        name: name.into(),
        owner: Some(Owner(owner.into())),
        templates: scan::github::parse(&format!("{name}/.github/workflows/ci.yml"), &text)
            .templates,
        ..Service::default()
    }
}

fn report(window: u64) -> AdoptionReport {
    let tags: Vec<Tag> = [
        "v0.8.0",
        "v0.9.0",
        "v1.0.0",
        "v1.4.2",
        "v2.0.0",
        "v3.0.0-rc.1",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| Tag {
        name: (*t).into(),
        commit: format!("{i:0>40}"),
    })
    .collect();
    let (releases, _) = Releases::from_tags("ci", &tags);
    let fleet = Fleet {
        services: vec![
            gitlab_app("a", "team-a", "    ref: v2.0.0\n"),
            gitlab_app("b", "team-b", "    ref: v1.4.2\n"),
            github_app("c", "team-a", "v1.0.0"),
            gitlab_app("d", "team-b", "    ref: v0.9.0\n"),
            github_app("e", "team-c", "v0.8.0"),
            gitlab_app("f", "team-c", ""),
            github_app("g", "team-c", "main"),
            github_app("h", "team-a", "v2"),
            Service {
                name: "i".into(),
                ..Service::default()
            },
        ],
        ..Fleet::default()
    };
    adoption(&fleet, &source(), &releases, window)
}

fn render(report: &AdoptionReport) -> String {
    let mut out = format!(
        "latest {} supported {} apps {}\n",
        report.latest.as_deref().unwrap_or("-"),
        report.supported_lines.join(","),
        report.apps
    );
    for v in &report.versions {
        out.push_str(&format!(
            "{} {} {:?} {}\n",
            v.version,
            v.apps,
            v.supported,
            v.services.join(",")
        ));
    }
    for s in &report.stragglers {
        out.push_str(&format!(
            "straggler {} {} [{}] {} ({})\n",
            s.service,
            s.owner.as_ref().map_or("-", |o| o.0.as_str()),
            s.versions.join(","),
            s.reason,
            s.at
        ));
    }
    for o in &report.straggler_owners {
        out.push_str(&format!(
            "owner {} {}\n",
            o.owner.as_ref().map_or("-", |o| o.0.as_str()),
            o.stragglers
        ));
    }
    out
}

#[test]
fn versions_and_stragglers_with_the_default_window() {
    let actual = render(&report(1));
    assert_eq!(
        actual,
        "latest v2.0.0 supported v2,v1 apps 8
v2.0.0 2 Some(true) a,h
v1.4.2 1 Some(true) b
v1.0.0 1 Some(true) c
v0.9.0 1 Some(false) d
v0.8.0 1 Some(false) e
main 1 None g
unpinned 1 None f
straggler d team-b [v0.9.0] v0.9.0 is on line v0.9, outside the support window (d/.gitlab-ci.yml:2)
straggler e team-c [v0.8.0] v0.8.0 is on line v0.8, outside the support window (e/.github/workflows/ci.yml:3)
straggler f team-c [unpinned] not pinned: follows the default branch (f/.gitlab-ci.yml:2)
straggler g team-c [main] main is not a release of the template (g/.github/workflows/ci.yml:3)
owner team-c 3
owner team-b 1
",
        "\n--- actual ---\n{actual}"
    );
}

#[test]
fn a_wider_window_supports_more_lines() {
    let r = report(3);
    assert_eq!(r.supported_lines, ["v2", "v1", "v0.9", "v0.8"]);
    let stragglers: Vec<&str> = r.stragglers.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(stragglers, ["f", "g"]);
    let strict = report(0);
    assert_eq!(strict.supported_lines, ["v2"]);
    assert_eq!(strict.stragglers.len(), 6);
}
