use super::parse;
use model::{Facts, StageBase};
use std::fmt::Write as _;

const PATH: &str = "svc/Dockerfile";

/// One line per stage, then one per diagnostic:
///
/// `index name <- base [--platform=p] @line (written "w")`, where `(written ...)`
/// appears only when the argument as written differs from what it resolved to,
/// and `severity@line: message`.
fn render(facts: &Facts) -> String {
    let mut out = String::new();
    for dockerfile in &facts.dockerfiles {
        assert_eq!(dockerfile.path, PATH);
        for (position, stage) in dockerfile.stages.iter().enumerate() {
            assert_eq!(
                stage.index as usize, position,
                "stage indexes are positions"
            );
            assert_eq!(stage.at.path, PATH);
            let (base, plain) = match &stage.base {
                StageBase::Image(image) => (image.to_string(), image.familiar()),
                StageBase::Stage(name) => (format!("stage {name}"), name.clone()),
                StageBase::Scratch => ("scratch".to_string(), "scratch".to_string()),
                StageBase::Unresolved { expanded, reason } => (
                    format!("unresolved {expanded:?}: {reason}"),
                    expanded.clone(),
                ),
            };
            let name = stage.name.as_deref().unwrap_or("-");
            let _ = write!(out, "{} {name} <- {base}", stage.index);
            if let Some(platform) = &stage.platform {
                let _ = write!(out, " [--platform={platform}]");
            }
            let _ = write!(out, " @{}", stage.at.line);
            if stage.written != plain {
                let _ = write!(out, " (written {:?})", stage.written);
            }
            out.push('\n');
        }
    }
    for diagnostic in &facts.diagnostics {
        assert_eq!(diagnostic.path, PATH);
        let _ = match diagnostic.line {
            Some(line) => writeln!(
                out,
                "{}@{line}: {}",
                diagnostic.severity, diagnostic.message
            ),
            None => writeln!(out, "{}: {}", diagnostic.severity, diagnostic.message),
        };
    }
    out
}

#[track_caller]
fn check(text: &str, expect: &str) -> Facts {
    let facts = parse(PATH, text);
    ::test_support::expect_text(&render(&facts), expect);
    facts
}

/// `final_base()` and `builder_images()` of the one Dockerfile, fully qualified.
fn lineage(facts: &Facts) -> (Option<String>, Vec<String>) {
    let dockerfile = &facts.dockerfiles[0];
    (
        dockerfile.final_base().map(ToString::to_string),
        dockerfile
            .builder_images()
            .into_iter()
            .map(ToString::to_string)
            .collect(),
    )
}

#[test]
fn single_stage() {
    check(
        "FROM nginx:1.27\nRUN echo hi\n",
        "0 - <- docker.io/library/nginx:1.27 @1",
    );
}

#[test]
fn multi_stage_with_builder_and_runtime_images() {
    let facts = check(
        r#"
# syntax=docker/dockerfile:1.7
ARG GO_VERSION=1.22
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
RUN go build -o /app .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /app /app
"#,
        r#"
        0 build <- docker.io/library/golang:1.22 [--platform=$BUILDPLATFORM] @4 (written "golang:${GO_VERSION}")
        1 - <- gcr.io/distroless/static-debian12:nonroot @8
        "#,
    );
    assert_eq!(
        lineage(&facts),
        (
            Some("gcr.io/distroless/static-debian12:nonroot".to_string()),
            vec!["docker.io/library/golang:1.22".to_string()]
        )
    );
}

#[test]
fn final_stage_from_an_earlier_stage_ships_that_stages_image() {
    let facts = check(
        "
FROM node:20-alpine AS base
FROM base AS deps
RUN npm ci
FROM golang:1.22 AS tools
FROM deps AS Runtime
FROM RUNTIME
",
        "
        0 base <- docker.io/library/node:20-alpine @2
        1 deps <- stage base @3
        2 tools <- docker.io/library/golang:1.22 @5
        3 runtime <- stage deps @6
        4 - <- stage runtime @7 (written \"RUNTIME\")
        ",
    );
    assert_eq!(
        lineage(&facts),
        (
            Some("docker.io/library/node:20-alpine".to_string()),
            vec!["docker.io/library/golang:1.22".to_string()]
        )
    );
}

#[test]
fn a_name_only_a_later_stage_takes_is_an_image() {
    let facts = check(
        "FROM builder\nFROM alpine:3.20 AS builder\nFROM node AS node\n",
        "
        0 - <- docker.io/library/builder @1
        1 builder <- docker.io/library/alpine:3.20 @2
        2 node <- docker.io/library/node @3
        ",
    );
    assert_eq!(lineage(&facts).0.as_deref(), Some("docker.io/library/node"));
}

#[test]
fn final_stage_from_scratch_ships_no_external_image() {
    let facts = check(
        "FROM rust:1.80 AS build\nFROM scratch\nCOPY --from=build /app /app\n",
        "
        0 build <- docker.io/library/rust:1.80 @1
        1 - <- scratch @2
        ",
    );
    assert_eq!(
        lineage(&facts),
        (None, vec!["docker.io/library/rust:1.80".to_string()])
    );
}

#[test]
fn arg_defaults_and_every_substitution_form() {
    check(
        r#"
ARG V=1.0
ARG EMPTY=
ARG UNSET
FROM alpine:$V
FROM alpine:${V}
FROM alpine:${V:-x}
FROM alpine:${UNSET:-fallback}
FROM alpine:${EMPTY:-fallback}
FROM alpine${EMPTY-:nocolon}
FROM alpine:${UNSET-fallback}
FROM alpine:${V:+plus}
FROM alpine${UNSET:+:plus}
FROM alpine:${EMPTY+plus}
FROM alpine${EMPTY:+:plus}
FROM alpine:${UNSET:-${V}}
FROM alpine:${V:-$UNSET}
"#,
        r#"
        0 - <- docker.io/library/alpine:1.0 @5 (written "alpine:$V")
        1 - <- docker.io/library/alpine:1.0 @6 (written "alpine:${V}")
        2 - <- docker.io/library/alpine:1.0 @7 (written "alpine:${V:-x}")
        3 - <- docker.io/library/alpine:fallback @8 (written "alpine:${UNSET:-fallback}")
        4 - <- docker.io/library/alpine:fallback @9 (written "alpine:${EMPTY:-fallback}")
        5 - <- docker.io/library/alpine @10 (written "alpine${EMPTY-:nocolon}")
        6 - <- docker.io/library/alpine:fallback @11 (written "alpine:${UNSET-fallback}")
        7 - <- docker.io/library/alpine:plus @12 (written "alpine:${V:+plus}")
        8 - <- docker.io/library/alpine @13 (written "alpine${UNSET:+:plus}")
        9 - <- docker.io/library/alpine:plus @14 (written "alpine:${EMPTY+plus}")
        10 - <- docker.io/library/alpine @15 (written "alpine${EMPTY:+:plus}")
        11 - <- docker.io/library/alpine:1.0 @16 (written "alpine:${UNSET:-${V}}")
        12 - <- docker.io/library/alpine:1.0 @17 (written "alpine:${V:-$UNSET}")
        "#,
    );
}

#[test]
fn several_args_per_line_quotes_and_args_built_from_args() {
    check(
        r#"
ARG REGISTRY="registry.acme.io" TEAM='platform' TAG=1.2
ARG IMAGE=${REGISTRY}/$TEAM/base:"$TAG"
ArG SINGLE='$TAG'
FROM $IMAGE
FROM "$REGISTRY/$TEAM/app:${TAG}"
FROM alpine:${SINGLE}
"#,
        r#"
        0 - <- registry.acme.io/platform/base:1.2 @5 (written "$IMAGE")
        1 - <- registry.acme.io/platform/app:1.2 @6 (written "\"$REGISTRY/$TEAM/app:${TAG}\"")
        2 - <- unresolved "alpine:$TAG": invalid image reference "alpine:$TAG": tag must start with a letter, digit or '_' @7 (written "alpine:${SINGLE}")
        warning@7: cannot resolve FROM `alpine:${SINGLE}`: invalid image reference "alpine:$TAG": tag must start with a letter, digit or '_'
        "#,
    );
}

#[test]
fn arg_without_default_leaves_the_base_unresolved() {
    check(
        "
ARG BASE
ARG TAG
ARG IMAGE=golang:$TAG
FROM $BASE AS one
FROM ${IMAGE}
FROM alpine:${TAG:?required}
",
        r#"
        0 one <- unresolved "$BASE": ARG BASE has no default @5
        1 - <- unresolved "${IMAGE}": ARG TAG has no default @6
        2 - <- unresolved "alpine:${TAG:?required}": ARG TAG has no default @7
        warning@5: cannot resolve FROM `$BASE`: ARG BASE has no default
        warning@6: cannot resolve FROM `${IMAGE}`: ARG TAG has no default
        warning@7: cannot resolve FROM `alpine:${TAG:?required}`: ARG TAG has no default
        "#,
    );
}

#[test]
fn undeclared_variables_expand_to_nothing_with_a_warning() {
    check(
        "FROM ${MIRROR}alpine:3.20\nFROM alpine:${NOPE:-3.19}\nFROM alpine:${NOPE:?required}\n",
        r#"
        0 - <- docker.io/library/alpine:3.20 @1 (written "${MIRROR}alpine:3.20")
        1 - <- docker.io/library/alpine:3.19 @2 (written "alpine:${NOPE:-3.19}")
        2 - <- unresolved "alpine:${NOPE:?required}": NOPE: required @3
        warning@1: FROM uses $MIRROR, which no ARG before the first FROM declares: it expands to an empty string
        warning@3: cannot resolve FROM `alpine:${NOPE:?required}`: NOPE: required
        "#,
    );
}

#[test]
fn args_declared_inside_a_stage_do_not_reach_later_from_lines() {
    check(
        "
ARG V=3.20
FROM alpine:$V AS one
ARG V=9.9
ARG W=1
FROM alpine:$V AS two
FROM alpine$W
",
        r#"
        0 one <- docker.io/library/alpine:3.20 @3 (written "alpine:$V")
        1 two <- docker.io/library/alpine:3.20 @6 (written "alpine:$V")
        2 - <- docker.io/library/alpine @7 (written "alpine$W")
        warning@7: FROM uses $W, which no ARG before the first FROM declares: it expands to an empty string
        "#,
    );
}

#[test]
fn platform_args_stay_unexpanded_in_platform_and_unresolved_in_the_image() {
    check(
        "
ARG TARGETARCH
ARG ARCH=${TARGETARCH}
FROM --platform=$BUILDPLATFORM golang:1.22 AS build
FROM --platform=${TARGETPLATFORM:-linux/amd64} alpine-${TARGETARCH}:3 AS arch
FROM --platform=linux/arm64 debian:${ARCH}
FROM alpine:3${TARGETVARIANT+-v}
",
        r#"
        0 build <- docker.io/library/golang:1.22 [--platform=$BUILDPLATFORM] @4
        1 arch <- unresolved "alpine-${TARGETARCH}:3": TARGETARCH depends on the target platform [--platform=${TARGETPLATFORM:-linux/amd64}] @5
        2 - <- unresolved "debian:${ARCH}": TARGETARCH depends on the target platform [--platform=linux/arm64] @6
        3 - <- unresolved "alpine:3${TARGETVARIANT+-v}": TARGETVARIANT depends on the target platform @7
        warning@5: cannot resolve FROM `alpine-${TARGETARCH}:3`: TARGETARCH depends on the target platform
        warning@6: cannot resolve FROM `debian:${ARCH}`: TARGETARCH depends on the target platform
        warning@7: cannot resolve FROM `alpine:3${TARGETVARIANT+-v}`: TARGETVARIANT depends on the target platform
        "#,
    );
}

#[test]
fn escape_directive_makes_backtick_the_continuation_character() {
    check(
        "# escape=`\n\
         FROM mcr.microsoft.com/windows/servercore:ltsc2022 `\n\
         \x20   AS base\n\
         RUN dir C:\\\n\
         FROM base\n",
        "
        0 base <- mcr.microsoft.com/windows/servercore:ltsc2022 @2
        1 - <- stage base @5
        ",
    );
}

#[test]
fn directives_count_only_at_the_very_top() {
    // After a blank line `# escape=` is a comment, so the backtick is text.
    check(
        "\n# escape=`\nFROM alpine `\n  AS base\n",
        "
        0 - <- docker.io/library/alpine @3
        warning@3: unexpected ``` on FROM line: expected FROM [--platform=<p>] <image> [AS <name>]
        warning@4: unknown instruction `AS`
        ",
    );
    check(
        "# syntax=docker/dockerfile:1\n# escape=x\n#escape=`\nFROM alpine\n",
        "
        0 - <- docker.io/library/alpine @4
        warning@2: invalid escape directive `x`: only ` and \\ are allowed
        warning@3: only one escape parser directive can be used
        ",
    );
    check(
        "# escape=`\n# escape=\\\nFROM alpine `\n  AS a\n",
        "
        0 a <- docker.io/library/alpine @3
        warning@2: only one escape parser directive can be used
        ",
    );
}

#[test]
fn continuations_skip_comment_and_blank_lines_and_keep_the_first_line() {
    check(
        "ARG TAG=1.22\n\
         RUN echo one \\\n\
         # a comment inside the instruction\n\
         \x20   FROM is-not-an-instruction-here\n\
         FROM \\\t \n\
         \x20 # comment\n\
         \n\
         \x20 golang:${TAG} \\\n\
         \x20 AS build\n\
         RUN echo C:\\\\\n\
         FROM build\n\
         FROM alpine \\",
        r#"
        0 build <- docker.io/library/golang:1.22 @5 (written "golang:${TAG}")
        1 - <- stage build @11
        2 - <- docker.io/library/alpine @12
        warning@2: RUN before the first FROM: only ARG may come first
        "#,
    );
}

#[test]
fn heredoc_bodies_are_not_instructions() {
    let facts = check(
        "FROM alpine AS base\n\
         RUN <<EOF\n\
         FROM evil:1\n\
         EOF\n\
         RUN --mount=type=cache,target=/root cat <<-\"END\" > /x\n\
         \tFROM evil:2\n\
         \tEND\n\
         COPY <<a <<'b' /dst/\n\
         FROM evil:3\n\
         a\n\
         FROM evil:4\n\
         b\n\
         onbuild run 3<<EOF\n\
         FROM evil:5\n\
         EOF\n\
         RUN echo '<<NOTHEREDOC' \"<<NOR\" a<<NEITHER\n\
         RUN [\"sh\", \"-c\", \"cat <<JSON\"]\n\
         FROM base\n",
        "
        0 base <- docker.io/library/alpine @1
        1 - <- stage base @18
        ",
    );
    assert_eq!(
        lineage(&facts).0.as_deref(),
        Some("docker.io/library/alpine")
    );
}

#[test]
fn an_unterminated_heredoc_swallows_the_rest_of_the_file() {
    check(
        "FROM alpine\nRUN <<EOF\necho hi\nFROM evil\n",
        "
        0 - <- docker.io/library/alpine @1
        error@2: unterminated heredoc <<`EOF`: the rest of the file is its body
        ",
    );
}

#[test]
fn instructions_and_as_are_case_insensitive() {
    check(
        "arg tag=3.20\nfrom alpine:${tag} as Base\nFrOm base aS final\n",
        r#"
        0 base <- docker.io/library/alpine:3.20 @2 (written "alpine:${tag}")
        1 final <- stage base @3
        "#,
    );
}

#[test]
fn digests_and_tags_with_digests() {
    let digest = "sha256:4f5c8e8c1f0a2d3b6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";
    let text = format!(
        "FROM alpine@{digest} AS pinned\nFROM ghcr.io/acme/base:1.4@{digest}\nFROM localhost:5000/team/app:v2\n"
    );
    check(
        &text,
        &format!(
            "
            0 pinned <- docker.io/library/alpine@{digest} @1
            1 - <- ghcr.io/acme/base:1.4@{digest} @2
            2 - <- localhost:5000/team/app:v2 @3
            "
        ),
    );
}

#[test]
fn invalid_references_are_unresolved_with_the_reason() {
    check(
        "FROM Alpine:3\nFROM alpine:-bad\nFROM alpine@sha256:abc\nFROM a//b\n",
        r#"
        0 - <- unresolved "Alpine:3": invalid image reference "Alpine:3": repository name must be lowercase @1
        1 - <- unresolved "alpine:-bad": invalid image reference "alpine:-bad": tag must start with a letter, digit or '_' @2
        2 - <- unresolved "alpine@sha256:abc": invalid digest "sha256:abc": wrong digest length for the algorithm @3
        3 - <- unresolved "a//b": invalid image reference "a//b": empty path component @4
        warning@1: cannot resolve FROM `Alpine:3`: invalid image reference "Alpine:3": repository name must be lowercase
        warning@2: cannot resolve FROM `alpine:-bad`: invalid image reference "alpine:-bad": tag must start with a letter, digit or '_'
        warning@3: cannot resolve FROM `alpine@sha256:abc`: invalid digest "sha256:abc": wrong digest length for the algorithm
        warning@4: cannot resolve FROM `a//b`: invalid image reference "a//b": empty path component
        "#,
    );
}

#[test]
fn malformed_substitutions_are_unresolved() {
    check(
        "ARG A=1\nFROM \"alpine\nFROM alpine:${A\nFROM alpine:${A#1}\nFROM alpine:${}\nFROM alpine:${A:x}\n",
        r#"
        0 - <- unresolved "\"alpine": unterminated double quote @2
        1 - <- unresolved "alpine:${A": missing '}' in substitution @3
        2 - <- unresolved "alpine:${A#1}": unsupported substitution `${A#1}` @4
        3 - <- unresolved "alpine:${}": bad substitution in `alpine:${}` @5
        4 - <- unresolved "alpine:${A:x}": unsupported modifier (x) in substitution @6
        warning@2: cannot resolve FROM `"alpine`: unterminated double quote
        warning@3: cannot resolve FROM `alpine:${A`: missing '}' in substitution
        warning@4: cannot resolve FROM `alpine:${A#1}`: unsupported substitution `${A#1}`
        warning@5: cannot resolve FROM `alpine:${}`: bad substitution in `alpine:${}`
        warning@6: cannot resolve FROM `alpine:${A:x}`: unsupported modifier (x) in substitution
        "#,
    );
}

#[test]
fn malformed_global_args_are_reported_and_leave_their_users_unresolved() {
    check(
        "ARG =x\nARG\nARG B=\"unterminated\nFROM alpine:$B\n",
        r#"
        0 - <- unresolved "alpine:$B": ARG B cannot be expanded: unterminated double quote @4
        warning@1: ARG `=x` has no name
        warning@2: ARG without a name
        warning@3: ARG `B`: unterminated double quote
        warning@4: cannot resolve FROM `alpine:$B`: ARG B cannot be expanded: unterminated double quote
        "#,
    );
}

#[test]
fn garbage_on_from_lines_is_reported() {
    check(
        "FROM alpine extra\nFROM alpine AS\nFROM alpine AS a b\nFROM --pull=always --platform linux/amd64 debian\nFROM --platform=linux/amd64\nFROM 1bad AS 1Bad\nFROM alpine AS a\n",
        r#"
        0 - <- docker.io/library/alpine @1
        1 - <- docker.io/library/alpine @2
        2 a <- docker.io/library/alpine @3
        3 - <- docker.io/linux/amd64 @4
        4 - <- unresolved "": FROM without an image [--platform=linux/amd64] @5
        5 1bad <- docker.io/library/1bad @6
        6 a <- docker.io/library/alpine @7
        warning@1: unexpected `extra` on FROM line: expected FROM [--platform=<p>] <image> [AS <name>]
        warning@2: AS without a stage name
        warning@3: unexpected `b` on FROM line: expected FROM [--platform=<p>] <image> [AS <name>]
        warning@4: unknown FROM flag `--pull=always`
        warning@4: --platform needs a value: write FROM --platform=<platform> <image>
        warning@4: unexpected `debian` on FROM line: expected FROM [--platform=<p>] <image> [AS <name>]
        warning@5: FROM without an image
        warning@6: invalid stage name `1bad`: it must start with a letter and hold only letters, digits, '-', '_' and '.'
        warning@7: duplicate stage name `a` (first at line 3)
        "#,
    );
}

#[test]
fn a_file_without_from_is_not_a_dockerfile() {
    let no_from = "error: no FROM instruction; not a Dockerfile?";
    check("", no_from);
    check("\n\n   \n", no_from);
    check("# just a comment\nRUN echo hi\n", no_from);
    check("# Title\n\nSome prose that is not a Dockerfile.\n", no_from);
    check("RUN <<EOF\nFROM alpine\nEOF\n", no_from);
}

#[test]
fn binary_input_yields_one_error_and_no_facts() {
    check("FROM alpine\n\0\u{1}\u{2}garbage", "error: binary file");
    check("\0", "error: binary file");
}

#[test]
fn crlf_line_endings_and_a_byte_order_mark() {
    check(
        "\u{feff}# escape=\\\r\nARG TAG=3.20\r\nFROM alpine:${TAG} \\\r\n  AS base\r\nRUN <<EOF\r\nFROM evil\r\nEOF\r\nFROM base\r\n",
        r#"
        0 base <- docker.io/library/alpine:3.20 @3 (written "alpine:${TAG}")
        1 - <- stage base @8
        "#,
    );
}

#[test]
fn unknown_instructions_are_reported_up_to_a_limit() {
    let mut text = String::from("FROM alpine\n");
    for i in 0..13 {
        let _ = writeln!(text, "BOGUS{i} x");
    }
    check(
        &text,
        "
        0 - <- docker.io/library/alpine @1
        warning@2: unknown instruction `BOGUS0`
        warning@3: unknown instruction `BOGUS1`
        warning@4: unknown instruction `BOGUS2`
        warning@5: unknown instruction `BOGUS3`
        warning@6: unknown instruction `BOGUS4`
        warning@7: unknown instruction `BOGUS5`
        warning@8: unknown instruction `BOGUS6`
        warning@9: unknown instruction `BOGUS7`
        warning@10: unknown instruction `BOGUS8`
        warning@11: unknown instruction `BOGUS9`
        warning: 3 more unknown instructions not reported
        ",
    );
}

#[test]
fn duplicate_and_invalid_stage_names_are_reported() {
    check(
        "FROM alpine AS app\nFROM debian AS APP\nFROM app AS my_app.v2\nFROM app AS 2x\n",
        "
        0 app <- docker.io/library/alpine @1
        1 app <- docker.io/library/debian @2
        2 my_app.v2 <- stage app @3
        3 2x <- stage app @4
        warning@2: duplicate stage name `app` (first at line 1)
        warning@4: invalid stage name `2x`: it must start with a letter and hold only letters, digits, '-', '_' and '.'
        ",
    );
}

#[test]
fn five_thousand_stages_chained_to_the_first() {
    let mut text = String::from("ARG TAG=1.22\nFROM golang:${TAG} AS s0\n");
    for i in 1..5_000 {
        let _ = writeln!(text, "FROM s{} AS s{i}\nRUN echo {i}", i - 1);
    }
    let facts = parse(PATH, &text);
    assert!(facts.diagnostics.is_empty(), "{:?}", facts.diagnostics);
    let dockerfile = &facts.dockerfiles[0];
    assert_eq!(dockerfile.stages.len(), 5_000);
    let last = &dockerfile.stages[4_999];
    assert_eq!(last.base, StageBase::Stage("s4998".to_string()));
    assert_eq!(last.at.line, 2 * 4_999 + 1);
    assert_eq!(
        lineage(&facts),
        (Some("docker.io/library/golang:1.22".to_string()), vec![])
    );
}

/// Deterministic pseudo-random soup of Dockerfile fragments: whatever comes
/// in, `parse` returns facts and diagnostics instead of panicking.
#[test]
fn never_panics_on_hostile_input() {
    let fragments = [
        "FROM ",
        "from ",
        "ARG ",
        "A=",
        "${",
        "}",
        "$",
        ":-",
        ":+",
        ":?",
        "-",
        "+",
        "?",
        "#",
        "\"",
        "'",
        "\\",
        "`",
        "\n",
        "\r\n",
        "\r",
        " AS ",
        "<<",
        "<<-",
        "EOF",
        "\t",
        "RUN ",
        "COPY ",
        "ONBUILD ",
        "--platform=",
        "# escape=`\n",
        "scratch",
        "alpine",
        "@sha256:",
        "é",
        "\u{feff}",
        "\u{1}",
        "[\"x\"]",
        "=",
        "A",
        "{",
        "::",
        "/",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..3_000 {
        let mut text = String::new();
        state ^= state << 13;
        let len = (state >> 58) as usize;
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(fragments[(state % fragments.len() as u64) as usize]);
        }
        let facts = parse(PATH, &text);
        for dockerfile in &facts.dockerfiles {
            assert!(!dockerfile.stages.is_empty());
            let _ = dockerfile.final_base();
            let _ = dockerfile.builder_images();
        }
    }
    let deep = format!(
        "ARG A\nFROM x{}{}\n",
        "${A:-".repeat(10_000),
        "}".repeat(10_000)
    );
    let facts = parse(PATH, &deep);
    assert_eq!(facts.dockerfiles[0].stages.len(), 1);
    let long = format!("FROM {}\n{}\n", "a".repeat(100_000), "Z".repeat(100_000));
    assert_eq!(parse(PATH, &long).dockerfiles[0].stages.len(), 1);
}
