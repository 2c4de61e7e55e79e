//! The generated sample fleet: the scan must find every fact the generator planted,
//! as listed in its ground-truth.json.

use crate::*;
use model::ImageRef;
use std::collections::BTreeSet;

fn canonical(image: &str) -> String {
    ImageRef::parse(image)
        .unwrap_or_else(|e| panic!("ground truth image {image}: {e}"))
        .to_string()
}

#[test]
fn scan_finds_every_planted_fact() {
    let dir = TempDir::new("sample-fleet");
    let fleet = dir.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(&fleet)
            .args(["--services", "100", "--seed", "7"]),
    );
    let truth =
        json(&std::fs::read_to_string(fleet.join("ground-truth.json")).expect("ground truth"));
    let scan = scan_json(&fleet, &dir.path().join("state"));

    let truth_services = truth["services"].as_array().expect("services");
    assert_eq!(truth_services.len(), 100);
    let scanned: BTreeSet<&str> = scan["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    let planted: BTreeSet<&str> = truth_services
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(scanned, planted);

    let mut all_images = BTreeSet::new();
    for t in truth_services {
        let name = t["name"].as_str().expect("name");
        let s = service(&scan, name);
        assert_eq!(s["owner"], t["owner"], "{name} owner");
        assert_eq!(s["tier"], t["tier"], "{name} tier");
        assert_eq!(s["repo"], t["repo"], "{name} repo");
        assert_eq!(
            strings(&s["depends_on"]),
            strings(&t["depends_on"]),
            "{name} depends_on"
        );
        let unresolved: Vec<String> = s["unresolved_dependencies"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|d| d["target"].as_str().map(str::to_string))
            .collect();
        assert_eq!(
            unresolved,
            strings(&t["unresolved_dependencies"]),
            "{name} unresolved"
        );

        assert_eq!(
            strings(&s["base_images"]),
            [canonical(t["base_image"].as_str().expect("base"))],
            "{name} base image"
        );
        let builders: BTreeSet<String> = strings(&t["builder_images"])
            .iter()
            .map(|b| canonical(b))
            .collect();
        let scanned_builders: BTreeSet<String> =
            strings(&s["builder_images"]).into_iter().collect();
        assert_eq!(scanned_builders, builders, "{name} builder images");

        let images = strings(&s["images"]);
        let overrides = t["kustomize_images"].as_array().expect("list");
        if overrides.is_empty() {
            let expected: BTreeSet<String> =
                strings(&t["images"]).iter().map(|i| canonical(i)).collect();
            assert_eq!(
                images.iter().cloned().collect::<BTreeSet<_>>(),
                expected,
                "{name} images"
            );
        } else {
            for o in overrides {
                for field in ["new_tag", "digest"] {
                    if let Some(v) = o[field].as_str() {
                        assert!(
                            images.iter().any(|i| i.contains(v)),
                            "{name}: override {field}={v} not applied to {images:?}"
                        );
                    }
                }
            }
        }
        all_images.extend(images);
        all_images.extend(strings(&s["base_images"]));
        all_images.extend(strings(&s["builder_images"]));

        let pin = &t["template"];
        let templates = s["templates"].as_array().expect("templates");
        assert!(
            templates.iter().any(|p| p["source"] == pin["source"]
                && p["version"] == pin["version"]
                && p["file"] == pin["file"]),
            "{name}: template pin {pin} not found in {templates:?}"
        );
        for extra in strings(&pin["extra_files"]) {
            assert!(
                templates.iter().any(|p| p["source"] == pin["source"]
                    && p["version"] == pin["version"]
                    && p["file"] == extra.as_str()),
                "{name}: template file {extra} not found"
            );
        }
        let routes = s["routes"].as_array().expect("routes");
        for r in t["routes"].as_array().expect("routes") {
            assert!(
                routes.iter().any(|got| got["path"] == r["path"]
                    && got["host"] == r["host"]
                    && got["public"] == r["public"]
                    && got["kind"] == r["kind"]),
                "{name}: route {r} not found in {routes:?}"
            );
        }
    }

    for key in ["latest_images", "unpinned_images"] {
        let planted = strings(&truth[key]);
        assert!(!planted.is_empty(), "{key} planted");
        for image in planted {
            let image = canonical(&image);
            assert!(
                all_images.contains(&image),
                "{key}: {image} not found by the scan"
            );
            assert_ne!(
                ImageRef::parse(&image).expect("valid").pinning(),
                model::Pinning::Digest,
                "{image}"
            );
        }
    }
}

#[test]
fn same_seed_gives_identical_fleets_and_scans() {
    let dir = TempDir::new("sample-determinism");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for path in [&a, &b] {
        run_ok(bulkhead().args(["lab", "init"]).arg(path).args([
            "--services",
            "20",
            "--seed",
            "3",
        ]));
    }
    let truth_a = std::fs::read(a.join("ground-truth.json")).expect("read");
    let truth_b = std::fs::read(b.join("ground-truth.json")).expect("read");
    assert_eq!(truth_a, truth_b);
    let scan_a = scan_json(&a, &dir.path().join("state-a"));
    let scan_b = scan_json(&b, &dir.path().join("state-b"));
    assert_eq!(scan_a["services"], scan_b["services"]);
    assert_eq!(scan_a["repos"], scan_b["repos"], "same commits");
}
