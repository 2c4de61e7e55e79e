//! The images bulkhead knows beyond the fleet's Dockerfiles, and their lineage.
//!
//! An image is known from the base-images catalog, its Dockerfile in the base
//! images repository, scanner reports and the registry. Its parent is the
//! image its Dockerfile (or the catalog) says it is built `FROM`; when nothing
//! says so, the known image whose `rootfs.diff_ids` are the longest strict
//! prefix of its own (an image's layers are its base's layers plus its own).

use crate::bases::BaseImage;
use crate::reports::ScanReport;
use model::{Digest, Dockerfile, ImageRef, Provenance};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// How a parent was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParentVia {
    /// A Dockerfile `FROM`, the catalog's `base`, or a base annotation.
    Declared,
    /// Its layers start with the parent's layers.
    DiffIds,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownImage {
    /// `registry/repository`.
    pub name: String,
    pub tags: BTreeSet<String>,
    pub digests: BTreeSet<Digest>,
    /// The image it is built on, as declared.
    pub base: Option<ImageRef>,
    /// `rootfs.diff_ids`, bottom layer first (from reports or the registry).
    pub diff_ids: Vec<String>,
    /// Where it is declared (catalog entry or Dockerfile `FROM`).
    pub at: Option<Provenance>,
    /// Indices of its scanner reports in [`Catalog::reports`].
    pub reports: Vec<usize>,
}

impl KnownImage {
    fn new(name: &str) -> KnownImage {
        KnownImage {
            name: name.to_string(),
            tags: BTreeSet::new(),
            digests: BTreeSet::new(),
            base: None,
            diff_ids: Vec::new(),
            at: None,
            reports: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub images: BTreeMap<String, KnownImage>,
    pub reports: Vec<ScanReport>,
}

impl Catalog {
    /// Builds the catalog. `dockerfiles` are the fleet's Dockerfiles: those a
    /// base names as its own give its `FROM` line as provenance and parent.
    pub fn new(
        bases: Vec<BaseImage>,
        dockerfiles: &[Dockerfile],
        reports: Vec<ScanReport>,
    ) -> Catalog {
        let by_path: BTreeMap<&str, &Dockerfile> =
            dockerfiles.iter().map(|d| (d.path.as_str(), d)).collect();
        let mut images: BTreeMap<String, KnownImage> = BTreeMap::new();
        for base in bases {
            let image = images
                .entry(base.name.clone())
                .or_insert_with(|| KnownImage::new(&base.name));
            image.tags.extend(base.tag);
            image.digests.extend(base.digest);
            let dockerfile = base.dockerfile.as_deref().and_then(|p| by_path.get(p));
            let from = dockerfile.and_then(|d| d.final_base().zip(d.final_stage()));
            image.base = base.base.or_else(|| from.map(|(b, _)| b.clone()));
            image.at = Some(from.map_or(base.at, |(_, stage)| stage.at.clone()));
        }
        for (i, report) in reports.iter().enumerate() {
            let Some(name) = report.image_name() else {
                continue;
            };
            let image = images
                .entry(name.clone())
                .or_insert_with(|| KnownImage::new(&name));
            image.reports.push(i);
            image.digests.extend(report.digests().into_iter().cloned());
            if let Some(tag) = report.artifact.as_ref().and_then(ImageRef::tag) {
                image.tags.insert(tag.to_string());
            }
            if image.diff_ids.is_empty() {
                image.diff_ids.clone_from(&report.diff_ids);
            }
        }
        Catalog { images, reports }
    }

    pub fn get(&self, name: &str) -> Option<&KnownImage> {
        self.images.get(name)
    }

    /// Records an image learned elsewhere (the registry): its layers and declared base.
    pub fn learn(
        &mut self,
        name: &str,
        digest: Option<Digest>,
        diff_ids: Vec<String>,
        base: Option<ImageRef>,
    ) {
        let image = self
            .images
            .entry(name.to_string())
            .or_insert_with(|| KnownImage::new(name));
        image.digests.extend(digest);
        if image.diff_ids.is_empty() {
            image.diff_ids = diff_ids;
        }
        if image.base.is_none() {
            image.base = base;
        }
    }

    /// The image `name` is built on, and how that is known.
    pub fn parent(&self, name: &str) -> Option<(String, ParentVia)> {
        let image = self.images.get(name)?;
        if let Some(base) = &image.base
            && base.name() != name
        {
            return Some((base.name(), ParentVia::Declared));
        }
        self.base_by_diff_ids(&image.diff_ids, name)
            .map(|b| (b.name.clone(), ParentVia::DiffIds))
    }

    /// The known image whose layers are the longest strict prefix of `diff_ids`.
    pub fn base_by_diff_ids(&self, diff_ids: &[String], except: &str) -> Option<&KnownImage> {
        self.images
            .values()
            .filter(|i| i.name != except)
            .filter(|i| !i.diff_ids.is_empty() && i.diff_ids.len() < diff_ids.len())
            .filter(|i| diff_ids.starts_with(&i.diff_ids))
            .max_by_key(|i| i.diff_ids.len())
    }

    /// `name`, its parent, its parent's parent...: at most 32 steps, never looping.
    pub fn lineage(&self, name: &str) -> Vec<(String, Option<ParentVia>)> {
        let mut chain = vec![(name.to_string(), None)];
        let mut seen = BTreeSet::from([name.to_string()]);
        let mut current = name.to_string();
        while chain.len() < 32 {
            let Some((parent, via)) = self.parent(&current) else {
                break;
            };
            if !seen.insert(parent.clone()) {
                break;
            }
            chain.push((parent.clone(), Some(via)));
            current = parent;
        }
        chain
    }

    /// The image in `name`'s lineage that added `layer`: the most distant
    /// ancestor whose own layers contain it. `name` itself when no ancestor
    /// has it (or the layers are not known).
    pub fn introduced_by(&self, name: &str, layer: Option<&str>) -> String {
        let Some(layer) = layer else {
            return name.to_string();
        };
        self.lineage(name)
            .into_iter()
            .rev()
            .map(|(n, _)| n)
            .find(|n| {
                self.images
                    .get(n)
                    .is_some_and(|i| i.diff_ids.iter().any(|d| d == layer))
            })
            .unwrap_or_else(|| name.to_string())
    }

    /// Known images built (directly or not) on `ancestor`.
    pub fn descendants(&self, ancestor: &str) -> Vec<String> {
        self.images
            .keys()
            .filter(|n| n.as_str() != ancestor)
            .filter(|n| self.lineage(n).iter().any(|(a, _)| a == ancestor))
            .cloned()
            .collect()
    }
}
