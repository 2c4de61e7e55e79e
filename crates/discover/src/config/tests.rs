use super::*;

#[test]
fn every_key_is_optional_and_defaults_apply() {
    let config = Config::parse("").expect("empty is valid");
    assert_eq!(config, Config::default());
    assert_eq!(config.scan.max_file_bytes, DEFAULT_MAX_FILE_BYTES);
}

#[test]
fn a_full_file_is_read() {
    let config = Config::parse(
        "[scan]\nexclude = [\"archive/**\"]\nmax_file_bytes = 1024\n\
         [templates]\nrepo = \"ci-templates\"\nproject = \"platform/ci-templates\"\ngithub = \"acme/ci-templates\"\n\
         [images]\nbase_repo = \"base-images\"\napproved_registries = [\"registry.acme.internal/base/\"]\n\
         [reports]\ntrivy = [\"reports/trivy\"]\n[cluster]\nsnapshots = [\"cluster/prod.json\"]\ncontexts = [\"prod\"]\nkubeconfig = \"ops/kubeconfig\"\n\
         [hosts]\ninventory = \"inventory/hosts.yaml\"\n",
    )
    .expect("valid");
    assert_eq!(config.scan.exclude, ["archive/**"]);
    assert_eq!(config.scan.max_file_bytes, 1024);
    assert_eq!(
        config.templates.project.as_deref(),
        Some("platform/ci-templates")
    );
    assert_eq!(
        config.images.approved_registries,
        ["registry.acme.internal/base/"]
    );
    assert_eq!(config.reports.trivy, ["reports/trivy"]);
    assert_eq!(config.cluster.contexts, ["prod"]);
    assert_eq!(config.cluster.kubeconfig.as_deref(), Some("ops/kubeconfig"));
    assert_eq!(
        config.hosts.inventory.as_deref(),
        Some("inventory/hosts.yaml")
    );
}

#[test]
fn typos_and_wrong_types_are_errors_with_their_line() {
    for (text, fragments) in [
        (
            "[images]\napproved_registry = []\n",
            &["line 2", "approved_registry"][..],
        ),
        ("[scan]\nmax_file_bytes = \"big\"\n", &["line 2"][..]),
        ("[templates\n", &["line 1"][..]),
    ] {
        let err = Config::parse(text).expect_err(text);
        for fragment in fragments {
            assert!(err.contains(fragment), "{text:?}: {err}");
        }
    }
}
