use super::*;

/// Each valid reference with its fully qualified form and pinning.
#[test]
fn parses_every_reference_form() {
    let cases = [
        ("nginx", "docker.io/library/nginx", Pinning::None),
        ("nginx:1.27", "docker.io/library/nginx:1.27", Pinning::Tag),
        (
            "nginx:latest",
            "docker.io/library/nginx:latest",
            Pinning::Latest,
        ),
        ("library/nginx", "docker.io/library/nginx", Pinning::None),
        (
            "index.docker.io/library/nginx:1",
            "docker.io/library/nginx:1",
            Pinning::Tag,
        ),
        (
            "bitnami/redis:7.2",
            "docker.io/bitnami/redis:7.2",
            Pinning::Tag,
        ),
        ("localhost/app", "localhost/app", Pinning::None),
        (
            "localhost:5000/team/app:v2",
            "localhost:5000/team/app:v2",
            Pinning::Tag,
        ),
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1", Pinning::Tag),
        ("[::1]:5000/app:1", "[::1]:5000/app:1", Pinning::Tag),
        (
            "ghcr.io/org/group/sub/app:1.0.0-rc.1",
            "ghcr.io/org/group/sub/app:1.0.0-rc.1",
            Pinning::Tag,
        ),
        (
            "registry.acme.internal:8443/base/go-1.22:2024.10",
            "registry.acme.internal:8443/base/go-1.22:2024.10",
            Pinning::Tag,
        ),
        (
            "alpine@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "docker.io/library/alpine@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            Pinning::Digest,
        ),
        (
            "gcr.io/distroless/base:nonroot@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "gcr.io/distroless/base:nonroot@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            Pinning::Digest,
        ),
        (
            "my_org/my__app.v2/a-b--c:_tag",
            "docker.io/my_org/my__app.v2/a-b--c:_tag",
            Pinning::Tag,
        ),
        (
            "Registry.Example.com/app",
            "Registry.Example.com/app",
            Pinning::None,
        ),
    ];
    for (input, expected, pinning) in cases {
        let parsed = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(parsed.to_string(), expected, "{input}");
        assert_eq!(parsed.pinning(), pinning, "{input}");
        let again = ImageRef::parse(&parsed.to_string()).expect("canonical form parses");
        assert_eq!(again, parsed, "round trip of {input}");
    }
}

#[test]
fn splits_components() {
    let r = ImageRef::parse("localhost:5000/team/app:v2@sha256:2222222222222222222222222222222222222222222222222222222222222222")
        .expect("valid");
    assert_eq!(r.registry(), "localhost:5000");
    assert_eq!(r.repository(), "team/app");
    assert_eq!(r.tag(), Some("v2"));
    assert_eq!(r.digest().map(Digest::algorithm), Some("sha256"));
    assert_eq!(r.name(), "localhost:5000/team/app");
    assert_eq!(
        ImageRef::parse("docker.io/library/redis:7")
            .expect("valid")
            .familiar(),
        "redis:7"
    );
}

/// Each invalid reference with a fragment of the reason it must give.
#[test]
fn rejects_invalid_references_with_a_reason() {
    let cases = [
        ("", "empty"),
        ("Nginx", "lowercase"),
        ("nginx:", "tag must start"),
        ("nginx:-x", "tag must start"),
        ("nginx:a+b", "invalid character in tag"),
        ("org//app", "empty path component"),
        ("app/", "empty path component"),
        ("-app", "start and end"),
        ("app-", "start and end"),
        ("a...b", "separator"),
        ("a___b", "separator"),
        ("app@sha256:abc", "wrong digest length"),
        (
            "app@sha256:ZZZZ111111111111111111111111111111111111111111111111111111111111",
            "hexadecimal",
        ),
        (
            "app@sha256:AAAA111111111111111111111111111111111111111111111111111111111111",
            "lowercase",
        ),
        ("app@sha256", "missing ':'"),
        (
            "app@1sha:0123456789abcdef0123456789abcdef",
            "invalid algorithm",
        ),
        ("localhost:99999/app", "port"),
        ("local_host:5000/app", "registry host"),
        ("[::1/app", "IPv6"),
        ("nginx 1.2", "whitespace"),
        ("${BASE_IMAGE}", "invalid"),
    ];
    for (input, reason) in cases {
        let err = ImageRef::parse(input).expect_err(input).to_string();
        assert!(
            err.contains(reason),
            "{input:?}: {err:?} should mention {reason:?}"
        );
    }
    let long_tag = format!("app:{}", "a".repeat(129));
    assert!(ImageRef::parse(&long_tag).is_err());
    let long_name = "a".repeat(256);
    assert!(ImageRef::parse(&long_name).is_err());
}

#[test]
fn registry_prefix_match_respects_path_boundaries() {
    let r = ImageRef::parse("registry.acme.internal/base-evil/go:1").expect("valid");
    assert!(!r.is_under("registry.acme.internal/base/"));
    assert!(!r.is_under("registry.acme.internal/base"));
    assert!(r.is_under("registry.acme.internal/"));
    let ok = ImageRef::parse("registry.acme.internal/base/go:1").expect("valid");
    assert!(ok.is_under("registry.acme.internal/base/"));
    assert!(ok.is_under("registry.acme.internal/base/go"));
}

/// Every way of writing a Docker Hub official image names one image, in
/// references and in the prefixes policies compare against.
#[test]
fn docker_hub_forms_of_an_official_image_are_one_name() {
    let forms = [
        "busybox",
        "library/busybox",
        "docker.io/busybox",
        "docker.io/library/busybox",
        "index.docker.io/busybox",
        "index.docker.io/library/busybox",
    ];
    for form in forms {
        let image = ImageRef::parse(&format!("{form}:1.36")).expect(form);
        assert_eq!(image.name(), "docker.io/library/busybox", "{form}");
        assert_eq!(image.familiar(), "busybox:1.36", "{form}");
        for prefix in forms {
            assert!(image.is_under(prefix), "{form} under {prefix}");
            assert!(
                image.is_under(&format!("{prefix}/")),
                "{form} under {prefix}/"
            );
        }
        assert!(image.is_under("docker.io"), "{form}");
        assert!(image.is_under("index.docker.io/"), "{form}");
        assert!(!image.is_under("busy"), "{form}");
        assert!(!image.is_under("docker.io/busybox-evil"), "{form}");
        assert!(!image.is_under("ghcr.io/busybox"), "{form}");
    }
    // A single Docker Hub component is also a namespace, and a namespaced
    // image is no official one.
    let redis = ImageRef::parse("bitnami/redis:7.2").expect("valid");
    assert!(redis.is_under("docker.io/bitnami"));
    assert!(redis.is_under("bitnami"));
    assert!(!redis.is_under("docker.io/library/bitnami"));
    assert!(!redis.is_under("redis"));
    // Other registries keep their paths as written.
    let ghcr = ImageRef::parse("ghcr.io/busybox").expect("valid");
    assert_eq!(ghcr.name(), "ghcr.io/busybox");
    assert!(!ghcr.is_under("busybox"));
}

#[test]
fn serializes_as_its_canonical_string() {
    let r = ImageRef::parse("redis:7").expect("valid");
    let json = serde_json::to_string(&r).expect("serialize");
    assert_eq!(json, "\"docker.io/library/redis:7\"");
    let back: ImageRef = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, r);
}
