//! Builds real OCI images from files, in memory: tar layers (ustar, plain
//! or gzip'd), the image config and the image manifest, ready for
//! [`crate::Client::push_image`].
//!
//! Everything is deterministic (mtime 0, owner 0:0, no `created`), so the
//! same files give the same digests: lab images can be rebuilt and compared.

use crate::sha256_digest;
use crate::{BASE_DIGEST, BASE_NAME, OCI_CONFIG, OCI_LAYER, OCI_LAYER_TAR, OCI_MANIFEST};
use model::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

/// The files of one layer, as (path inside the image, content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFiles {
    pub files: Vec<(String, Vec<u8>)>,
    /// Compress the tar (`tar+gzip` media type) or send it plain (`tar`).
    pub gzip: bool,
}

/// One built layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub media_type: &'static str,
    /// What is pushed: the tar, gzip'd or not.
    pub blob: Vec<u8>,
    /// The blob's digest (the manifest's layer digest).
    pub digest: Digest,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
}

/// A built image: layers, config and manifest bytes, and the manifest digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub digest: Digest,
}

/// What an image is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub os: String,
    pub architecture: String,
    pub layers: Vec<LayerFiles>,
    /// The image this one is built on, recorded as the manifest annotations
    /// `org.opencontainers.image.base.name` / `.base.digest`.
    pub base: Option<(String, Digest)>,
}

/// Why a file cannot go into a layer.
#[derive(Debug, thiserror::Error)]
#[error("{path:?}: {detail}")]
pub struct ImageError {
    pub path: String,
    pub detail: String,
}

/// Builds the image `spec` describes.
///
/// # Errors
/// A file path that is empty, absolute, has `.`/`..` components, or does not
/// fit a ustar header (100 bytes).
pub fn build(spec: &ImageSpec) -> Result<Image, ImageError> {
    let mut layers = Vec::new();
    for files in &spec.layers {
        let plain = tar(&files.files)?;
        let diff_id = sha256_digest(&plain);
        let (media_type, blob) = if files.gzip {
            (OCI_LAYER, gzip(&plain))
        } else {
            (OCI_LAYER_TAR, plain)
        };
        layers.push(Layer {
            media_type,
            digest: sha256_digest(&blob),
            blob,
            diff_id,
        });
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = serde_json::json!({
        "architecture": spec.architecture,
        "os": spec.os,
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    })
    .to_string()
    .into_bytes();
    let config_digest = sha256_digest(&config);
    let descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": l.media_type,
                "digest": l.digest.to_string(),
                "size": l.blob.len(),
            })
        })
        .collect();
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": descriptors,
    });
    if let Some((name, digest)) = &spec.base {
        let annotations: BTreeMap<&str, String> =
            [(BASE_NAME, name.clone()), (BASE_DIGEST, digest.to_string())]
                .into_iter()
                .collect();
        manifest["annotations"] = serde_json::json!(annotations);
    }
    let manifest = manifest.to_string().into_bytes();
    Ok(Image {
        layers,
        config,
        config_digest,
        digest: sha256_digest(&manifest),
        manifest,
    })
}

/// A ustar archive of `files` (mode 0644, directories 0755, owner 0:0,
/// mtime 0), with an entry for each parent directory before its first file.
///
/// # Errors
/// As [`build`].
pub fn tar(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let mut dirs = BTreeSet::new();
    for (path, content) in files {
        let error = |detail: &str| ImageError {
            path: path.clone(),
            detail: detail.to_string(),
        };
        let parts: Vec<&str> = path.split('/').collect();
        if path.is_empty()
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(error(
                "not a relative path of named components (no leading /, no . or ..)",
            ));
        }
        for end in 1..parts.len() {
            let dir = format!("{}/", parts[..end].join("/"));
            if dirs.insert(dir.clone()) {
                out.extend_from_slice(&header(&dir, b'5', 0o755, 0).map_err(|d| error(&d))?);
            }
        }
        out.extend_from_slice(
            &header(path, b'0', 0o644, content.len() as u64).map_err(|d| error(&d))?,
        );
        out.extend_from_slice(content);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    // The end of an archive: two zero blocks.
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

/// One 512-byte ustar header.
fn header(name: &str, kind: u8, mode: u32, size: u64) -> Result<[u8; 512], String> {
    if name.len() > 100 {
        return Err(format!(
            "longer than the 100 bytes of a ustar name ({} bytes)",
            name.len()
        ));
    }
    if size >= 0o77777777777 {
        return Err(format!("{size} bytes do not fit a ustar size"));
    }
    let mut h = [0u8; 512];
    let field = |h: &mut [u8; 512], at: usize, text: &str| {
        h[at..at + text.len()].copy_from_slice(text.as_bytes());
    };
    field(&mut h, 0, name);
    field(&mut h, 100, &format!("{mode:07o}\0"));
    field(&mut h, 108, "0000000\0");
    field(&mut h, 116, "0000000\0");
    field(&mut h, 124, &format!("{size:011o}\0"));
    field(&mut h, 136, "00000000000\0");
    h[156] = kind;
    field(&mut h, 257, "ustar\0");
    field(&mut h, 263, "00");
    field(&mut h, 265, "root");
    field(&mut h, 297, "root");
    // The checksum is computed with its own field as spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    field(&mut h, 148, &format!("{sum:06o}\0 "));
    Ok(h)
}

/// Gzip at the best compression; the header carries no name and mtime 0.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(data)
        .expect("writing into a Vec cannot fail");
    encoder.finish().expect("writing into a Vec cannot fail")
}
