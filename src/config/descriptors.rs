//! `descriptors:`: the `.proto` files and descriptor sets routes are built
//! from (besides reflection), and the cache of reflected descriptors.

use std::path::PathBuf;

use serde::Deserialize;

/// Overrides `descriptors.cache_dir` (the Docker image sets it).
pub const DESCRIPTOR_CACHE_ENV: &str = "PROTOGATE_DESCRIPTOR_CACHE";

/// `descriptors:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescriptorsSection {
    /// Include directories for `.proto` imports.
    #[serde(default)]
    pub include: Vec<PathBuf>,
    /// `.proto` files to compile, relative to an include directory.
    #[serde(default)]
    pub protos: Vec<PathBuf>,
    /// Binary `FileDescriptorSet` files.
    #[serde(default)]
    pub descriptor_sets: Vec<PathBuf>,
    /// Refuse to load when a binding cannot be routed.
    #[serde(default)]
    pub strict: bool,
    /// Where the last descriptors fetched by reflection are kept.
    pub cache_dir: Option<PathBuf>,
}

/// Where descriptors are loaded from.
#[derive(Debug, Clone, Default)]
pub struct DescriptorSources {
    /// Include directories, searched in order.
    pub include: Vec<PathBuf>,
    /// Proto files, relative to an include directory.
    pub protos: Vec<PathBuf>,
    /// Binary `FileDescriptorSet` files.
    pub descriptor_sets: Vec<PathBuf>,
}

impl DescriptorSources {
    /// The files named: each proto where the include directories find it
    /// first, and the descriptor sets. Imports are not followed.
    pub fn files(&self) -> Vec<PathBuf> {
        self.protos
            .iter()
            .filter_map(|proto| {
                self.include
                    .iter()
                    .map(|dir| dir.join(proto))
                    .find(|path| path.is_file())
            })
            .chain(self.descriptor_sets.iter().cloned())
            .collect()
    }
}

impl DescriptorsSection {
    /// Whether no file is named (then a backend must use reflection).
    pub(super) fn is_empty(&self) -> bool {
        self.protos.is_empty() && self.descriptor_sets.is_empty()
    }

    /// The sources, directories and sets anchored.
    pub(super) fn sources(&self, anchor: &impl Fn(&PathBuf) -> PathBuf) -> DescriptorSources {
        DescriptorSources {
            include: self.include.iter().map(anchor).collect(),
            protos: self.protos.clone(),
            descriptor_sets: self.descriptor_sets.iter().map(anchor).collect(),
        }
    }

    /// `PROTOGATE_DESCRIPTOR_CACHE`, else `cache_dir` anchored. The
    /// environment wins, so an image can set a writable place for any
    /// config mounted into it.
    pub(super) fn cache(&self, anchor: &impl Fn(&PathBuf) -> PathBuf) -> Option<PathBuf> {
        std::env::var_os(DESCRIPTOR_CACHE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| self.cache_dir.as_ref().map(anchor))
    }
}
