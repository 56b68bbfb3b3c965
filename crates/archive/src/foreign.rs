//! Archives without ARCH's manifest: the Kubernetes/CRI-O checkpoint layout
//! as the kubelet (through CRI-O) or Podman write it. Nothing in such an
//! archive is signed and nothing lists its files, so it imports only when the
//! operator vouches for it (`--allow-unsigned`) and names where it lands;
//! its entries get the same hostile-archive rules as ARCH's own, and the
//! manifest is written here from what the archive holds.
//!
//! What the archive cannot say - the dumping host's kernel, CRIU and cgroup
//! version - the importing host fills in from its own facts: the restore's
//! compatibility check then passes, and CRIU's own checks decide (a restore
//! that fails starts the container fresh). The security profile is the one
//! of the container `spec.dump` describes, so an image imported from another
//! engine restores only into a container with the same profile.

use std::collections::BTreeSet;
use std::io::Read;

use arch_image::{CgroupVersion, CommitInfo, Image, ImageStore, ProfileDigest};

use crate::error::{ArchiveError, Result};
use crate::import::{
    corrupt, file_name, read_small, refuse_existing, refused, write_checked, ImportLimits,
};
use crate::layout::{image_path, CHECKPOINT_DIR, CONFIG_DUMP, DELETED_FILES, SPEC_DUMP};

/// What the importing host supplies for an archive without ARCH's manifest.
pub struct ForeignFacts<'a> {
    /// The security profile of the container `spec.dump` describes, given its
    /// container id (ARCH's canonical form: `arch_checkpoint::security_profile`).
    pub profile: &'a dyn Fn(&serde_json::Value, &str) -> ProfileDigest,
    pub arch: String,
    pub cgroup_version: CgroupVersion,
    pub criu_version: String,
    pub kernel: String,
}

/// CRIU's first image file: a checkpoint/ without it is no CRIU dump.
const INVENTORY: &str = "inventory.img";
/// An empty tar (two zero blocks): the rootfs diff of an archive without one.
const EMPTY_TAR: [u8; 1024] = [0; 1024];

/// Imports the entries of a foreign archive (`first` already read) into a
/// new image `ns/key`; nothing lands unless all of it was accepted.
pub(crate) fn import_foreign<'a, R: Read + 'a>(
    store: &ImageStore,
    entries: impl Iterator<Item = std::io::Result<tar::Entry<'a, R>>>,
    (ns, key): (&str, &str),
    limits: &ImportLimits,
    facts: &ForeignFacts<'_>,
) -> Result<Image> {
    refuse_existing(store, ns, key)?;
    let staging = store.begin(ns, key)?;
    let (mut seen, mut total) = (BTreeSet::new(), 0u64);
    let (mut spec, mut container_id) = (None, None);
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        let Some(name) = file_name(&entry)? else {
            continue;
        };
        if !seen.insert(name.clone()) {
            return Err(refused(&name, "a second entry with this name".into()));
        }
        match name.as_str() {
            CONFIG_DUMP => {
                let v = json(&name, &read_small(&mut entry, &name, limits)?)?;
                container_id = Some(v["id"].as_str().unwrap_or_default().to_string());
                continue;
            }
            DELETED_FILES => {
                let v = json(&name, &read_small(&mut entry, &name, limits)?)?;
                if v.as_array().is_none_or(|a| !a.is_empty()) {
                    return Err(refused(&name, "ARCH images carry deletions as whiteouts in rootfs-diff.tar; a list of deleted files is not supported".into()));
                }
                continue;
            }
            _ => {}
        }
        let Some(path) = image_path(&name) else {
            // The engine's own records (stats-dump, network.status,
            // bind.mounts, pod.options, ...): not part of an ARCH image.
            if name.contains('/') {
                return Err(refused(&name, "not a file of a checkpoint archive".into()));
            }
            continue;
        };
        let size = entry.header().size().map_err(corrupt)?;
        total = total.saturating_add(size);
        if total > limits.max_total {
            return Err(ArchiveError::TooLarge(format!(
                "an image of over {total} bytes"
            )));
        }
        if name == SPEC_DUMP {
            let bytes = read_small(&mut entry, &name, limits)?;
            spec = Some(json(&name, &bytes)?);
            std::fs::write(staging.path().join(&path), &bytes)
                .map_err(crate::error::io(format!("writing {path}")))?;
            continue;
        }
        write_checked(&mut entry, staging.path(), &path, size)?;
    }
    let missing = |what: &str| refused(what, "not in the archive: not a checkpoint archive".into());
    let spec = spec.ok_or_else(|| missing(SPEC_DUMP))?;
    let container_id = container_id.ok_or_else(|| missing(CONFIG_DUMP))?;
    if !seen.contains(&format!("{CHECKPOINT_DIR}/{INVENTORY}")) {
        return Err(missing(&format!("{CHECKPOINT_DIR}/{INVENTORY}")));
    }
    let diff = staging.path().join(arch_image::ROOTFS_DIFF);
    if !diff.exists() {
        std::fs::write(&diff, EMPTY_TAR)
            .map_err(crate::error::io("writing an empty rootfs diff"))?;
    }
    let info = CommitInfo {
        profile: (facts.profile)(&spec, &container_id),
        container_id,
        durations_ms: Default::default(),
        criu_version: facts.criu_version.clone(),
        kernel: facts.kernel.clone(),
        arch: facts.arch.clone(),
        cgroup_version: facts.cgroup_version,
    };
    Ok(staging.commit(info)?)
}

fn json(name: &str, bytes: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(bytes).map_err(|e| refused(name, format!("not JSON: {e}")))
}
