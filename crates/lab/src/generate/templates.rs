//! The shared CI template repo (`ci-templates`): GitLab CI templates with a `spec: inputs:`
//! header and GitHub reusable workflows, released as tags v0.8.0 … v2.0.0, plus the static
//! "would this app break on v2?" rule the ground truth is derived from.
//!
//! Inputs only grow compatibly over v1.x (new optional inputs with defaults); v1.4.0 adds the
//! optional `image` input and deprecates `image_name`, so that apps can migrate before v2.0.0
//! removes `image_name` and `docker_context`, makes `image` mandatory, narrows the GitLab
//! `language` options and drops the `lint` job.

use super::truth::InputValue;
use super::{Commit, FileEntry, RepoPlan};

pub(crate) const TEMPLATE_REPO: &str = "ci-templates";
pub(crate) const GITLAB_PROJECT: &str = "platform/ci-templates";
pub(crate) const GITLAB_COMPONENT: &str = "gitlab.acme.internal/platform/ci-templates";
pub(crate) const GITHUB_REPO: &str = "acme/ci-templates";

/// Release tags in order; indexes into this array are "release numbers" below.
pub(crate) const RELEASES: [&str; 10] = [
    "v0.8.0", "v0.9.0", "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0", "v1.4.1", "v1.4.2",
    "v2.0.0",
];
pub(crate) const V1_0: usize = 2;
pub(crate) const V1_4: usize = 6;
pub(crate) const V2: usize = 9;

const NOTES: [&str; 10] = [
    "First release: build template with image_name, language and docker_context inputs.",
    "Add the run_tests input.",
    "Stable inputs: add the dockerfile input; language is restricted to the supported options.",
    "Add the registry input.",
    "Add the cache input.",
    "Add the sbom input and the sbom job.",
    "Add the platforms input; add the image input and deprecate image_name.",
    "Fix: quote the Dockerfile path.",
    "Fix: pin the kaniko executor to v1.23.2.",
    "BREAKING: image_name is removed (use image, now required); docker_context is removed; language no longer accepts rust; the lint job is removed.",
];

/// Unix time of each release commit (2024-01-08 and then roughly monthly).
fn release_date(release: usize) -> String {
    format!("{} +0000", 1_704_700_800 + release as u64 * 2_592_000)
}

/// The two CI systems differ in what an input declaration can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    GitLab,
    GitHub,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputType {
    String,
    Boolean,
}

/// One declared template input.
#[derive(Debug, Clone)]
pub(crate) struct InputSpec {
    pub(crate) name: &'static str,
    pub(crate) ty: InputType,
    /// YAML scalar of the default; `None` means the input is mandatory.
    pub(crate) default: Option<&'static str>,
    pub(crate) options: &'static [&'static str],
    description: &'static str,
}

const fn input(
    name: &'static str,
    ty: InputType,
    default: Option<&'static str>,
    description: &'static str,
) -> InputSpec {
    InputSpec {
        name,
        ty,
        default,
        options: &[],
        description,
    }
}

const LANGUAGES_V1: &[&str] = &["go", "java", "python", "node", "rust"];
const LANGUAGES_V2: &[&str] = &["go", "java", "python", "node"];

/// The build template's inputs at `release`, in declaration order.
pub(crate) fn build_inputs(release: usize, flavor: Flavor) -> Vec<InputSpec> {
    use InputType::{Boolean, String};
    let mut inputs = Vec::new();
    if release >= V1_4 {
        let default = if release >= V2 { None } else { Some("\"\"") };
        inputs.push(input(
            "image",
            String,
            default,
            "Image repository to publish, without tag.",
        ));
    }
    if release < V2 {
        let description = if release >= V1_4 {
            "Deprecated: use image."
        } else {
            "Image repository to publish, without tag; empty means $CI_REGISTRY_IMAGE."
        };
        inputs.push(input("image_name", String, Some("\"\""), description));
    }
    let mut language = input(
        "language",
        String,
        Some("go"),
        "Toolchain used for lint and tests.",
    );
    // GitHub workflow_call inputs cannot declare options, so the narrowing is GitLab-only.
    if flavor == Flavor::GitLab && release >= V1_0 {
        language.options = if release >= V2 {
            LANGUAGES_V2
        } else {
            LANGUAGES_V1
        };
    }
    inputs.push(language);
    if release < V2 {
        inputs.push(input(
            "docker_context",
            String,
            Some("."),
            "Build context, relative to the repo root.",
        ));
    }
    if release >= 1 {
        inputs.push(input(
            "run_tests",
            Boolean,
            Some("true"),
            "Run the unit-test job.",
        ));
    }
    if release >= V1_0 {
        inputs.push(input(
            "dockerfile",
            String,
            Some("Dockerfile"),
            "Path of the Dockerfile.",
        ));
    }
    if release >= 3 {
        inputs.push(input(
            "registry",
            String,
            Some("registry.acme.internal/apps"),
            "Registry to log in to.",
        ));
    }
    if release >= 4 {
        inputs.push(input(
            "cache",
            Boolean,
            Some("true"),
            "Use the remote layer cache.",
        ));
    }
    if release >= 5 {
        inputs.push(input(
            "sbom",
            Boolean,
            Some("false"),
            "Publish a CycloneDX SBOM.",
        ));
    }
    if release >= V1_4 {
        inputs.push(input(
            "platforms",
            String,
            Some("linux/amd64"),
            "Target platforms, comma separated.",
        ));
    }
    inputs
}

fn deploy_inputs(flavor: Flavor) -> Vec<InputSpec> {
    use InputType::String;
    let mut environment = input(
        "environment",
        String,
        Some("production"),
        "Target environment.",
    );
    let mut strategy = input("strategy", String, Some("rolling"), "Rollout strategy.");
    if flavor == Flavor::GitLab {
        environment.options = &["staging", "production"];
        strategy.options = &["rolling", "blue-green", "canary"];
    }
    vec![
        environment,
        input(
            "namespace",
            String,
            Some("\"\""),
            "Namespace; empty means the project's default.",
        ),
        strategy,
    ]
}

/// Why an app with these build inputs (and, on GitLab, an override of the `lint` job) fails
/// static validation against v2.0.0; empty when it is safe.
pub(crate) fn v2_break_reasons(
    flavor: Flavor,
    inputs: &[(&'static str, InputValue)],
    overrides_lint: bool,
) -> Vec<String> {
    let declared = build_inputs(V2, flavor);
    let mut reasons = Vec::new();
    for (name, value) in inputs {
        match declared.iter().find(|spec| spec.name == *name) {
            None => reasons.push(format!("input {name} removed")),
            Some(spec) => {
                if let InputValue::Str(text) = value
                    && !spec.options.is_empty()
                    && !spec.options.contains(&text.as_str())
                {
                    reasons.push(format!("input {name} value {text} not in options"));
                }
            }
        }
    }
    for spec in declared.iter().filter(|spec| spec.default.is_none()) {
        if !inputs.iter().any(|(name, _)| *name == spec.name) {
            reasons.push(format!("input {} is required", spec.name));
        }
    }
    if overrides_lint {
        reasons.push("job lint removed".to_owned());
    }
    reasons
}

/// The ci-templates repo: one commit per release, each tagged.
pub(crate) fn repo() -> RepoPlan {
    let commits = RELEASES
        .iter()
        .enumerate()
        .map(|(release, tag)| {
            let mut files = vec![
                FileEntry::new("templates/build.yml", &gitlab_build(release)),
                FileEntry::new("templates/deploy.yml", &gitlab_deploy(release)),
                FileEntry::new(".github/workflows/build.yml", &github_build(release)),
                FileEntry::new(".github/workflows/deploy.yml", &github_deploy(release)),
                FileEntry::new("CHANGELOG.md", &changelog(release)),
            ];
            if release == 0 {
                files.push(FileEntry::new("README.md", README));
            }
            Commit {
                message: format!("Release {tag}\n\n{}\n", NOTES[release]),
                date: release_date(release),
                files,
                // The early releases were tagged by hand without a message.
                tag: Some(super::Tag {
                    name: (*tag).to_owned(),
                    message: (release >= V1_0).then(|| format!("ci-templates {tag}")),
                }),
            }
        })
        .collect();
    RepoPlan {
        path: TEMPLATE_REPO.to_owned(),
        commits,
    }
}

const README: &str = "# ci-templates\n\nShared CI for every service.\n\n\
- GitLab: `include: - project: platform/ci-templates` with `ref: vX.Y.Z` and `file: templates/build.yml`,\n  or `include: - component: gitlab.acme.internal/platform/ci-templates/build@X.Y.Z`.\n\
- GitHub: `uses: acme/ci-templates/.github/workflows/build.yml@vX.Y.Z`.\n\n\
Releases follow semver: minor releases only add optional inputs; see CHANGELOG.md.\n";

fn changelog(release: usize) -> String {
    let mut out = String::from("# Changelog\n");
    for index in (0..=release).rev() {
        out.push_str(&format!("\n## {}\n\n- {}\n", RELEASES[index], NOTES[index]));
    }
    out
}

fn yaml_list(items: &[&str]) -> String {
    format!("[{}]", items.join(", "))
}

fn gitlab_spec(inputs: &[InputSpec]) -> String {
    let mut out = String::from("spec:\n  inputs:\n");
    for spec in inputs {
        out.push_str(&format!(
            "    {}:\n      description: \"{}\"\n",
            spec.name, spec.description
        ));
        if spec.ty == InputType::Boolean {
            out.push_str("      type: boolean\n");
        }
        if let Some(default) = spec.default {
            out.push_str(&format!("      default: {default}\n"));
        }
        if !spec.options.is_empty() {
            out.push_str(&format!("      options: {}\n", yaml_list(spec.options)));
        }
    }
    out.push_str("---\n");
    out
}

fn gitlab_build(release: usize) -> String {
    let tag = RELEASES[release];
    let mut out = gitlab_spec(&build_inputs(release, Flavor::GitLab));
    let stages: &[&str] = if release >= V2 {
        &["test", "build", "scan"]
    } else {
        &["lint", "test", "build", "scan"]
    };
    out.push_str(&format!(
        "# platform/ci-templates {tag}: {}, then publish a service image.\n\n",
        stages.join(", ")
    ));
    out.push_str(&format!("stages: {}\n\n", yaml_list(stages)));
    // The image name is resolved once and reused by every job through a YAML anchor.
    out.push_str(".resolve-image: &resolve-image\n");
    if release >= V2 {
        out.push_str("  - IMAGE=\"$[[ inputs.image ]]\"\n");
    } else {
        if release >= V1_4 {
            out.push_str("  - IMAGE=\"$[[ inputs.image ]]\"\n  - IMAGE=\"${IMAGE:-$[[ inputs.image_name ]]}\"\n");
        } else {
            out.push_str("  - IMAGE=\"$[[ inputs.image_name ]]\"\n");
        }
        out.push_str("  - IMAGE=\"${IMAGE:-$CI_REGISTRY_IMAGE}\"\n");
    }
    out.push('\n');
    if release < V2 {
        out.push_str("lint:\n  stage: lint\n  image: registry.acme.internal/ci/linters:2024.01\n  script:\n    - lint-all --language \"$[[ inputs.language ]]\"\n\n");
    }
    out.push_str("unit-tests:\n  stage: test\n  image: registry.acme.internal/ci/$[[ inputs.language ]]-toolchain:2024.01\n");
    if release >= 1 {
        out.push_str("  rules:\n    - if: '\"$[[ inputs.run_tests ]]\" == \"true\"'\n");
    }
    out.push_str("  script:\n    - make test\n\n");
    let kaniko = if release >= 8 { "v1.23.2" } else { "v1.23.0" };
    out.push_str(&format!(
        "build-image:\n  stage: build\n  image:\n    name: gcr.io/kaniko-project/executor:{kaniko}-debug\n    entrypoint: [\"\"]\n  script:\n    - *resolve-image\n"
    ));
    if release >= 3 {
        out.push_str("    - echo \"{\\\"auths\\\":{\\\"$[[ inputs.registry ]]\\\":{\\\"auth\\\":\\\"$REGISTRY_AUTH\\\"}}}\" > /kaniko/.docker/config.json\n");
    }
    let context = if release >= V2 {
        "$CI_PROJECT_DIR".to_owned()
    } else {
        "$CI_PROJECT_DIR/$[[ inputs.docker_context ]]".to_owned()
    };
    let dockerfile = match release {
        0 | 1 => "Dockerfile",
        2..=6 => "$[[ inputs.dockerfile ]]",
        _ => "\"$[[ inputs.dockerfile ]]\"",
    };
    out.push_str(&format!(
        "    - >-\n      /kaniko/executor\n      --context \"{context}\"\n      --dockerfile {dockerfile}\n"
    ));
    if release >= 4 {
        out.push_str("      --cache=$[[ inputs.cache ]]\n");
    }
    if release >= V1_4 {
        out.push_str("      --custom-platform=$[[ inputs.platforms ]]\n");
    }
    out.push_str("      --destination \"$IMAGE:$CI_COMMIT_SHORT_SHA\"\n      --digest-file image-digest.txt\n  artifacts:\n    paths: [image-digest.txt]\n\n");
    if release >= 5 {
        out.push_str("sbom:\n  stage: scan\n  image: docker.io/anchore/syft:v1.14.0\n  rules:\n    - if: '\"$[[ inputs.sbom ]]\" == \"true\"'\n  script:\n    - *resolve-image\n    - syft \"$IMAGE:$CI_COMMIT_SHORT_SHA\" -o cyclonedx-json=sbom.cdx.json\n  artifacts:\n    paths: [sbom.cdx.json]\n\n");
    }
    out.push_str("container-scan:\n  stage: scan\n  image: docker.io/aquasec/trivy:0.56.2\n  script:\n    - *resolve-image\n    - trivy image --exit-code 1 --severity CRITICAL \"$IMAGE:$CI_COMMIT_SHORT_SHA\"\n");
    out
}

fn gitlab_deploy(release: usize) -> String {
    let tag = RELEASES[release];
    let mut out = gitlab_spec(&deploy_inputs(Flavor::GitLab));
    out.push_str(&format!(
        "# platform/ci-templates {tag}: deploy the image built by build.yml.\n\n\
deploy:\n  stage: deploy\n  image: registry.acme.internal/ci/kubectl:1.31\n  environment:\n    name: $[[ inputs.environment ]]\n  rules:\n    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH\n  script:\n    - NAMESPACE=\"$[[ inputs.namespace ]]\"\n    - bulkhead rollout --strategy \"$[[ inputs.strategy ]]\" --namespace \"${{NAMESPACE:-$KUBE_NAMESPACE}}\" --image-digest-file image-digest.txt\n"
    ));
    out
}

fn github_inputs(inputs: &[InputSpec]) -> String {
    let mut out = String::from("    inputs:\n");
    for spec in inputs {
        let ty = match spec.ty {
            InputType::String => "string",
            InputType::Boolean => "boolean",
        };
        out.push_str(&format!(
            "      {}:\n        description: \"{}\"\n        type: {ty}\n        required: {}\n",
            spec.name,
            spec.description,
            spec.default.is_none()
        ));
        if let Some(default) = spec.default {
            out.push_str(&format!("        default: {default}\n"));
        }
    }
    out
}

fn github_build(release: usize) -> String {
    let tag = RELEASES[release];
    let mut out = format!(
        "# acme/ci-templates {tag}: reusable build workflow.\nname: build\n\non:\n  workflow_call:\n"
    );
    out.push_str(&github_inputs(&build_inputs(release, Flavor::GitHub)));
    out.push_str("    secrets:\n      registry_password:\n        required: true\n    outputs:\n      image_digest:\n        description: \"Digest of the published image.\"\n        value: ${{ jobs.build-image.outputs.digest }}\n\njobs:\n");
    if release < V2 {
        out.push_str("  lint:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v4\n      - run: lint-all --language \"${{ inputs.language }}\"\n\n");
    }
    out.push_str("  unit-tests:\n");
    if release >= 1 {
        out.push_str("    if: ${{ inputs.run_tests }}\n");
    }
    out.push_str("    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v4\n      - run: make test\n\n");
    let image = match release {
        V2 => "${{ inputs.image }}",
        V1_4..V2 => "${{ inputs.image || inputs.image_name || github.repository }}",
        _ => "${{ inputs.image_name || github.repository }}",
    };
    let context = if release >= V2 {
        "."
    } else {
        "${{ inputs.docker_context }}"
    };
    out.push_str(&format!(
        "  build-image:\n    runs-on: ubuntu-24.04\n    outputs:\n      digest: ${{{{ steps.push.outputs.digest }}}}\n    steps:\n      - uses: actions/checkout@v4\n      - uses: docker/setup-buildx-action@v3\n      - uses: docker/login-action@v3\n        with:\n          registry: registry.acme.internal\n          username: ci\n          password: ${{{{ secrets.registry_password }}}}\n      - id: push\n        uses: docker/build-push-action@v6\n        with:\n          context: {context}\n"
    ));
    if release >= V1_0 {
        out.push_str("          file: ${{ inputs.dockerfile }}\n");
    }
    if release >= V1_4 {
        out.push_str("          platforms: ${{ inputs.platforms }}\n");
    }
    out.push_str(&format!(
        "          push: true\n          tags: {image}:${{{{ github.sha }}}}\n"
    ));
    if release >= 5 {
        out.push_str("      - if: ${{ inputs.sbom }}\n        uses: anchore/sbom-action@v0\n        with:\n          image: ${{ steps.push.outputs.imageid }}\n");
    }
    out
}

fn github_deploy(release: usize) -> String {
    let tag = RELEASES[release];
    let mut out = format!(
        "# acme/ci-templates {tag}: reusable deploy workflow.\nname: deploy\n\non:\n  workflow_call:\n"
    );
    out.push_str(&github_inputs(&deploy_inputs(Flavor::GitHub)));
    out.push_str("    secrets:\n      kubeconfig:\n        required: true\n\njobs:\n  deploy:\n    runs-on: ubuntu-24.04\n    environment: ${{ inputs.environment }}\n    steps:\n      - uses: actions/checkout@v4\n      - run: bulkhead rollout --strategy \"${{ inputs.strategy }}\" --namespace \"${{ inputs.namespace }}\"\n");
    out
}
