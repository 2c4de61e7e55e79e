//! Renders one service repo (Dockerfile, CI file, Kubernetes manifests, Backstage catalog entry,
//! README and a source stub) and records, at the same time, the ground truth of what it wrote.
//! Deciding and writing in one place keeps the truth honest: every recorded fact is the string
//! that went into a file.

use std::collections::BTreeMap;

use super::images::{BASE_PREFIX, BASE_TAG, BaseCatalog};
use super::rng::{Rng, digest};
use super::templates::{
    self, Flavor, GITHUB_REPO, GITLAB_COMPONENT, GITLAB_PROJECT, RELEASES, V1_4, V2,
};
use super::topology::{BaseChoice, CiForm, EnvForm, LEGACY_NAMESPACE, Node, Topology, UNRESOLVED};
use super::truth::{
    InputValue, KustomizeImage, Language, Layer, Pinning, RouteKind, RouteTruth, ServiceTruth,
    TemplateKind, TemplatePin, TierSource,
};
use super::{FileEntry, SERVICES_DIR};

pub(crate) const APPS_PREFIX: &str = "registry.acme.internal/apps/";
pub(crate) const PUBLIC_HOST: &str = "shop.acme.example";

/// Everything shared by all services of one fleet.
pub(crate) struct Fleet<'a> {
    pub(crate) seed: u64,
    pub(crate) topology: &'a Topology,
    pub(crate) catalog: &'a BaseCatalog,
}

/// Renders service `index`: its files (paths relative to the repo) and its truth.
pub(crate) fn service(fleet: &Fleet<'_>, index: usize) -> (Vec<FileEntry>, ServiceTruth) {
    let node = &fleet.topology.nodes[index];
    let mut rng = Rng::derive(fleet.seed, &format!("service/{}", node.name));
    let team = &fleet.topology.teams[node.team];
    let mut files = Vec::new();

    let docker = dockerfile(fleet, node, &mut rng);
    files.push(FileEntry::new("Dockerfile", &docker.text));

    let ci = ci(node, &mut rng);
    files.extend(ci.files);

    let manifests = manifests(fleet, node, &mut rng);
    files.push(FileEntry::new("deploy/k8s.yaml", &manifests.text));
    let mut kustomize_images = Vec::new();
    if node.kustomize {
        let (text, image) = kustomization(fleet.seed, node, &mut rng);
        files.push(FileEntry::new("deploy/kustomization.yaml", &text));
        kustomize_images.push(image);
    }

    let tier_source = if rng.percent(75) {
        TierSource::Label
    } else {
        TierSource::Annotation
    };
    let deps: Vec<&str> = node
        .deps
        .iter()
        .map(|dep| fleet.topology.nodes[*dep].name.as_str())
        .collect();
    files.push(FileEntry::new(
        "catalog-info.yaml",
        &catalog_info(node, team.name, team.system, tier_source, &deps),
    ));
    files.push(FileEntry::new(
        "README.md",
        &format!(
            "# {name}\n\n{layer} service of the {system} system, owned by {owner} (tier {tier}).\n\n- Language: {language}\n- Depends on: {deps}\n- Deployment: `deploy/k8s.yaml`\n- CI: `{ci_file}`\n",
            name = node.name,
            layer = layer_title(node.layer),
            system = team.system,
            owner = team.name,
            tier = node.tier,
            language = node.language.as_str(),
            deps = if deps.is_empty() { "nothing".to_owned() } else { deps.join(", ") },
            ci_file = ci.path,
        ),
    ));
    files.extend(sources(&node.name, node.language));

    let mut depends_on: Vec<String> = deps.iter().map(|dep| (*dep).to_owned()).collect();
    depends_on.sort();
    let language_base = BaseCatalog::language_base(node.language);
    let truth = ServiceTruth {
        name: node.name.clone(),
        repo: format!("{SERVICES_DIR}/{}", node.name),
        language: node.language,
        layer: node.layer,
        owner: team.name.to_owned(),
        tier: node.tier,
        tier_source,
        namespace: node.namespace.clone(),
        system: team.system.to_owned(),
        depends_on,
        env_dependencies: manifests.env_dependencies,
        unresolved_dependencies: manifests.unresolved,
        images: manifests.images,
        image_pinning: node.image_pinning,
        kustomize_images,
        base_pinning: Pinning::of(&docker.base_image),
        base_registry_approved: docker.base_image.starts_with(BASE_PREFIX),
        critical_cve: repository(&docker.base_image) == language_base
            && BaseCatalog::critical_language_bases().contains(&language_base),
        base_image: docker.base_image,
        builder_images: docker.builder_images,
        dockerfile_features: docker.features.iter().map(|f| (*f).to_owned()).collect(),
        ci_file: ci.path.to_owned(),
        template: ci.pin,
        routes: manifests.routes,
        breaks_on_v2: !ci.v2_break_reasons.is_empty(),
        v2_break_reasons: ci.v2_break_reasons,
    };
    (files, truth)
}

/// The repository part of an image reference (no tag, no digest).
pub(crate) fn repository(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

fn layer_title(layer: Layer) -> &'static str {
    match layer {
        Layer::Edge => "Edge",
        Layer::Bff => "Backend-for-frontend",
        Layer::Domain => "Domain",
        Layer::Data => "Data",
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

struct Dockerfile {
    text: String,
    base_image: String,
    builder_images: Vec<String>,
    features: Vec<&'static str>,
}

/// Per-language build recipe.
struct Recipe {
    /// Public toolchain image with `{v}` for the version, the version, and the ARG naming it.
    toolchain: &'static str,
    version: &'static str,
    version_arg: &'static str,
    setup: &'static str,
    build: &'static str,
    build_continued: &'static str,
    build_heredoc: &'static str,
    test: Option<&'static str>,
    runtime: &'static str,
    non_approved: &'static str,
}

fn recipe(language: Language) -> Recipe {
    match language {
        Language::Go => Recipe {
            toolchain: "docker.io/library/golang:{v}",
            version: "1.22",
            version_arg: "GO_VERSION",
            setup: "WORKDIR /src\nCOPY go.mod ./\nRUN go mod download\nCOPY . .\n",
            build: "RUN CGO_ENABLED=0 go build -trimpath -o /out/{svc} .\n",
            build_continued: "RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} \\\n    go build -trimpath -ldflags=\"-s -w\" \\\n    -o /out/{svc} .\n",
            build_heredoc: "RUN <<EOF\nset -eu\ngo vet ./...\nCGO_ENABLED=0 go build -trimpath -o /out/{svc} .\nEOF\n",
            test: Some("RUN go test ./...\n"),
            runtime: "COPY --from=build /out/{svc} /usr/local/bin/{svc}\nENTRYPOINT [\"/usr/local/bin/{svc}\"]\n",
            non_approved: "gcr.io/distroless/static-debian12:nonroot",
        },
        Language::Java => Recipe {
            toolchain: "docker.io/library/maven:{v}-eclipse-temurin-21",
            version: "3.9",
            version_arg: "MAVEN_VERSION",
            setup: "WORKDIR /src\nCOPY pom.xml .\nRUN mvn -B -q dependency:go-offline\nCOPY src ./src\n",
            build: "RUN mvn -B -q package -DskipTests\n",
            build_continued: "RUN mvn -B -q package \\\n    -DskipTests \\\n    -Dmaven.javadoc.skip=true\n",
            build_heredoc: "RUN <<EOF\nset -eu\nmvn -B -q package -DskipTests\ntest -f target/{svc}.jar\nEOF\n",
            test: None,
            runtime: "COPY --from=build /src/target/{svc}.jar /app/app.jar\nENTRYPOINT [\"java\", \"-jar\", \"/app/app.jar\"]\n",
            non_approved: "docker.io/library/eclipse-temurin:21-jre",
        },
        Language::Python => Recipe {
            toolchain: "docker.io/library/python:{v}-slim",
            version: "3.12",
            version_arg: "PYTHON_VERSION",
            setup: "WORKDIR /src\nCOPY requirements.txt .\n",
            build: "RUN pip install --no-cache-dir --prefix=/install -r requirements.txt\n",
            build_continued: "RUN python3 -m pip install --upgrade pip \\\n    && pip install --no-cache-dir \\\n       --prefix=/install -r requirements.txt\n",
            build_heredoc: "RUN <<EOF\nset -eu\npython3 -m pip install --upgrade pip\npip install --no-cache-dir --prefix=/install -r requirements.txt\nEOF\n",
            test: None,
            runtime: "COPY --from=build /install /usr/local\nCOPY app.py /app/\nCMD [\"python3\", \"/app/app.py\"]\n",
            non_approved: "docker.io/library/python:3.12-slim",
        },
        Language::Node => Recipe {
            toolchain: "docker.io/library/node:{v}-bookworm-slim",
            version: "20",
            version_arg: "NODE_VERSION",
            setup: "WORKDIR /src\nCOPY package.json ./\n",
            build: "RUN npm install --omit=dev\n",
            build_continued: "RUN npm config set fund false \\\n    && npm install --omit=dev \\\n    && npm cache clean --force\n",
            build_heredoc: "RUN <<EOF\nset -eu\nnpm config set fund false\nnpm install --omit=dev\nEOF\n",
            test: None,
            runtime: "COPY --from=build /src/node_modules /app/node_modules\nCOPY index.js package.json /app/\nCMD [\"node\", \"/app/index.js\"]\n",
            non_approved: "docker.io/library/node:20-alpine",
        },
        Language::Rust => Recipe {
            toolchain: "docker.io/library/rust:{v}-bookworm",
            version: "1.80",
            version_arg: "RUST_VERSION",
            setup: "WORKDIR /src\nCOPY Cargo.toml ./\nCOPY src ./src\n",
            build: "RUN cargo build --release\n",
            build_continued: "RUN cargo build --release \\\n    && strip target/release/{svc}\n",
            build_heredoc: "RUN <<EOF\nset -eu\ncargo build --release\nstrip target/release/{svc}\nEOF\n",
            test: Some("RUN cargo test --release\n"),
            runtime: "COPY --from=build /src/target/release/{svc} /usr/local/bin/{svc}\nENTRYPOINT [\"/usr/local/bin/{svc}\"]\n",
            non_approved: "quay.io/centos/centos:stream9",
        },
    }
}

fn dockerfile(fleet: &Fleet<'_>, node: &Node, rng: &mut Rng) -> Dockerfile {
    let recipe = recipe(node.language);
    let language_base = BaseCatalog::language_base(node.language);
    let base_image = match node.base {
        BaseChoice::Company(Pinning::Digest) => fleet.catalog.pinned(node.language),
        BaseChoice::Company(Pinning::Tag) => {
            format!("{language_base}:{BASE_TAG}")
        }
        BaseChoice::Company(Pinning::Latest) => format!("{language_base}:latest"),
        BaseChoice::Company(Pinning::Untagged) => language_base,
        BaseChoice::NonApproved if node.language == Language::Rust => format!(
            "{}@{}",
            recipe.non_approved,
            digest(fleet.seed, recipe.non_approved)
        ),
        BaseChoice::NonApproved => recipe.non_approved.to_owned(),
    };
    let svc = node.name.as_str();
    let mut features = Vec::new();
    let heredoc = rng.percent(20);
    let continued = !heredoc && rng.percent(60);
    let syntax = heredoc || rng.percent(30);
    let arg_base = rng.percent(25);
    // Interpreted languages often build in the same image they run in.
    let same_image_builder =
        matches!(node.language, Language::Python | Language::Node) && rng.percent(50);
    let arg_toolchain = !same_image_builder && rng.percent(30);
    let platform = rng.percent(30);
    let test_stage = recipe.test.is_some() && rng.percent(25);

    let mut text = String::new();
    if syntax {
        features.push("syntax-directive");
        text.push_str("# syntax=docker/dockerfile:1\n");
    }
    text.push_str(&format!(
        "# {svc}: container image for the {} service.\n",
        node.language.as_str()
    ));
    if arg_base {
        features.push("arg-base");
        text.push_str(&format!("ARG BASE_IMAGE={base_image}\n"));
    }
    let toolchain_resolved = recipe.toolchain.replace("{v}", recipe.version);
    let builder_written = if same_image_builder {
        if arg_base {
            "${BASE_IMAGE}".to_owned()
        } else {
            base_image.clone()
        }
    } else if arg_toolchain {
        features.push("arg-toolchain");
        text.push_str(&format!("ARG {}={}\n", recipe.version_arg, recipe.version));
        recipe
            .toolchain
            .replace("{v}", &format!("${{{}}}", recipe.version_arg))
    } else {
        toolchain_resolved.clone()
    };
    let builder_resolved = if same_image_builder {
        base_image.clone()
    } else {
        toolchain_resolved
    };
    text.push('\n');
    text.push_str("# Build stage.\n");
    let platform_flag = if platform {
        features.push("platform");
        "--platform=$BUILDPLATFORM "
    } else {
        ""
    };
    text.push_str(&format!("FROM {platform_flag}{builder_written} AS build\n"));
    if platform && node.language == Language::Go {
        text.push_str("ARG TARGETOS TARGETARCH\n");
    }
    text.push_str(recipe.setup);
    let build = if heredoc {
        features.push("heredoc");
        recipe.build_heredoc
    } else if continued {
        features.push("continuation");
        recipe.build_continued
    } else {
        recipe.build
    };
    text.push_str(&build.replace("{svc}", svc));
    if let Some(test) = recipe.test.filter(|_| test_stage) {
        features.push("stage-from-stage");
        text.push_str(&format!("\nFROM build AS test\n{test}"));
    }
    text.push_str("\n# Runtime stage: the company language base.\n");
    let final_from = if arg_base {
        if rng.percent(50) {
            "${BASE_IMAGE}".to_owned()
        } else {
            "$BASE_IMAGE".to_owned()
        }
    } else {
        base_image.clone()
    };
    text.push_str(&format!("FROM {final_from}\n"));
    text.push_str(&recipe.runtime.replace("{svc}", svc));
    text.push_str("USER 10001\nEXPOSE 8080\n");
    Dockerfile {
        text,
        base_image,
        builder_images: vec![builder_resolved],
        features,
    }
}

// ---------------------------------------------------------------------------------------------
// CI

struct Ci {
    path: &'static str,
    files: Vec<FileEntry>,
    pin: TemplatePin,
    v2_break_reasons: Vec<String>,
}

/// The build inputs the app passes, in the template's declaration order.
fn choose_inputs(node: &Node, flavor: Flavor, rng: &mut Rng) -> Vec<(&'static str, InputValue)> {
    if node.ci == CiForm::GitlabProjectList {
        return Vec::new();
    }
    let image = InputValue::Str(format!("{APPS_PREFIX}{}", node.name));
    let uses_image = node.v2_ready || (node.release >= V1_4 && rng.percent(40));
    let mut chosen = Vec::new();
    for spec in templates::build_inputs(node.release, flavor) {
        let value = match spec.name {
            "image" if uses_image => Some(image.clone()),
            "image_name" if !uses_image && rng.percent(85) => Some(image.clone()),
            // v2 drops rust from the GitLab options, so a ready rust app leaves the default.
            "language"
                if !(node.v2_ready && node.language == Language::Rust) && rng.percent(85) =>
            {
                Some(InputValue::Str(node.language.as_str().to_owned()))
            }
            "docker_context" if !node.v2_ready && rng.percent(30) => {
                Some(InputValue::Str(".".to_owned()))
            }
            "run_tests" if rng.percent(40) => Some(InputValue::Bool(rng.percent(70))),
            "dockerfile" if rng.percent(10) => Some(InputValue::Str("Dockerfile".to_owned())),
            "registry" if rng.percent(10) => {
                Some(InputValue::Str("registry.acme.internal/apps".to_owned()))
            }
            "cache" if rng.percent(10) => Some(InputValue::Bool(false)),
            "sbom" if rng.percent(25) => Some(InputValue::Bool(true)),
            "platforms" if rng.percent(15) => {
                Some(InputValue::Str("linux/amd64,linux/arm64".to_owned()))
            }
            _ => None,
        };
        if let Some(value) = value {
            chosen.push((spec.name, value));
        }
    }
    chosen
}

fn yaml_inputs(inputs: &[(&'static str, InputValue)], indent: &str) -> String {
    let mut out = String::new();
    if !inputs.is_empty() {
        out.push_str(&format!("{indent}inputs:\n"));
        for (name, value) in inputs {
            out.push_str(&format!("{indent}  {name}: {}\n", value.yaml()));
        }
    }
    out
}

fn ci(node: &Node, rng: &mut Rng) -> Ci {
    let flavor = if node.ci == CiForm::Github {
        Flavor::GitHub
    } else {
        Flavor::GitLab
    };
    let inputs = choose_inputs(node, flavor, rng);
    let tag = RELEASES[node.release];
    let deploy = node.ci == CiForm::GitlabProjectList || rng.percent(30);
    let mut files = Vec::new();
    let overrides_lint;
    let (path, kind, source, file, version, extra_file) = match node.ci {
        CiForm::Github => {
            overrides_lint = false;
            files.push(FileEntry::new(
                ".github/workflows/ci.yml",
                &github_ci(node, tag, &inputs, deploy),
            ));
            (
                ".github/workflows/ci.yml",
                TemplateKind::GithubWorkflow,
                GITHUB_REPO,
                ".github/workflows/build.yml",
                tag.to_owned(),
                ".github/workflows/deploy.yml",
            )
        }
        form => {
            let component = form == CiForm::GitlabComponent;
            // Teams sometimes relax the template's lint job; that job disappears in v2.
            overrides_lint = !node.v2_ready && node.release < V2 && rng.percent(15);
            let options = GitlabOptions {
                deploy,
                sast: rng.percent(25),
                local: rng.percent(20),
                overrides_lint,
            };
            let version = if component {
                tag.trim_start_matches('v').to_owned()
            } else {
                tag.to_owned()
            };
            files.push(FileEntry::new(
                ".gitlab-ci.yml",
                &gitlab_ci(node, form, &version, &inputs, &options),
            ));
            if options.local {
                files.push(FileEntry::new(
                    ".gitlab/extra.yml",
                    &format!(
                        "# Jobs specific to {}.\nintegration-tests:\n  stage: test\n  image: registry.acme.internal/ci/{}-toolchain:2024.01\n  script:\n    - make integration-test\n",
                        node.name,
                        node.language.as_str()
                    ),
                ));
            }
            if component {
                (
                    ".gitlab-ci.yml",
                    TemplateKind::GitlabComponent,
                    GITLAB_COMPONENT,
                    "build",
                    version,
                    "deploy",
                )
            } else {
                (
                    ".gitlab-ci.yml",
                    TemplateKind::GitlabProject,
                    GITLAB_PROJECT,
                    "templates/build.yml",
                    version,
                    "templates/deploy.yml",
                )
            }
        }
    };
    let v2_break_reasons = templates::v2_break_reasons(flavor, &inputs, overrides_lint);
    Ci {
        path,
        files,
        pin: TemplatePin {
            kind,
            source: source.to_owned(),
            file: file.to_owned(),
            version,
            inputs: inputs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect::<BTreeMap<_, _>>(),
            extra_files: if deploy {
                vec![extra_file.to_owned()]
            } else {
                Vec::new()
            },
        },
        v2_break_reasons,
    }
}

/// Optional parts of a GitLab CI file.
#[derive(Clone, Copy)]
struct GitlabOptions {
    /// Also include the deploy template.
    deploy: bool,
    /// Also include GitLab's own SAST template (not a ci-templates pin).
    sast: bool,
    /// Also include `.gitlab/extra.yml` from the repo itself.
    local: bool,
    overrides_lint: bool,
}

fn gitlab_ci(
    node: &Node,
    form: CiForm,
    version: &str,
    inputs: &[(&'static str, InputValue)],
    options: &GitlabOptions,
) -> String {
    let GitlabOptions {
        deploy,
        sast,
        local,
        overrides_lint,
    } = *options;
    let mut out = format!(
        "# CI for {}: shared templates from {GITLAB_PROJECT}.\n",
        node.name
    );
    if deploy {
        out.push_str("stages: [lint, test, build, scan, deploy]\n\n");
    }
    out.push_str("include:\n");
    match form {
        CiForm::GitlabComponent => {
            out.push_str(&format!(
                "  - component: {GITLAB_COMPONENT}/build@{version}\n"
            ));
            out.push_str(&yaml_inputs(inputs, "    "));
            if deploy {
                out.push_str(&format!(
                    "  - component: {GITLAB_COMPONENT}/deploy@{version}\n    inputs:\n      environment: production\n"
                ));
            }
        }
        CiForm::GitlabProjectList => {
            out.push_str(&format!(
                "  - project: {GITLAB_PROJECT}\n    ref: {version}\n    file:\n      - templates/build.yml\n      - templates/deploy.yml\n"
            ));
        }
        _ => {
            out.push_str(&format!(
                "  - project: {GITLAB_PROJECT}\n    ref: {version}\n    file: templates/build.yml\n"
            ));
            out.push_str(&yaml_inputs(inputs, "    "));
            if deploy {
                out.push_str(&format!(
                    "  - project: {GITLAB_PROJECT}\n    ref: {version}\n    file: templates/deploy.yml\n    inputs:\n      environment: production\n"
                ));
            }
        }
    }
    if sast {
        out.push_str("  - template: Security/SAST.gitlab-ci.yml\n");
    }
    if local {
        out.push_str("  - local: .gitlab/extra.yml\n");
    }
    out.push_str("\nvariables:\n  GIT_DEPTH: \"20\"\n");
    if overrides_lint {
        out.push_str("\n# The linter flags generated code; keep it visible but non-blocking.\nlint:\n  allow_failure: true\n");
    }
    out
}

fn github_ci(
    node: &Node,
    tag: &str,
    inputs: &[(&'static str, InputValue)],
    deploy: bool,
) -> String {
    let (setup, with_key, with_value) = match node.language {
        Language::Go => ("actions/setup-go@v5", "go-version", "\"1.22\""),
        Language::Java => ("actions/setup-java@v4", "java-version", "\"21\""),
        Language::Python => ("actions/setup-python@v5", "python-version", "\"3.12\""),
        Language::Node => ("actions/setup-node@v4", "node-version", "\"20\""),
        Language::Rust => ("dtolnay/rust-toolchain@stable", "toolchain", "\"1.80\""),
    };
    let mut out = format!(
        "# CI for {name}.\nname: ci\n\non:\n  push:\n    branches: [main]\n  pull_request:\n\njobs:\n  checks:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v4\n      - uses: {setup}\n        with:\n          {with_key}: {with_value}\n      - run: make test\n\n  build:\n    needs: checks\n    uses: {GITHUB_REPO}/.github/workflows/build.yml@{tag}\n",
        name = node.name
    );
    if !inputs.is_empty() {
        out.push_str("    with:\n");
        for (name, value) in inputs {
            out.push_str(&format!("      {name}: {}\n", value.yaml()));
        }
    }
    out.push_str("    secrets: inherit\n");
    if deploy {
        out.push_str(&format!(
            "\n  deploy:\n    needs: build\n    if: github.ref == 'refs/heads/main'\n    uses: {GITHUB_REPO}/.github/workflows/deploy.yml@{tag}\n    with:\n      environment: production\n    secrets: inherit\n"
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

struct Manifests {
    text: String,
    images: Vec<String>,
    env_dependencies: Vec<String>,
    unresolved: Vec<String>,
    routes: Vec<RouteTruth>,
}

fn env_name(target: &str, form: EnvForm) -> String {
    let suffix = match form {
        EnvForm::Url => "URL",
        EnvForm::HostPort => "ADDR",
        EnvForm::ClusterDns => "HOST",
    };
    format!("{}_{suffix}", target.to_ascii_uppercase().replace('-', "_"))
}

fn env_value(target: &str, namespace: &str, form: EnvForm) -> String {
    match form {
        EnvForm::Url => format!("http://{target}:8080/"),
        EnvForm::HostPort => format!("{target}:9090"),
        EnvForm::ClusterDns => format!("{target}.{namespace}.svc.cluster.local:8080"),
    }
}

fn manifests(fleet: &Fleet<'_>, node: &Node, rng: &mut Rng) -> Manifests {
    let svc = node.name.as_str();
    let ns = node.namespace.as_str();
    let version = format!("{}.{}.{}", rng.range(1, 3), rng.below(20), rng.below(10));
    let app_image = match node.image_pinning {
        Pinning::Digest => format!(
            "{APPS_PREFIX}{svc}:{version}@{}",
            digest(fleet.seed, &format!("app/{svc}/{version}"))
        ),
        Pinning::Latest => format!("{APPS_PREFIX}{svc}:latest"),
        Pinning::Tag | Pinning::Untagged => format!("{APPS_PREFIX}{svc}:{version}"),
    };
    let mut images = vec![app_image.clone()];
    let forms = [EnvForm::Url, EnvForm::HostPort, EnvForm::ClusterDns];
    let mut env = vec![
        ("LOG_LEVEL".to_owned(), "info".to_owned()),
        ("OTEL_SERVICE_NAME".to_owned(), svc.to_owned()),
    ];
    let mut env_dependencies = Vec::new();
    for dep in &node.deps {
        let dep = &fleet.topology.nodes[*dep];
        if rng.percent(60) {
            let form = *rng.pick(&forms);
            env.push((
                env_name(&dep.name, form),
                env_value(&dep.name, &dep.namespace, form),
            ));
            env_dependencies.push(dep.name.clone());
        }
    }
    let mut unresolved = Vec::new();
    for planted in &node.unresolved {
        let (target, form) = UNRESOLVED[*planted];
        env.push((
            env_name(target, form),
            env_value(target, LEGACY_NAMESPACE, form),
        ));
        unresolved.push(target.to_owned());
    }
    env_dependencies.sort();
    unresolved.sort();

    let replicas = if node.tier == 1 { 3 } else { 2 };
    let mut text = format!(
        "# {svc}: production workload (blue pool) and its Service.\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {svc}-blue\n  namespace: {ns}\n  labels:\n    app: {svc}\n    version: blue\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {svc}\n      version: blue\n  template:\n    metadata:\n      labels:\n        app: {svc}\n        version: blue\n    spec:\n      containers:\n        - name: {svc}\n          image: {app_image}\n          ports:\n            - name: http\n              containerPort: 8080\n            - name: grpc\n              containerPort: 9090\n          env:\n"
    );
    for (name, value) in &env {
        text.push_str(&format!(
            "            - name: {name}\n              value: {value}\n"
        ));
    }
    if rng.percent(85) {
        text.push_str("          resources:\n            requests:\n              cpu: 100m\n              memory: 128Mi\n            limits:\n              cpu: 500m\n              memory: 256Mi\n");
    }
    if rng.percent(10) {
        let sidecar = format!(
            "registry.acme.internal/platform/otel-agent:0.98.0@{}",
            digest(fleet.seed, "sidecar/otel-agent")
        );
        text.push_str(&format!(
            "        - name: otel-agent\n          image: {sidecar}\n          args: [\"--config=/etc/otel/agent.yaml\"]\n"
        ));
        images.push(sidecar);
    }
    text.push_str(&format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {svc}\n  namespace: {ns}\nspec:\n  selector:\n    app: {svc}\n    version: blue\n  ports:\n    - name: http\n      port: 8080\n      targetPort: http\n    - name: grpc\n      port: 9090\n      targetPort: grpc\n"
    ));
    let mut routes = Vec::new();
    if matches!(node.layer, Layer::Edge | Layer::Bff) {
        let kind = if rng.percent(50) {
            text.push_str(&format!(
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {svc}\n  namespace: {ns}\nspec:\n  parentRefs:\n    - name: public-gateway\n      namespace: gateway-system\n  hostnames:\n    - {PUBLIC_HOST}\n  rules:\n    - matches:\n        - path:\n            type: PathPrefix\n            value: /{svc}\n      backendRefs:\n        - name: {svc}\n          port: 8080\n"
            ));
            RouteKind::HttpRoute
        } else {
            text.push_str(&format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {svc}\n  namespace: {ns}\nspec:\n  ingressClassName: public\n  rules:\n    - host: {PUBLIC_HOST}\n      http:\n        paths:\n          - path: /{svc}\n            pathType: Prefix\n            backend:\n              service:\n                name: {svc}\n                port:\n                  number: 8080\n"
            ));
            RouteKind::Ingress
        };
        routes.push(RouteTruth {
            host: PUBLIC_HOST.to_owned(),
            path: format!("/{svc}"),
            kind,
            public: true,
        });
    }
    Manifests {
        text,
        images,
        env_dependencies,
        unresolved,
        routes,
    }
}

fn kustomization(seed: u64, node: &Node, rng: &mut Rng) -> (String, KustomizeImage) {
    let svc = node.name.as_str();
    let image = KustomizeImage {
        name: format!("{APPS_PREFIX}{svc}"),
        new_name: rng
            .percent(30)
            .then(|| format!("registry.acme.internal/apps-mirror/{svc}")),
        new_tag: Some(format!("{}.{}.0", rng.range(1, 3), rng.below(20))),
        digest: Some(digest(seed, &format!("app/{svc}/kustomize"))),
    };
    let mut text = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {}\nresources:\n  - k8s.yaml\nimages:\n  - name: {}\n",
        node.namespace, image.name
    );
    if let Some(new_name) = &image.new_name {
        text.push_str(&format!("    newName: {new_name}\n"));
    }
    if let Some(new_tag) = &image.new_tag {
        text.push_str(&format!("    newTag: \"{new_tag}\"\n"));
    }
    if let Some(digest) = &image.digest {
        text.push_str(&format!("    digest: {digest}\n"));
    }
    (text, image)
}

// ---------------------------------------------------------------------------------------------
// Catalog and sources

fn catalog_info(
    node: &Node,
    owner: &str,
    system: &str,
    tier_source: TierSource,
    deps: &[&str],
) -> String {
    let slug = if node.ci == CiForm::Github {
        format!("github.com/project-slug: acme/{}", node.name)
    } else {
        format!("gitlab.com/project-slug: services/{}", node.name)
    };
    let mut out = format!(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n  description: {layer} service of the {system} system.\n",
        name = node.name,
        layer = layer_title(node.layer),
    );
    match tier_source {
        TierSource::Label => out.push_str(&format!(
            "  labels:\n    tier: \"{}\"\n  annotations:\n    {slug}\n",
            node.tier
        )),
        TierSource::Annotation => out.push_str(&format!(
            "  annotations:\n    {slug}\n    bulkhead.io/tier: \"{}\"\n",
            node.tier
        )),
    }
    out.push_str(&format!(
        "  tags: [{}]\nspec:\n  type: service\n  lifecycle: production\n  owner: group:{owner}\n  system: {system}\n",
        node.language.as_str()
    ));
    if !deps.is_empty() {
        out.push_str("  dependsOn:\n");
        for dep in deps {
            out.push_str(&format!("    - component:{dep}\n"));
        }
    }
    out
}

fn sources(svc: &str, language: Language) -> Vec<FileEntry> {
    match language {
        Language::Go => vec![
            FileEntry::new(
                "go.mod",
                &format!("module gitlab.acme.internal/services/{svc}\n\ngo 1.22\n"),
            ),
            FileEntry::new(
                "main.go",
                &format!(
                    "// Command {svc} serves the {svc} API.\npackage main\n\nimport (\n\t\"log\"\n\t\"net/http\"\n)\n\nfunc main() {{\n\thttp.HandleFunc(\"/healthz\", func(w http.ResponseWriter, _ *http.Request) {{ w.WriteHeader(http.StatusOK) }})\n\tlog.Fatal(http.ListenAndServe(\":8080\", nil))\n}}\n"
                ),
            ),
        ],
        Language::Java => vec![
            FileEntry::new(
                "pom.xml",
                &format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<project xmlns=\"http://maven.apache.org/POM/4.0.0\">\n  <modelVersion>4.0.0</modelVersion>\n  <groupId>com.acme</groupId>\n  <artifactId>{svc}</artifactId>\n  <version>1.0.0</version>\n  <packaging>jar</packaging>\n  <properties>\n    <maven.compiler.release>21</maven.compiler.release>\n  </properties>\n  <build>\n    <finalName>{svc}</finalName>\n  </build>\n</project>\n"
                ),
            ),
            FileEntry::new(
                "src/main/java/com/acme/App.java",
                &format!(
                    "package com.acme;\n\n/** Entry point of {svc}. */\npublic final class App {{\n    public static void main(String[] args) {{\n        System.out.println(\"{svc} listening on :8080\");\n    }}\n}}\n"
                ),
            ),
        ],
        Language::Python => vec![
            FileEntry::new("requirements.txt", "fastapi==0.115.0\nuvicorn==0.30.6\n"),
            FileEntry::new(
                "app.py",
                &format!(
                    "\"\"\"HTTP API of {svc}.\"\"\"\nfrom fastapi import FastAPI\n\napp = FastAPI(title=\"{svc}\")\n\n\n@app.get(\"/healthz\")\ndef healthz() -> dict:\n    return {{\"status\": \"ok\"}}\n"
                ),
            ),
        ],
        Language::Node => vec![
            FileEntry::new(
                "package.json",
                &format!(
                    "{{\n  \"name\": \"{svc}\",\n  \"version\": \"1.0.0\",\n  \"private\": true,\n  \"main\": \"index.js\",\n  \"dependencies\": {{\n    \"express\": \"4.21.0\"\n  }}\n}}\n"
                ),
            ),
            FileEntry::new(
                "index.js",
                &format!(
                    "// HTTP API of {svc}.\nconst express = require(\"express\");\n\nconst app = express();\napp.get(\"/healthz\", (_req, res) => res.send(\"ok\"));\napp.listen(8080);\n"
                ),
            ),
        ],
        Language::Rust => vec![
            FileEntry::new(
                "Cargo.toml",
                &format!(
                    "[package]\nname = \"{svc}\"\nversion = \"1.0.0\"\nedition = \"2021\"\n\n[dependencies]\n"
                ),
            ),
            FileEntry::new(
                "src/main.rs",
                &format!(
                    "//! HTTP API of {svc}.\n\nfn main() {{\n    println!(\"{svc} listening on :8080\");\n}}\n"
                ),
            ),
        ],
    }
}
