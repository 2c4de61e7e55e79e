use super::*;
use images::bases::parse_catalog;
use model::{Service, Tier};

/// The base-images catalog: debian-12 <- go-1.22 <- go-1.22-cgo, and alpine apart.
const CATALOG: &str = r#"[
  {"name": "acme.internal/base/debian-12", "tag": "2024.10"},
  {"name": "acme.internal/base/go-1.22", "tag": "2024.10", "base": "acme.internal/base/debian-12:2024.10"},
  {"name": "acme.internal/base/go-1.22-cgo", "tag": "1", "base": "acme.internal/base/go-1.22:2024.10"},
  {"name": "acme.internal/base/alpine-3.20", "tag": "1"}
]"#;

/// Services, their tiers and the images they run.
const SERVICES: &[(&str, u8, &str)] = &[
    ("edge", 1, "acme.internal/base/alpine-3.20:1"),
    ("orders", 1, "acme.internal/base/go-1.22-cgo:1"),
    ("reports", 3, "acme.internal/base/go-1.22:2024.10"),
    ("web", 2, "acme.internal/base/debian-12:2024.10"),
];

fn fleet() -> Fleet {
    Fleet {
        services: SERVICES
            .iter()
            .map(|(name, tier, image)| Service {
                name: name.to_string(),
                tier: Some(Tier(*tier)),
                images: vec![ImageRef::parse(image).expect("image reference")],
                ..Service::default()
            })
            .collect(),
        ..Fleet::default()
    }
}

fn catalog() -> Catalog {
    let (bases, diagnostics) = parse_catalog("base/images.json", "base", CATALOG);
    assert_eq!(diagnostics, []);
    Catalog::new(bases, &[], Vec::new())
}

/// What changes, then what it reaches: each image with its lineage down to the
/// changed one, the services in rank order, the untouched services, and the
/// plan's waves with their targets.
struct Case {
    change: &'static str,
    images: &'static [&'static str],
    services: &'static [&'static str],
    untouched: &'static [&'static str],
    waves: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        change: "acme.internal/base/debian-12:2024.11",
        images: &[
            "acme.internal/base/debian-12",
            "acme.internal/base/go-1.22 -> acme.internal/base/debian-12",
            "acme.internal/base/go-1.22-cgo -> acme.internal/base/go-1.22 -> acme.internal/base/debian-12",
        ],
        services: &["orders", "web", "reports"],
        untouched: &["edge"],
        waves: &[
            "rebuild base images: acme.internal/base/go-1.22, acme.internal/base/go-1.22-cgo",
            "canary: reports",
            "tier 1: orders",
            "tier 2: web",
        ],
    },
    Case {
        change: "acme.internal/base/go-1.22",
        images: &[
            "acme.internal/base/go-1.22",
            "acme.internal/base/go-1.22-cgo -> acme.internal/base/go-1.22",
        ],
        services: &["orders", "reports"],
        untouched: &["edge", "web"],
        waves: &[
            "rebuild base images: acme.internal/base/go-1.22-cgo",
            "canary: reports",
            "tier 1: orders",
        ],
    },
    Case {
        change: "acme.internal/base/alpine-3.20:2",
        images: &["acme.internal/base/alpine-3.20"],
        services: &["edge"],
        untouched: &["orders", "reports", "web"],
        waves: &["canary: edge"],
    },
];

#[test]
fn a_base_image_change_reaches_the_images_built_on_it_and_their_services() {
    let (fleet, catalog) = (fleet(), catalog());
    for case in CASES {
        let reference = ImageRef::parse(case.change).expect("image reference");
        let query = CveQuery {
            fleet: &fleet,
            catalog: &catalog,
            running: &[],
        };
        let answer = image(query, &reference);
        assert_eq!(answer.id, reference.name(), "{}", case.change);
        assert!(answer.introduced.is_empty(), "{}", case.change);
        let images: Vec<String> = answer
            .images
            .iter()
            .inspect(|i| assert!(!i.reported, "{}: {}", case.change, i.name))
            .map(|i| i.lineage.join(" -> "))
            .collect();
        assert_eq!(images, case.images, "{}", case.change);
        let services: Vec<&str> = answer.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(services, case.services, "{}", case.change);

        let report = image_report(&answer, &fleet, &catalog, "the new build");
        assert_eq!(
            report.change,
            Change::ImageUpdate {
                image: reference.name(),
                to: "the new build".to_string(),
            }
        );
        let breaks: Vec<&str> = report
            .what_breaks
            .iter()
            .map(|f| f.subject.as_str())
            .collect();
        let built: Vec<&str> = answer.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(breaks, built, "{}", case.change);
        assert_eq!(report.untouched, case.untouched, "{}", case.change);
        let waves: Vec<String> = report
            .plan
            .waves
            .iter()
            .map(|w| {
                let targets: Vec<&str> = w.steps.iter().map(|s| s.target.as_str()).collect();
                format!("{}: {}", w.name, targets.join(", "))
            })
            .collect();
        assert_eq!(waves, case.waves, "{}", case.change);
        assert!(
            report
                .monitoring
                .iter()
                .all(|s| !s.name.ends_with("in scanner reports")),
            "{}",
            case.change
        );
    }
}
