//! Which cgroup driver manages a container: cgroupfs (libcgroups writes
//! the cgroup files itself) or systemd (a transient scope, created and
//! configured over D-Bus). As under runc, the driver is the runtime's
//! option (`SystemdCgroup` in containerd's runc options); a client that
//! cannot send options picks systemd by giving a `slice:prefix:name`
//! cgroupsPath, which is no cgroupfs path anyone means.

use std::path::{Path, PathBuf};

use libcgroups::common::{create_cgroup_manager, AnyCgroupManager, CgroupConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupDriver {
    #[default]
    Cgroupfs,
    Systemd,
}

impl CgroupDriver {
    /// The driver for a container: the runtime option when the client sent
    /// one, else systemd exactly when `cgroups_path` has systemd's form.
    pub fn choose(systemd_option: Option<bool>, cgroups_path: Option<&str>) -> Self {
        match systemd_option {
            Some(true) => CgroupDriver::Systemd,
            Some(false) => CgroupDriver::Cgroupfs,
            None if cgroups_path.is_some_and(is_systemd_path) => CgroupDriver::Systemd,
            None => CgroupDriver::Cgroupfs,
        }
    }

    pub fn is_systemd(self) -> bool {
        self == CgroupDriver::Systemd
    }

    pub fn from_systemd(systemd: bool) -> Self {
        if systemd {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        }
    }
}

/// `slice:prefix:name` (the form CRI sends with `SystemdCgroup = true`,
/// e.g. `kubepods-besteffort-pod1.slice:cri-containerd:abc`): three
/// colon-separated parts, not a path, the slice empty or a `.slice` unit.
pub fn is_systemd_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return false;
    };
    !path.starts_with('/')
        && !slice.contains('/')
        && !name.is_empty()
        && !prefix.contains('/')
        && !name.contains('/')
        && (slice.is_empty() || slice.ends_with(".slice"))
}

/// Makes the parent directories of a cgroupfs container's cgroup on a
/// cgroup v2 host (`root` is the v2 mount). libcgroups creates each level
/// with "exists? else mkdir": two containers created at once under a parent
/// that does not exist yet race, and the loser's Create fails with EEXIST
/// (`failed to create dir /sys/fs/cgroup/arch-test: File exists`, seen in
/// the cgroup v2 VM suite). `create_dir_all` takes a concurrent mkdir in its
/// stride, so libcgroups is left only the container's own level. Nothing to
/// do for systemd (the scope is systemd's) or cgroup v1.
pub fn prepare_parents(cgroups_path: &Path, driver: CgroupDriver, root: &Path) -> Result<()> {
    if driver.is_systemd() || !root.join("cgroup.controllers").exists() {
        return Ok(());
    }
    let dir = root.join(cgroup_dir(cgroups_path, driver));
    match dir.parent() {
        Some(parent) if parent != root => std::fs::create_dir_all(parent).map_err(
            RuntimeError::io(format!("creating the parent cgroups of {}", dir.display())),
        ),
        _ => Ok(()),
    }
}

/// The container's cgroup directory relative to the cgroup root: the path
/// itself for cgroupfs; for systemd, the scope (or slice) under its
/// expanded parent slice, as systemd's system manager places it
/// (`a-b.slice:p:n` is `a.slice/a-b.slice/p-n.scope`; no slice means
/// `system.slice`).
pub fn cgroup_dir(path: &Path, driver: CgroupDriver) -> PathBuf {
    let rel = path.strip_prefix("/").unwrap_or(path).to_path_buf();
    let text = path.to_string_lossy();
    if !driver.is_systemd() || !is_systemd_path(&text) {
        return rel;
    }
    let parts: Vec<&str> = text.split(':').collect();
    let (slice, prefix, name) = (parts[0], parts[1], parts[2]);
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut dir = PathBuf::new();
    let mut acc = String::new();
    let stem = slice.trim_end_matches(".slice");
    if stem != "-" {
        for component in stem.split('-') {
            dir.push(format!("{acc}{component}.slice"));
            acc = format!("{acc}{component}-");
        }
    }
    if name.ends_with(".slice") {
        dir.push(name);
    } else {
        dir.push(format!("{prefix}-{name}.scope"));
    }
    dir
}

/// libcgroups' manager of a container's cgroup under `driver`.
pub(crate) fn manager(id: &str, path: &Path, driver: CgroupDriver) -> Result<AnyCgroupManager> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: path.to_path_buf(),
        systemd_cgroup: driver.is_systemd(),
        container_name: id.to_string(),
    })
    .map_err(|e| RuntimeError::cgroup(id, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_have_three_parts_and_a_slice() {
        assert!(is_systemd_path(
            "kubepods-besteffort-pod1.slice:cri-containerd:abc"
        ));
        assert!(is_systemd_path("system.slice:arch:c1"));
        assert!(is_systemd_path(":arch:c1"));
        assert!(!is_systemd_path("/arch-test/c1"));
        assert!(!is_systemd_path("arch-test/c1"));
        assert!(!is_systemd_path("system.slice:arch"));
        assert!(!is_systemd_path("system.slice:arch:c1:x"));
        assert!(!is_systemd_path("system:arch:c1"));
        assert!(!is_systemd_path("system.slice:arch:"));
        assert!(!is_systemd_path("/a.slice:b:c"));
    }

    #[test]
    fn systemd_dirs_expand_the_slice() {
        let sd = CgroupDriver::Systemd;
        assert_eq!(
            cgroup_dir(Path::new("kubepods-besteffort-pod1.slice:cri-containerd:abc"), sd),
            Path::new("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope")
        );
        assert_eq!(
            cgroup_dir(Path::new(":arch:c1"), sd),
            Path::new("system.slice/arch-c1.scope")
        );
        assert_eq!(
            cgroup_dir(Path::new("/arch-test/c1"), CgroupDriver::Cgroupfs),
            Path::new("arch-test/c1")
        );
    }

    #[test]
    fn the_runtime_option_wins_over_the_path() {
        let sd = Some("system.slice:arch:c1");
        let fs = Some("/arch-test/c1");
        assert_eq!(CgroupDriver::choose(Some(true), fs), CgroupDriver::Systemd);
        assert_eq!(
            CgroupDriver::choose(Some(false), sd),
            CgroupDriver::Cgroupfs
        );
        assert_eq!(CgroupDriver::choose(None, sd), CgroupDriver::Systemd);
        assert_eq!(CgroupDriver::choose(None, fs), CgroupDriver::Cgroupfs);
        assert_eq!(CgroupDriver::choose(None, None), CgroupDriver::Cgroupfs);
    }

    #[test]
    fn the_parents_of_a_cgroupfs_cgroup_exist_before_libcgroups_runs() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory").unwrap();
        let path = Path::new("/arch-test/nested/c1");
        // Racing creators: every one succeeds (libcgroups' own mkdir failed).
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| prepare_parents(path, CgroupDriver::Cgroupfs, v2.path()).unwrap());
            }
        });
        assert!(v2.path().join("arch-test/nested").is_dir());
        assert!(
            !v2.path().join("arch-test/nested/c1").exists(),
            "the container's own level is libcgroups'"
        );
        let v1 = tempfile::tempdir().unwrap();
        prepare_parents(path, CgroupDriver::Cgroupfs, v1.path()).unwrap();
        assert!(
            !v1.path().join("arch-test").exists(),
            "nothing on cgroup v1"
        );
        prepare_parents(
            Path::new("system.slice:arch:c1"),
            CgroupDriver::Systemd,
            v2.path(),
        )
        .unwrap();
        assert!(
            !v2.path().join("system.slice").exists(),
            "nothing under systemd"
        );
    }
}
