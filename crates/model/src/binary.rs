//! A compact binary encoding of [`Facts`], for the scan cache.
//!
//! The scan cache holds every file's facts (tens of megabytes at 10,000
//! services) and is written by every scan, so its encoding is on the scan's
//! critical path. This one writes each value's fields in declaration order,
//! with no names: integers as LEB128 varints, strings and lists as a length
//! and their contents, an `Option` as a 0/1 byte and the value. It is not
//! self-describing: a reader must be built from the same types, which the
//! cache's format number guarantees. Decoding checks every length against the
//! bytes left and fails (`None`) on anything malformed, never panics, so a
//! damaged or foreign file reads as no cache.
//!
//! A struct's codec lists its fields once (`binary_struct!`); decoding builds
//! the struct with a literal, so a field added to a fact type fails to compile
//! until it is encoded too. Such a change must bump the cache's format number.

use crate::diagnostic::{Diagnostic, Provenance, Severity};
use crate::facts::{
    CatalogEntity, Container, Dockerfile, EnvVar, Facts, Host, ImageOverride, KubeService, Route,
    RouteKind, Stage, StageBase, TemplateKind, TemplateRef, TemplateUse, TemplateUseKind, Workload,
    WorkloadKind,
};
use crate::image_ref::{Digest, ImageRef};
use std::collections::BTreeMap;

/// A value with a binary encoding.
pub trait Binary: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads one value from the front of `input`; `None` when the bytes are not one.
    fn decode(input: &mut Decoder<'_>) -> Option<Self>;
}

/// The bytes still to decode.
#[derive(Debug)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    /// A length, which cannot exceed the bytes left (every element takes at least one).
    fn len(&mut self) -> Option<usize> {
        let n = usize::try_from(u64::decode(self)?).ok()?;
        (n <= self.bytes.len()).then_some(n)
    }
}

fn put_varint(mut n: u128, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(input: &mut Decoder<'_>, bits: u32) -> Option<u128> {
    let mut n: u128 = 0;
    let mut shift = 0;
    loop {
        let b = input.byte()?;
        if shift >= bits || (shift > 0 && u128::from(b & 0x7f) >> (bits - shift) != 0) {
            return None;
        }
        n |= u128::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
        shift += 7;
    }
}

macro_rules! binary_uint {
    ($($ty:ty),*) => {$(
        impl Binary for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                put_varint(u128::from(*self), out);
            }
            fn decode(input: &mut Decoder<'_>) -> Option<Self> {
                <$ty>::try_from(get_varint(input, <$ty>::BITS)?).ok()
            }
        }
    )*};
}
binary_uint!(u8, u16, u32, u64, u128);

impl Binary for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode(input: &mut Decoder<'_>) -> Option<Self> {
        match input.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

impl Binary for String {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u64).encode(out);
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(input: &mut Decoder<'_>) -> Option<Self> {
        let n = input.len()?;
        let bytes = input.take(n)?;
        std::str::from_utf8(bytes).ok().map(str::to_string)
    }
}

impl<T: Binary> Binary for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.encode(out);
            }
        }
    }
    fn decode(input: &mut Decoder<'_>) -> Option<Self> {
        match input.byte()? {
            0 => Some(None),
            1 => Some(Some(T::decode(input)?)),
            _ => None,
        }
    }
}

impl<T: Binary> Binary for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u64).encode(out);
        for value in self {
            value.encode(out);
        }
    }
    fn decode(input: &mut Decoder<'_>) -> Option<Self> {
        let n = input.len()?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push(T::decode(input)?);
        }
        Some(values)
    }
}

impl<V: Binary> Binary for BTreeMap<String, V> {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u64).encode(out);
        for (key, value) in self {
            key.encode(out);
            value.encode(out);
        }
    }
    fn decode(input: &mut Decoder<'_>) -> Option<Self> {
        let n = input.len()?;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((String::decode(input)?, V::decode(input)?));
        }
        // Written in key order, so the map is built in one pass; a repeated key is malformed.
        let map: BTreeMap<String, V> = pairs.into_iter().collect();
        (map.len() == n).then_some(map)
    }
}

/// Template inputs are free-form JSON values, and rare: kept as JSON text.
impl Binary for serde_json::Value {
    fn encode(&self, out: &mut Vec<u8>) {
        self.to_string().encode(out);
    }
    fn decode(input: &mut Decoder<'_>) -> Option<Self> {
        serde_json::from_str(&String::decode(input)?).ok()
    }
}

/// Structs, field by field in declaration order.
macro_rules! binary_struct {
    ($($ty:ident { $($field:ident),* $(,)? })*) => {$(
        impl Binary for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                $(self.$field.encode(out);)*
            }
            fn decode(input: &mut Decoder<'_>) -> Option<Self> {
                Some($ty { $($field: Binary::decode(input)?),* })
            }
        }
    )*};
}

/// Enums without data, as their discriminant (the match makes a new variant fail to compile here).
macro_rules! binary_unit_enum {
    ($($ty:ident { $($variant:ident),* $(,)? })*) => {$(
        impl Binary for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                out.push(match self { $($ty::$variant => $ty::$variant as u8),* });
            }
            fn decode(input: &mut Decoder<'_>) -> Option<Self> {
                let tag = input.byte()?;
                $(if tag == $ty::$variant as u8 {
                    return Some($ty::$variant);
                })*
                None
            }
        }
    )*};
}

binary_struct! {
    Facts {
        dockerfiles, templates, workloads, kube_services, routes, catalog,
        image_overrides, hosts, diagnostics,
    }
    Provenance { path, line }
    Diagnostic { path, line, severity, message }
    Dockerfile { path, stages }
    Stage { index, name, base, platform, written, at }
    TemplateRef { kind, source, file, version, inputs, job, uses, at }
    TemplateUse { kind, name, job, at }
    Workload { kind, cluster, namespace, name, labels, pod_labels, containers, at }
    Container { name, image, image_ref, init, env, has_resource_limits, at }
    EnvVar { name, value, at }
    KubeService { namespace, name, selector, service_type, ports, at }
    Route { kind, name, namespace, host, path, backend, public, at }
    CatalogEntity {
        kind, name, namespace, spec_type, owner, lifecycle, system, tier, depends_on, at,
    }
    ImageOverride { name, new_name, new_tag, digest, at }
    Host { name, address, groups, at }
    ImageRef { registry, repository, tag, digest }
    Digest { algorithm, hex }
}

binary_unit_enum! {
    Severity { Error, Warning, Info }
    TemplateKind {
        GitlabLocal, GitlabProject, GitlabRemote, GitlabTemplate, GitlabComponent,
        GithubWorkflow, GithubAction,
    }
    TemplateUseKind { Extends, Needs, Overrides, Stage, Output, Secret, InheritsSecrets }
    WorkloadKind { Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod }
    RouteKind { Ingress, HTTPRoute, ExposedService }
}

impl Binary for StageBase {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            StageBase::Image(image) => {
                out.push(0);
                image.encode(out);
            }
            StageBase::Stage(name) => {
                out.push(1);
                name.encode(out);
            }
            StageBase::Scratch => out.push(2),
            StageBase::Unresolved { expanded, reason } => {
                out.push(3);
                expanded.encode(out);
                reason.encode(out);
            }
        }
    }
    fn decode(input: &mut Decoder<'_>) -> Option<Self> {
        Some(match input.byte()? {
            0 => StageBase::Image(ImageRef::decode(input)?),
            1 => StageBase::Stage(String::decode(input)?),
            2 => StageBase::Scratch,
            3 => StageBase::Unresolved {
                expanded: String::decode(input)?,
                reason: String::decode(input)?,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Binary, Decoder};
    use crate::facts::{
        CatalogEntity, Container, Dockerfile, EnvVar, Facts, Host, ImageOverride, KubeService,
        Route, RouteKind, Stage, StageBase, TemplateKind, TemplateRef, TemplateUse,
        TemplateUseKind, Workload, WorkloadKind,
    };
    use crate::{Diagnostic, ImageRef, Provenance};
    use std::collections::BTreeMap;

    fn decoded<T: Binary>(bytes: &[u8]) -> Option<T> {
        let mut input = Decoder::new(bytes);
        let value = T::decode(&mut input)?;
        input.is_empty().then_some(value)
    }

    /// Facts with every field set, every enum variant used and odd values (empty, Unicode, large numbers).
    fn every_kind_of_fact() -> Facts {
        let at = |line| Provenance::new("svc/é/file.yaml", line);
        let image = |s| ImageRef::parse(s).unwrap();
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "a".to_string()),
            (String::new(), "ü".to_string()),
        ]
        .into();
        let bases = [
            StageBase::Image(image(
                "localhost:5000/team/app:1.2@sha256:4f5c1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f",
            )),
            StageBase::Stage("build".into()),
            StageBase::Scratch,
            StageBase::Unresolved {
                expanded: "$X".into(),
                reason: "unset".into(),
            },
        ];
        let uses = [
            TemplateUseKind::Extends,
            TemplateUseKind::Needs,
            TemplateUseKind::Overrides,
            TemplateUseKind::Stage,
            TemplateUseKind::Output,
            TemplateUseKind::Secret,
            TemplateUseKind::InheritsSecrets,
        ];
        let template_kinds = [
            TemplateKind::GitlabLocal,
            TemplateKind::GitlabProject,
            TemplateKind::GitlabRemote,
            TemplateKind::GitlabTemplate,
            TemplateKind::GitlabComponent,
            TemplateKind::GithubWorkflow,
            TemplateKind::GithubAction,
        ];
        let workload_kinds = [
            WorkloadKind::Deployment,
            WorkloadKind::StatefulSet,
            WorkloadKind::DaemonSet,
            WorkloadKind::Job,
            WorkloadKind::CronJob,
            WorkloadKind::Pod,
        ];
        Facts {
            dockerfiles: vec![Dockerfile {
                path: "svc/Dockerfile".into(),
                stages: bases
                    .into_iter()
                    .enumerate()
                    .map(|(i, base)| Stage {
                        index: i as u32,
                        name: (i % 2 == 0).then(|| format!("s{i}")),
                        base,
                        platform: Some("$BUILDPLATFORM".into()),
                        written: "x".into(),
                        at: at(u32::MAX),
                    })
                    .collect(),
            }],
            templates: template_kinds
                .into_iter()
                .map(|kind| TemplateRef {
                    kind,
                    source: "platform/ci-templates".into(),
                    file: Some("build.yml".into()),
                    version: None,
                    inputs: [
                        ("image".to_string(), serde_json::json!("a/b")),
                        (
                            "n".to_string(),
                            serde_json::json!({"x": [1, 2.5, null, true]}),
                        ),
                    ]
                    .into(),
                    job: Some("build".into()),
                    uses: uses
                        .iter()
                        .map(|&kind| TemplateUse {
                            kind,
                            name: "deploy".into(),
                            job: "j".into(),
                            at: at(3),
                        })
                        .collect(),
                    at: at(2),
                })
                .collect(),
            workloads: workload_kinds
                .into_iter()
                .map(|kind| Workload {
                    kind,
                    cluster: String::new(),
                    namespace: "shop".into(),
                    name: "orders".into(),
                    labels: labels.clone(),
                    pod_labels: BTreeMap::new(),
                    containers: vec![Container {
                        name: "c".into(),
                        image: "nginx".into(),
                        image_ref: Some(image("nginx")),
                        init: true,
                        env: vec![
                            EnvVar {
                                name: "A".into(),
                                value: None,
                                at: at(9),
                            },
                            EnvVar {
                                name: "B".into(),
                                value: Some("".into()),
                                at: at(10),
                            },
                        ],
                        has_resource_limits: false,
                        at: at(8),
                    }],
                    at: at(7),
                })
                .collect(),
            kube_services: vec![KubeService {
                namespace: "shop".into(),
                name: "orders".into(),
                selector: labels,
                service_type: "ClusterIP".into(),
                ports: vec![0, 80, u16::MAX],
                at: at(1),
            }],
            routes: [
                RouteKind::Ingress,
                RouteKind::HTTPRoute,
                RouteKind::ExposedService,
            ]
            .into_iter()
            .map(|kind| Route {
                kind,
                name: "r".into(),
                namespace: "shop".into(),
                host: Some("shop.example".into()),
                path: "/".into(),
                backend: "orders".into(),
                public: true,
                at: at(4),
            })
            .collect(),
            catalog: vec![CatalogEntity {
                kind: "Component".into(),
                name: "orders".into(),
                namespace: None,
                spec_type: Some("service".into()),
                owner: Some("group:shop".into()),
                lifecycle: Some("production".into()),
                system: None,
                tier: Some(255),
                depends_on: vec!["component:payments".into()],
                at: at(1),
            }],
            image_overrides: vec![ImageOverride {
                name: "orders".into(),
                new_name: None,
                new_tag: Some("2".into()),
                digest: None,
                at: at(5),
            }],
            hosts: vec![Host {
                name: "h1".into(),
                address: Some("10.0.0.1".into()),
                groups: vec![],
                at: at(6),
            }],
            diagnostics: vec![
                Diagnostic::error("a", None, "unreadable"),
                Diagnostic::warning("b", Some(0), "odd"),
                Diagnostic {
                    severity: crate::Severity::Info,
                    ..Diagnostic::warning("c", Some(1), "")
                },
            ],
        }
    }

    #[test]
    fn facts_round_trip_unchanged() {
        let facts = every_kind_of_fact();
        let mut bytes = Vec::new();
        facts.encode(&mut bytes);
        assert_eq!(decoded::<Facts>(&bytes), Some(facts));
        assert_eq!(decoded::<Facts>(&[0; 9]), Some(Facts::default()));
    }

    #[test]
    fn integers_round_trip_at_their_limits_and_reject_overflow() {
        let mut bytes = Vec::new();
        for n in [0, 1, 127, 128, 300, u64::MAX] {
            bytes.clear();
            n.encode(&mut bytes);
            assert_eq!(decoded::<u64>(&bytes), Some(n));
        }
        bytes.clear();
        u128::MAX.encode(&mut bytes);
        assert_eq!(decoded::<u128>(&bytes), Some(u128::MAX));
        assert_eq!(decoded::<u64>(&bytes), None, "too large for a u64");
        bytes.clear();
        256u32.encode(&mut bytes);
        assert_eq!(decoded::<u8>(&bytes), None);
        assert_eq!(
            decoded::<u64>(&[0xff; 11]),
            None,
            "a varint that never ends"
        );
    }

    #[test]
    fn every_truncation_and_corruption_decodes_to_nothing_or_a_whole_value() {
        let facts = every_kind_of_fact();
        let mut bytes = Vec::new();
        facts.encode(&mut bytes);
        for end in 0..bytes.len() {
            assert_eq!(decoded::<Facts>(&bytes[..end]), None, "cut at {end}");
        }
        // A changed byte must never panic; it may decode to other facts, which the cache's header and sizes guard against.
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0xa5;
            let _ = decoded::<Facts>(&damaged);
        }
        assert_eq!(decoded::<String>(&[2, 0xff, 0xfe]), None, "not UTF-8");
        assert_eq!(decoded::<bool>(&[2]), None);
        assert_eq!(decoded::<Option<u8>>(&[2, 0]), None);
        assert_eq!(decoded::<Vec<u8>>(&[200, 1]), None, "longer than the input");
    }
}
