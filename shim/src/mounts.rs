//! Mounting the rootfs containerd hands to Create (an overlay snapshot) at
//! bundle/rootfs, and taking it down at Delete.

use std::path::{Path, PathBuf};

use containerd_shim::protos::types::mount::Mount;

use crate::error::{io_err, Result, ShimError};

/// Mounts `mounts` in order at bundle/rootfs; returns the mount point, or
/// None when containerd sent no mounts (the bundle brings its own rootfs).
pub fn mount_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(io_err(format!("creating {}", target.display())))?;
    for m in mounts {
        if let Err(e) = containerd_shim::mount::mount_rootfs(Some(&m.type_), Some(&m.source), &m.options, &target) {
            unmount_rootfs(&target);
            return Err(ShimError::Internal(format!(
                "mounting {} ({}) at {}: {e}",
                m.source,
                m.type_,
                target.display()
            )));
        }
    }
    Ok(Some(target))
}

/// Unmounts everything at or below `target`; failures are logged, as Delete
/// must still finish.
pub fn unmount_rootfs(target: &Path) {
    let Some(t) = target.to_str() else { return };
    if let Err(e) = containerd_shim::mount::umount_recursive(Some(t), libc::MNT_DETACH) {
        log::warn!("unmounting {t}: {e}");
    }
}
