use super::*;

const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn selection<'a>(to: &'a ImageRef, written: &'a str, from: Option<&'a ImageRef>) -> Selection<'a> {
    Selection {
        from,
        to,
        to_written: written,
    }
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

/// (case, file text, --to, --from, expected text or None for "nothing moves").
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

const KUSTOMIZATIONS: &[Case] = &[
    (
        "newTag replaced, digest added after the entry's last key",
        "resources: [deploy.yaml]\nimages:\n  - name: registry.acme.internal/apps/orders\n    newTag: \"1.4.2\" # pinned by release\n  - name: redis\n    newTag: \"7\"\n",
        "registry.acme.internal/apps/orders:1.5.0@sha256:2222222222222222222222222222222222222222222222222222222222222222",
        None,
        Some(
            "resources: [deploy.yaml]\nimages:\n  - name: registry.acme.internal/apps/orders\n    newTag: \"1.5.0\" # pinned by release\n    digest: sha256:2222222222222222222222222222222222222222222222222222222222222222\n  - name: redis\n    newTag: \"7\"\n",
        ),
    ),
    (
        "an entry renaming to the image: newName stays, tag moves, old digest goes",
        "images:\n- name: orders\n  newName: registry.acme.internal/apps/orders\n  newTag: 1.4.2\n  digest: sha256:1111111111111111111111111111111111111111111111111111111111111111\n",
        "registry.acme.internal/apps/orders:1.5.0",
        None,
        Some(
            "images:\n- name: orders\n  newName: registry.acme.internal/apps/orders\n  newTag: 1.5.0\n",
        ),
    ),
    (
        "--from moves only that exact reference, to another registry",
        "images:\n- name: orders\n  newName: old.registry/apps/orders\n  newTag: \"1.4\"\n- name: billing\n  newName: old.registry/apps/orders\n  newTag: \"1.3\"\n",
        "registry.acme.internal/apps/orders:1.20",
        Some("old.registry/apps/orders:1.4"),
        Some(
            "images:\n- name: orders\n  newName: registry.acme.internal/apps/orders\n  newTag: \"1.20\"\n- name: billing\n  newName: old.registry/apps/orders\n  newTag: \"1.3\"\n",
        ),
    ),
    (
        "already at the reference: nothing moves",
        "images:\n- name: registry.acme.internal/apps/orders\n  newTag: 1.5.0\n",
        "registry.acme.internal/apps/orders:1.5.0",
        None,
        None,
    ),
    (
        "a flow entry whose values change is edited in place",
        "images:\n  - {name: registry.acme.internal/apps/orders, newTag: 1.4.2}\n",
        "registry.acme.internal/apps/orders:1.5.0",
        None,
        Some("images:\n  - {name: registry.acme.internal/apps/orders, newTag: 1.5.0}\n"),
    ),
];

#[test]
fn kustomization_images_move_with_every_other_byte_kept() {
    for (case, text, to, from, expect) in KUSTOMIZATIONS {
        let to_ref = image(to);
        let from_ref = from.map(image);
        let got = rewrite_kustomization(
            "apps/orders/kustomization.yaml",
            text,
            &selection(&to_ref, to, from_ref.as_ref()),
        )
        .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(got.as_ref().map(|(t, _)| t.as_str()), *expect, "{case}");
        if let Some((_, moved)) = got {
            assert_eq!(moved.len(), 1, "{case}");
            assert_eq!(moved[0].to, *to, "{case}");
        }
    }
}

#[test]
fn a_flow_entry_that_needs_a_new_key_is_refused_with_its_line() {
    let to = format!("registry.acme.internal/apps/orders:1.5.0@{DIGEST}");
    let error = rewrite_kustomization(
        "k/kustomization.yaml",
        "images:\n  - {name: registry.acme.internal/apps/orders, newTag: 1.4.2}\n",
        &selection(&image(&to), &to, None),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "k/kustomization.yaml:2: add digest by hand: bulkhead adds keys to block mappings only"
    );
}

const VALUES: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "a repository/tag block; the digest goes on the tag, where the chart reads it",
        "replicaCount: 2\nimage:\n  repository: registry.acme.internal/apps/orders\n  tag: \"1.4.2\"\n  pullPolicy: IfNotPresent\nsidecar:\n  image: redis:7\n",
        "registry.acme.internal/apps/orders:1.5.0@sha256:2222222222222222222222222222222222222222222222222222222222222222",
        Some(
            "replicaCount: 2\nimage:\n  repository: registry.acme.internal/apps/orders\n  tag: \"1.5.0@sha256:2222222222222222222222222222222222222222222222222222222222222222\"\n  pullPolicy: IfNotPresent\nsidecar:\n  image: redis:7\n",
        ),
    ),
    (
        "a registry/repository/tag/digest block (bitnami's shape)",
        "image:\n  registry: registry.acme.internal\n  repository: apps/orders\n  tag: 1.4.2\n  digest: \"\"\n",
        "registry.acme.internal/apps/orders:1.5.0@sha256:2222222222222222222222222222222222222222222222222222222222222222",
        Some(
            "image:\n  registry: registry.acme.internal\n  repository: apps/orders\n  tag: 1.5.0\n  digest: \"sha256:2222222222222222222222222222222222222222222222222222222222222222\"\n",
        ),
    ),
    (
        "image strings anywhere in the values, in lists too",
        "workers:\n  - name: a\n    image: registry.acme.internal/apps/orders:1.4.2\n  - name: b\n    image: \"registry.acme.internal/apps/orders:1.3.0\"\n",
        "registry.acme.internal/apps/orders:1.5.0",
        Some(
            "workers:\n  - name: a\n    image: registry.acme.internal/apps/orders:1.5.0\n  - name: b\n    image: \"registry.acme.internal/apps/orders:1.5.0\"\n",
        ),
    ),
    (
        "another image: nothing moves",
        "image:\n  repository: redis\n  tag: \"7\"\n",
        "registry.acme.internal/apps/orders:1.5.0",
        None,
    ),
];

#[test]
fn helm_values_move_with_every_other_byte_kept() {
    for (case, text, to, expect) in VALUES {
        let to_ref = image(to);
        let got = rewrite_helm_values("chart/values.yaml", text, &selection(&to_ref, to, None))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(got.as_ref().map(|(t, _)| t.as_str()), *expect, "{case}");
    }
}

#[test]
fn a_digest_without_a_tag_or_a_digest_key_is_refused() {
    let to = format!("registry.acme.internal/apps/orders@{DIGEST}");
    let error = rewrite_helm_values(
        "chart/values.yaml",
        "image:\n  repository: registry.acme.internal/apps/orders\n  tag: 1.4.2\n",
        &selection(&image(&to), &to, None),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("chart/values.yaml:2: this values block has no digest key"),
        "{error}"
    );
    let error = rewrite_helm_values(
        "chart/values.yaml",
        "a: [b\n",
        &selection(&image(&to), &to, None),
    )
    .unwrap_err();
    assert!(error.to_string().contains("not YAML"), "{error}");
}
