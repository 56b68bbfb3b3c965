//! Names inside an archive, and how they map to an image's files. The
//! image's own names come from `arch_image`; these are the CRI-O ones.

use arch_image::{CONFIG, CRIU_DIR, ROOTFS_DIFF};

/// ARCH's manifest, the archive's first entry.
pub const ARCH_MANIFEST: &str = "arch-manifest.json";
/// The manifest's signature (the image's `manifest.sig`), second when the
/// image is signed.
pub const ARCH_SIGNATURE: &str = "arch-manifest.sig";
/// CRIU images (an image's `criu/`).
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The OCI runtime spec (an image's `config.json`).
pub const SPEC_DUMP: &str = "spec.dump";
/// Container metadata as CRI-O writes it (id, name, time), for checkpointctl.
pub const CONFIG_DUMP: &str = "config.dump";
/// Files deleted from the image's rootfs; ARCH's rootfs diff carries its
/// whiteouts itself, so this is always an empty list.
pub const DELETED_FILES: &str = "deleted.files";

/// The image file an archive entry holds, or None for entries that are not
/// image files (the manifest, config.dump, deleted.files).
pub fn image_path(entry: &str) -> Option<String> {
    if entry == SPEC_DUMP {
        return Some(CONFIG.to_string());
    }
    if entry == ROOTFS_DIFF || arch_image::sealed_name(entry).is_some() {
        return Some(entry.to_string());
    }
    if let Some(path) = predump_file(entry) {
        return Some(path);
    }
    let name = entry.strip_prefix(CHECKPOINT_DIR)?.strip_prefix('/')?;
    (!name.is_empty() && !name.contains('/')).then(|| format!("{CRIU_DIR}/{name}"))
}

/// A file of a pre-dump directory (`pre-N/<name>`): the same name in the
/// archive as in the image (CRI-O has no place for ARCH's pre-dumps).
fn predump_file(path: &str) -> Option<String> {
    let (dir, name) = path.split_once('/')?;
    (arch_image::is_predump_dir(dir) && !name.is_empty() && !name.contains('/'))
        .then(|| path.to_string())
}

/// The archive entry for an image file (inverse of [`image_path`]).
pub fn entry_name(image_path: &str) -> Option<String> {
    if image_path == CONFIG {
        return Some(SPEC_DUMP.to_string());
    }
    // An encrypted image's sealed config.json and rootfs diff keep their
    // stored names: checkpointctl could not read them anyway.
    if image_path == ROOTFS_DIFF || arch_image::sealed_name(image_path).is_some() {
        return Some(image_path.to_string());
    }
    if let Some(path) = predump_file(image_path) {
        return Some(path);
    }
    let name = image_path.strip_prefix(CRIU_DIR)?.strip_prefix('/')?;
    (!name.is_empty() && !name.contains('/')).then(|| format!("{CHECKPOINT_DIR}/{name}"))
}
