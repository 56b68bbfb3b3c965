//! Paths fixed by the host, not by configuration.

use std::path::{Path, PathBuf};

/// Restores' verified copies on the host's disk (`restore_copy`).
pub const RESTORE_COPY_DISK: &str = "/var/lib/containerd-arch/restore";
/// Restores' verified copies in memory: a root-owned 0700 directory on
/// the host's `/dev/shm` tmpfs (`restore_copy = "auto"`, when it fits).
pub const RESTORE_COPY_MEMORY: &str = "/dev/shm/containerd-arch-restore";

/// The shims' runtime state: libcontainer state per namespace, console
/// sockets, dump slots. tmpfs: gone with a reboot, as the containers are.
pub const STATE_ROOT: &str = "/run/containerd-arch";

/// Where the cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// libcontainer's state directory for one containerd namespace.
pub fn state_root(namespace: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(namespace)
}

/// Console sockets on which a container's init hands over its pty master.
pub fn console_dir() -> PathBuf {
    Path::new(STATE_ROOT).join("console")
}

/// The host-wide dump slot files (flock'd, one per concurrent dump).
pub fn dump_slot_dir() -> PathBuf {
    Path::new(STATE_ROOT).join("dump-slots")
}

/// The host-wide periodic dump slots: fewer than the dump slots, so
/// periodic checkpoints leave room for stop-checkpoints.
pub fn periodic_slot_dir() -> PathBuf {
    Path::new(STATE_ROOT).join("periodic-slots")
}

/// What each containerd binary said its version was, for shim starts
/// (keyed by the binary's path, inode, size and mtime).
pub fn containerd_versions_dir() -> PathBuf {
    Path::new(STATE_ROOT).join("containerd-versions")
}

/// Content identities of image layers, cached per layer directory (keyed by
/// its path, device, inode and ctime): a layer is walked once per boot.
pub fn layer_ids_dir() -> PathBuf {
    Path::new(STATE_ROOT).join("layer-ids")
}

#[cfg(test)]
mod tests {
    #[test]
    fn everything_lives_under_the_state_root() {
        for p in [
            super::state_root("ns"),
            super::console_dir(),
            super::layer_ids_dir(),
            super::dump_slot_dir(),
            super::periodic_slot_dir(),
            super::containerd_versions_dir(),
        ] {
            assert!(p.starts_with(super::STATE_ROOT), "{}", p.display());
        }
    }
}
