//! Unit tests of the generator's building blocks.

use std::collections::HashSet;

use super::render::repository;
use super::rng::{Rng, digest, quota};
use super::templates::{self, Flavor, RELEASES, V1_4, V2};
use super::topology::{self, UNRESOLVED};
use super::truth::{InputValue, Layer, Pinning};

#[test]
fn rng_is_deterministic_and_streams_are_independent() {
    let draw = |mut rng: Rng| (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>();
    assert_eq!(draw(Rng::new(42)), draw(Rng::new(42)));
    assert_ne!(draw(Rng::new(42)), draw(Rng::new(43)));
    assert_ne!(draw(Rng::derive(42, "a")), draw(Rng::derive(42, "b")));
    let mut rng = Rng::new(7);
    for n in [1, 2, 3, 10, 1000] {
        assert!((0..200).all(|_| rng.below(n) < n));
    }
    let sha = digest(1, "x");
    assert_eq!(sha.len(), "sha256:".len() + 64);
    assert!(
        sha["sha256:".len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    );
}

#[test]
fn quota_hits_exact_counts_and_keeps_rare_classes() {
    let weights = [('a', 80), ('b', 12), ('c', 4), ('d', 2), ('e', 2)];
    for n in [5, 20, 100, 1000] {
        let values = quota(&mut Rng::new(n as u64), n, &weights);
        assert_eq!(values.len(), n);
        for (class, _) in weights {
            assert!(values.contains(&class), "{class} missing at n={n}");
        }
    }
    let values = quota(&mut Rng::new(1), 100, &weights);
    assert_eq!(values.iter().filter(|v| **v == 'b').count(), 12);
    assert_eq!(values.iter().filter(|v| **v == 'a').count(), 80);
    assert!(quota(&mut Rng::new(1), 0, &weights).is_empty());
}

#[test]
fn pinning_and_repository_follow_reference_syntax() {
    let cases = [
        (
            "registry.acme.internal/base/go-1.22:2024.10@sha256:ab",
            Pinning::Digest,
        ),
        (
            "registry.acme.internal/base/go-1.22@sha256:ab",
            Pinning::Digest,
        ),
        ("registry.acme.internal/base/go-1.22:2024.10", Pinning::Tag),
        (
            "registry.acme.internal/base/go-1.22:latest",
            Pinning::Latest,
        ),
        ("registry.acme.internal/base/go-1.22", Pinning::Untagged),
        ("localhost:5000/app", Pinning::Untagged),
    ];
    for (reference, pinning) in cases {
        assert_eq!(Pinning::of(reference), pinning, "{reference}");
    }
    assert_eq!(repository("a.b/c/d:1.2@sha256:ff"), "a.b/c/d");
    assert_eq!(repository("a.b/c/d:latest"), "a.b/c/d");
    assert_eq!(repository("localhost:5000/app"), "localhost:5000/app");
}

#[test]
fn template_inputs_grow_compatibly_until_v2() {
    for flavor in [Flavor::GitLab, Flavor::GitHub] {
        for (release, tag) in RELEASES.iter().enumerate().take(V2).skip(1) {
            let before = templates::build_inputs(release - 1, flavor);
            let after = templates::build_inputs(release, flavor);
            for old in &before {
                assert!(
                    after.iter().any(|new| new.name == old.name),
                    "{tag} drops {} in {}",
                    old.name,
                    flavor_name(flavor)
                );
            }
            for new in &after {
                assert!(
                    new.default.is_some(),
                    "{tag} input {} is mandatory",
                    new.name
                );
            }
        }
        let v2 = templates::build_inputs(V2, flavor);
        let names: Vec<&str> = v2.iter().map(|spec| spec.name).collect();
        assert!(!names.contains(&"image_name") && !names.contains(&"docker_context"));
        assert!(
            v2.iter()
                .any(|spec| spec.name == "image" && spec.default.is_none())
        );
    }
    let language = |release| {
        templates::build_inputs(release, Flavor::GitLab)
            .into_iter()
            .find(|spec| spec.name == "language")
            .map(|spec| spec.options)
            .unwrap_or_default()
    };
    assert!(language(V2 - 1).contains(&"rust") && !language(V2).contains(&"rust"));
}

fn flavor_name(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::GitLab => "gitlab",
        Flavor::GitHub => "github",
    }
}

#[test]
fn v2_break_reasons_name_each_incompatibility() {
    let text = |value: &str| InputValue::Str(value.to_owned());
    let safe = [
        ("image", text("r/x")),
        ("language", text("go")),
        ("sbom", InputValue::Bool(true)),
    ];
    assert!(templates::v2_break_reasons(Flavor::GitLab, &safe, false).is_empty());
    let legacy = [
        ("image_name", text("r/x")),
        ("docker_context", text(".")),
        ("language", text("rust")),
    ];
    assert_eq!(
        templates::v2_break_reasons(Flavor::GitLab, &legacy, true),
        [
            "input image_name removed",
            "input docker_context removed",
            "input language value rust not in options",
            "input image is required",
            "job lint removed",
        ]
    );
    // GitHub cannot declare options, so only the removed and required inputs count there.
    assert_eq!(
        templates::v2_break_reasons(Flavor::GitHub, &legacy, false),
        [
            "input image_name removed",
            "input docker_context removed",
            "input image is required",
        ]
    );
}

#[test]
fn template_files_change_as_released() {
    let repo = templates::repo();
    assert_eq!(repo.commits.len(), RELEASES.len());
    let build = |release: usize| {
        repo.commits[release]
            .files
            .iter()
            .find(|file| file.path == "templates/build.yml")
            .map(|file| file.content.clone())
            .unwrap_or_default()
    };
    assert!(build(V1_4).contains("\nlint:\n") && !build(V2).contains("\nlint:\n"));
    assert!(build(V2).starts_with("spec:\n  inputs:\n"));
    assert!(build(V2).contains("\n---\n") && build(V2).contains("$[[ inputs.image ]]"));
}

#[test]
fn ten_thousand_services_get_unique_valid_names_and_layers() {
    let topology = topology::build(42, 10_000);
    let mut seen = HashSet::new();
    for (index, node) in topology.nodes.iter().enumerate() {
        assert!(seen.insert(node.name.as_str()), "duplicate {}", node.name);
        assert!(node.name.len() <= 63);
        assert!(
            node.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        for dep in &node.deps {
            let callee = &topology.nodes[*dep];
            assert!(
                callee.layer.rank() > node.layer.rank()
                    || (node.layer == Layer::Domain
                        && callee.layer == Layer::Domain
                        && *dep > index),
                "{} -> {} goes neither down a layer nor forward in the domain layer",
                node.name,
                callee.name
            );
        }
    }
    for (name, _) in UNRESOLVED {
        assert!(!seen.contains(name));
    }
    let count = |layer| {
        topology
            .nodes
            .iter()
            .filter(|node| node.layer == layer)
            .count()
    };
    assert_eq!(
        [
            count(Layer::Edge),
            count(Layer::Bff),
            count(Layer::Domain),
            count(Layer::Data)
        ],
        [500, 1500, 5000, 3000]
    );
    assert!((8..=12).contains(&topology.teams.len()));
}

#[test]
fn tiny_fleets_still_plan() {
    for n in 0..6 {
        let fleet = super::plan(&super::FleetSpec {
            services: n,
            seed: 5,
            git: false,
        });
        assert_eq!(fleet.truth.services.len(), n);
        assert_eq!(fleet.repos.len(), n + 2);
    }
}

#[test]
fn the_first_edge_service_starts_a_call_chain_six_services_deep() {
    fn depth(nodes: &[topology::Node], index: usize) -> usize {
        1 + nodes[index]
            .deps
            .iter()
            .map(|dep| depth(nodes, *dep))
            .max()
            .unwrap_or(0)
    }
    for (seed, n) in [(42, 12), (42, 100), (7, 20), (3, 1000)] {
        let topology = topology::build(seed, n);
        assert_eq!(topology.nodes[0].layer, Layer::Edge);
        assert!(
            depth(&topology.nodes, 0) >= 6,
            "seed {seed}, {n} services: {}",
            topology.nodes[0].name
        );
    }
}
