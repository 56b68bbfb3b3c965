//! cgroup v1 specifics of a restore: the container's directories must
//! exist before any process does, and the thread that spawns CRIU moves
//! into them so the restored tree is born there (v1 moves single threads;
//! children inherit the forking thread's cgroups).

use std::path::{Path, PathBuf};

use libcgroups::common::CgroupSetup;

/// The v1 controllers libcgroups manages (it also removes their dirs).
const V1_CONTROLLERS: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// Where the v1 hierarchies are mounted (none on a pure v2 host).
pub(crate) fn cgroup_v1_mount_points() -> Vec<String> {
    match libcgroups::common::get_cgroup_setup() {
        Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid) => {
            libcgroups::v1::util::list_subsystem_mount_points()
                .map(|mps| {
                    mps.into_iter()
                        .map(|p| p.display().to_string())
                        .filter(|p| p.starts_with(arch_host::paths::CGROUP_ROOT))
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// libcgroups v1 creates a container's directories only when it adds a
/// process; a restore needs them before any process exists.
pub(crate) fn create_v1_cgroup_dirs(path: &Path) -> std::io::Result<()> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    for mp in cgroup_v1_mount_points() {
        let name = Path::new(&mp)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !name.split(',').any(|c| V1_CONTROLLERS.contains(&c)) {
            continue;
        }
        let mut dir = PathBuf::from(&mp);
        for part in rel.components() {
            let parent = dir.clone();
            dir.push(part);
            std::fs::create_dir_all(&dir)?;
            if name.split(',').any(|c| c == "cpuset") {
                // A cpuset without cpus and mems accepts no task.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    if std::fs::read_to_string(dir.join(f))
                        .unwrap_or_default()
                        .trim()
                        .is_empty()
                    {
                        std::fs::write(
                            dir.join(f),
                            std::fs::read_to_string(parent.join(f))?.trim(),
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Moves the calling thread into a container's cgroup v1 hierarchies and
/// back out when dropped. A no-op where that is not possible (v2).
pub(crate) struct ThreadCgroup {
    moved: Vec<(PathBuf, PathBuf)>,
}

impl ThreadCgroup {
    pub(crate) fn enter(path: &Path) -> Self {
        let tid = nix::unistd::gettid().as_raw();
        let rel = path.strip_prefix("/").unwrap_or(path);
        let own = std::fs::read_to_string("/proc/thread-self/cgroup").unwrap_or_default();
        let mut moved = Vec::new();
        for mp in cgroup_v1_mount_points() {
            let target = Path::new(&mp).join(rel).join("tasks");
            let Some(back) = own_cgroup(&own, &mp) else {
                continue;
            };
            if target.exists() && std::fs::write(&target, tid.to_string()).is_ok() {
                moved.push((
                    Path::new(&mp)
                        .join(back.trim_start_matches('/'))
                        .join("tasks"),
                    target,
                ));
            }
        }
        ThreadCgroup { moved }
    }

    /// The `tasks` files of the cgroups the thread left, to put a process
    /// it starts back where the shim is (oci_hooks.rs).
    pub(crate) fn home_tasks(&self) -> Vec<PathBuf> {
        self.moved.iter().map(|(back, _)| back.clone()).collect()
    }
}

impl Drop for ThreadCgroup {
    fn drop(&mut self) {
        let tid = nix::unistd::gettid().as_raw().to_string();
        for (back, _) in &self.moved {
            let _ = std::fs::write(back, &tid);
        }
    }
}

/// The calling thread's cgroup in the v1 hierarchy mounted at `mount_point`
/// (the controllers are the mount point's last path element).
pub fn own_cgroup(proc_cgroup: &str, mount_point: &str) -> Option<String> {
    let name = Path::new(mount_point)
        .file_name()?
        .to_string_lossy()
        .to_string();
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = controllers
            .split(',')
            .any(|c| c == name || c == format!("name={name}"))
            || controllers == name;
        matches.then(|| path.to_string())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_cgroup_matches_named_and_joined_hierarchies() {
        let proc_cgroup = "12:cpu,cpuacct:/a\n3:name=systemd:/b\n0::/c\n";
        assert_eq!(
            super::own_cgroup(proc_cgroup, "/sys/fs/cgroup/cpu,cpuacct").as_deref(),
            Some("/a")
        );
        assert_eq!(
            super::own_cgroup(proc_cgroup, "/sys/fs/cgroup/systemd").as_deref(),
            Some("/b")
        );
        assert_eq!(super::own_cgroup(proc_cgroup, "/sys/fs/cgroup/pids"), None);
    }
}
