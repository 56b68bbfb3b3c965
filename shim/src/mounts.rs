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
        if let Err(e) = containerd_shim::mount::mount_rootfs(
            Some(&m.type_),
            Some(&m.source),
            &m.options,
            &target,
        ) {
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

/// Puts the rootfs back to the pristine snapshot: unmount, empty the
/// overlay's upperdir and workdir, mount again.
pub fn reset_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<()> {
    let target = bundle.join("rootfs");
    unmount_rootfs(&target);
    for m in mounts.iter().filter(|m| m.type_ == "overlay") {
        for opt in &m.options {
            if let Some(dir) = opt
                .strip_prefix("upperdir=")
                .or_else(|| opt.strip_prefix("workdir="))
            {
                empty_dir(Path::new(dir)).map_err(io_err(format!("emptying {dir}")))?;
            }
        }
    }
    mount_rootfs(bundle, mounts).map(|_| ())
}

fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // symlink_metadata: never follow a link out of the directory.
        if std::fs::symlink_metadata(&path)?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
