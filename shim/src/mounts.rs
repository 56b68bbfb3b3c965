//! The container's root filesystem: mounting the one containerd hands to
//! Create (an overlay snapshot) at bundle/rootfs and taking it down at
//! Delete, or finding the one an engine mounted itself (Docker's graphdriver
//! sends no mounts and points the spec's root at its own merged dir).

use std::path::{Path, PathBuf};

use arch_runtime::oci_spec::runtime::Spec;
use containerd_shim::protos::types::mount::Mount;

use crate::mountinfo::{own_overlay_upperdir, NoUpperdir};
use crate::seams::RootfsMounts;

/// Where a container's rootfs is and who owns its mounts.
#[derive(Clone, Debug)]
pub struct Rootfs {
    /// The spec's root.path, resolved against the bundle.
    pub path: PathBuf,
    /// Where the shim mounted the Create request's mounts (bundle/rootfs).
    pub target: PathBuf,
    /// The Create request's mounts, which the shim mounted at `target` and
    /// so may take down and reset. Empty when the engine mounted the rootfs
    /// itself or the bundle brings a plain directory: then it is not ours.
    pub mounts: Vec<Mount>,
}

impl Rootfs {
    pub fn new(bundle: &Path, spec: &Spec, mounts: &[Mount]) -> Self {
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| "rootfs".into());
        Rootfs {
            path: bundle.join(root),
            target: bundle.join("rootfs"),
            mounts: mounts.to_vec(),
        }
    }

    pub fn shim_mounted(&self) -> bool {
        !self.mounts.is_empty()
    }

    /// The overlay upperdir that collects the container's changes: from the
    /// request's mounts, or the mount table for an engine-mounted rootfs.
    /// An error says why there is none: a snapshotter without layers of its
    /// own (`native`: a bind of a full copy), a plain directory, a mount
    /// that is not an overlay. Its changes cannot be told apart from the
    /// image's files then, so an ARCH container cannot be created on it.
    pub fn upperdir(&self, host: &dyn RootfsMounts) -> Result<PathBuf, String> {
        if self.shim_mounted() {
            return request_upperdir(&self.mounts).ok_or_else(|| {
                let kinds: Vec<&str> = self.mounts.iter().map(|m| m.type_.as_str()).collect();
                format!(
                    "the snapshotter's mounts ({}) have no overlay upperdir (a snapshotter such as `native` keeps no layer of changes)",
                    kinds.join(", ")
                )
            });
        }
        host.engine_upperdir(&self.path).map_err(|why| match why {
            NoUpperdir::NotMounted => "it is a plain directory, not an overlay mount".to_string(),
            NoUpperdir::NotOverlay(fs) => format!("it is a {fs} mount, not an overlay"),
            NoUpperdir::Unknown(Some(dir)) => {
                format!("its overlay's upperdir {dir} is relative (unknown from here)")
            }
            NoUpperdir::Unknown(None) => "its overlay has no upperdir (read-only)".to_string(),
        })
    }
}

impl Rootfs {
    /// The image, by the content of the layers containerd sent (the overlay
    /// lowerdirs), the same on every host that unpacked it; None for a
    /// rootfs the engine mounted, or a plain directory. Under CRI too: the
    /// image name alone would match a tag moved to a new digest.
    pub fn image_identity(&self) -> Option<String> {
        let lowerdirs = self
            .mounts
            .iter()
            .filter(|m| m.type_ == "overlay")
            .flat_map(|m| m.options.iter())
            .find_map(|o| o.strip_prefix("lowerdir="))?;
        let cache = arch_host::paths::layer_ids_dir();
        Some(arch_checkpoint::layers_identity(lowerdirs, Some(&cache)))
    }
}

/// The overlay upperdir among the rootfs mounts containerd sent.
fn request_upperdir(mounts: &[Mount]) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.type_ == "overlay")
        .flat_map(|m| m.options.iter())
        .find_map(|o| o.strip_prefix("upperdir=").map(PathBuf::from))
}

/// The host's mount table.
pub struct HostMounts;

impl RootfsMounts for HostMounts {
    fn mount(&self, target: &Path, mounts: &[Mount]) -> std::io::Result<()> {
        std::fs::create_dir_all(target)?;
        for m in mounts {
            if let Err(e) = containerd_shim::mount::mount_rootfs(
                Some(&m.type_),
                Some(&m.source),
                &m.options,
                target,
            ) {
                self.unmount(target);
                return Err(std::io::Error::other(format!(
                    "mounting {} ({}) at {}: {e}",
                    m.source,
                    m.type_,
                    target.display()
                )));
            }
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) {
        let Some(t) = target.to_str() else { return };
        if let Err(e) = containerd_shim::mount::umount_recursive(Some(t), libc::MNT_DETACH) {
            log::warn!("unmounting {t}: {e}");
        }
    }

    fn reset(&self, target: &Path, mounts: &[Mount]) -> std::io::Result<()> {
        self.unmount(target);
        for m in mounts.iter().filter(|m| m.type_ == "overlay") {
            for opt in &m.options {
                if let Some(dir) = opt
                    .strip_prefix("upperdir=")
                    .or_else(|| opt.strip_prefix("workdir="))
                {
                    empty_dir(Path::new(dir))?;
                }
            }
        }
        self.mount(target, mounts)
    }

    fn engine_upperdir(&self, rootfs: &Path) -> Result<PathBuf, NoUpperdir> {
        own_overlay_upperdir(rootfs)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(root: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"{root}"}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn finds_the_upperdir_in_the_request() {
        let m = Mount {
            type_: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "index=off".into(),
                "workdir=/w".into(),
                "upperdir=/u/fs".into(),
                "lowerdir=/l".into(),
            ],
            ..Default::default()
        };
        let r = Rootfs::new(Path::new("/b"), &spec("rootfs"), &[m]);
        assert_eq!(r.path, Path::new("/b/rootfs"));
        assert!(r.shim_mounted());
        assert_eq!(r.upperdir(&HostMounts), Ok(PathBuf::from("/u/fs")));
        assert_eq!(request_upperdir(&[]), None);
    }

    #[test]
    fn an_engine_rootfs_is_the_specs_absolute_root() {
        let merged = "/var/lib/docker/overlay2/0f3c/merged";
        let r = Rootfs::new(Path::new("/b"), &spec(merged), &[]);
        assert_eq!(r.path, Path::new(merged));
        assert!(!r.shim_mounted());
        // A plain directory, mounted by nobody: no changes to collect.
        let dir = tempfile::tempdir().unwrap();
        let r = Rootfs::new(dir.path(), &spec("rootfs"), &[]);
        let why = r.upperdir(&HostMounts).unwrap_err();
        assert!(why.contains("plain directory"), "{why}");
        // The native snapshotter: a bind of a full copy, no layer of changes.
        let bind = Mount {
            type_: "bind".into(),
            source: "/var/lib/containerd/native/snapshots/7".into(),
            options: vec!["rbind".into(), "rw".into()],
            ..Default::default()
        };
        let r = Rootfs::new(dir.path(), &spec("rootfs"), &[bind]);
        let why = r.upperdir(&HostMounts).unwrap_err();
        assert!(why.contains("(bind) have no overlay upperdir"), "{why}");
    }

    #[test]
    fn reset_empties_the_layer_through_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(upper.join("d")).unwrap();
        std::fs::write(upper.join("f"), b"x").unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        std::os::unix::fs::symlink(&outside, upper.join("link")).unwrap();
        empty_dir(&upper).unwrap();
        assert_eq!(std::fs::read_dir(&upper).unwrap().count(), 0);
        assert!(outside.join("keep").exists(), "the link was not followed");
    }
}
