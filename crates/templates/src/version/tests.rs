use super::*;

#[track_caller]
fn check_parse(cases: &[(&str, &str)]) {
    for (text, expect) in cases {
        let actual = match Version::parse(text) {
            Ok(v) => v.to_string(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(actual, *expect, "parsing {text:?}");
    }
}

#[test]
fn parses_release_tags_and_refuses_everything_else() {
    check_parse(&[
        ("v1.2.3", "1.2.3"),
        ("1.2.3", "1.2.3"),
        ("v2.0.0-rc.1", "2.0.0-rc.1"),
        ("v1.0.0+build.5", "1.0.0"),
        ("v10.20.30", "10.20.30"),
        (
            "latest",
            r#"error: "latest" is not a release version (expected vMAJOR.MINOR.PATCH)"#,
        ),
        (
            "v1.2",
            r#"error: "v1.2" is not a release version (expected vMAJOR.MINOR.PATCH)"#,
        ),
        (
            "v1.2.3.4",
            r#"error: "v1.2.3.4" is not a release version (expected vMAJOR.MINOR.PATCH)"#,
        ),
        (
            "v01.2.3",
            r#"error: "v01.2.3" is not a release version (expected vMAJOR.MINOR.PATCH)"#,
        ),
        (
            "v1.2.x",
            r#"error: "v1.2.x" is not a release version (expected vMAJOR.MINOR.PATCH)"#,
        ),
        (
            "v1.2.3-",
            r#"error: "v1.2.3-" is not a release version (expected vMAJOR.MINOR.PATCH)"#,
        ),
        (
            "",
            r#"error: "" is not a release version (expected vMAJOR.MINOR.PATCH)"#,
        ),
    ]);
}

#[test]
fn orders_pre_releases_before_their_release() {
    let mut versions: Vec<Version> = [
        "2.0.0",
        "2.0.0-rc.2",
        "2.0.0-rc.10",
        "2.0.0-alpha",
        "1.9.9",
        "2.0.0-rc",
    ]
    .iter()
    .map(|t| Version::parse(t).expect("valid"))
    .collect();
    versions.sort();
    let shown: Vec<String> = versions.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "1.9.9",
            "2.0.0-alpha",
            "2.0.0-rc",
            "2.0.0-rc.2",
            "2.0.0-rc.10",
            "2.0.0"
        ]
    );
}

#[test]
fn bump_sizes_read_0_x_like_cargo() {
    let cases = [
        ("1.4.2", "2.0.0", Bump::Major),
        ("1.4.2", "1.5.0", Bump::Minor),
        ("1.4.2", "1.4.3", Bump::Patch),
        ("1.4.2", "1.4.2", Bump::None),
        ("1.4.2", "1.4.1", Bump::None),
        ("2.0.0-rc.1", "2.0.0", Bump::Patch),
        ("0.8.0", "0.9.0", Bump::Major),
        ("0.8.0", "0.8.1", Bump::Minor),
        ("0.9.0", "1.0.0", Bump::Major),
    ];
    for (old, new, expect) in cases {
        let old_v = Version::parse(old).expect("valid");
        let new_v = Version::parse(new).expect("valid");
        assert_eq!(old_v.bump_to(&new_v), expect, "{old} -> {new}");
    }
}

fn tag(name: &str, commit: &str) -> Tag {
    Tag {
        name: name.to_string(),
        commit: commit.to_string(),
    }
}

#[test]
fn non_release_tags_are_diagnostics_not_failures() {
    let tags = [
        tag("v1.0.0", "aaaaaaa1"),
        tag("latest", "bbbbbbb2"),
        tag("v1.1.0", "bbbbbbb2"),
        tag("1.1.0", "ccccccc3"),
        tag("v2.0.0-rc.1", "ddddddd4"),
        tag("nightly", "eeeeeee5"),
    ];
    let (releases, diagnostics) = Releases::from_tags("ci-templates", &tags);
    let names: Vec<&str> = releases.all().iter().map(|r| r.tag.as_str()).collect();
    assert_eq!(names, ["v1.0.0", "1.1.0", "v2.0.0-rc.1"]);
    let messages: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            r#"ci-templates: info: tag latest: "latest" is not a release version (expected vMAJOR.MINOR.PATCH); not a release, ignored"#,
            r#"ci-templates: info: tag nightly: "nightly" is not a release version (expected vMAJOR.MINOR.PATCH); not a release, ignored"#,
            "ci-templates: warning: tags 1.1.0 and v1.1.0 name the same version; using 1.1.0",
        ]
    );
    assert_eq!(releases.latest().map(|r| r.tag.as_str()), Some("1.1.0"));
}

#[test]
fn pins_resolve_the_way_gitlab_and_github_resolve_them() {
    let tags = [
        tag("v1.2.0", "1111111aaaa"),
        tag("v1.3.0", "2222222bbbb"),
        tag("v1.3.1", "3333333cccc"),
        tag("v2.0.0", "4444444dddd"),
        tag("v2.1.0-rc.1", "5555555eeee"),
    ];
    let (releases, _) = Releases::from_tags("r", &tags);
    let cases = [
        ("v1.3.0", Some("v1.3.0")),
        ("1.3.0", Some("v1.3.0")),
        ("1.3", Some("v1.3.1")),
        ("v1", Some("v1.3.1")),
        ("2", Some("v2.0.0")),
        ("~latest", Some("v2.0.0")),
        ("2222222", Some("v1.3.0")),
        ("2222222bbbb", Some("v1.3.0")),
        ("main", None),
        ("v3", None),
        ("1.4.0", None),
        ("", None),
    ];
    for (pin, expect) in cases {
        assert_eq!(
            releases.resolve(pin).map(|r| r.tag.as_str()),
            expect,
            "pin {pin:?}"
        );
    }
}

#[test]
fn versions_are_spelled_like_the_pin_they_replace() {
    assert_eq!(spelled_like("v2.0.0", "1.3.0"), "2.0.0");
    assert_eq!(spelled_like("v2.0.0", "v1.3.0"), "v2.0.0");
    assert_eq!(spelled_like("2.0.0", "v1.3.0"), "v2.0.0");
}
