//! `ShimCgroup`: the shim runs in the cgroup containerd's options name, as
//! runc's shim does. ARCH joins it in `start`, before the daemon is
//! spawned, so the daemon and its helpers are born in it (runc's shim moves
//! the daemon's pid after spawning it; a Go shim has no children by then).
//!
//! The cgroup must exist (runc's shim does not create it either). On cgroup
//! v2 it is `<root>/<path>`; on v1 (and hybrid) every hierarchy in which
//! `<path>` exists is joined, and at least one must have it.

use std::path::{Component, Path, PathBuf};

use arch_host::facts::CgroupVersion;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ShimCgroupError {
    #[error("ShimCgroup {0:?}: must be a path without '..'")]
    BadPath(String),
    #[error(
        "ShimCgroup {path:?}: no such cgroup under {root} (create it first; the shim does not)"
    )]
    Missing { path: String, root: String },
    #[error("ShimCgroup {path:?}: joining {file}: {source}")]
    Join {
        path: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// The `cgroup.procs` files that put a process into cgroup `path`.
pub fn procs_files(
    root: &Path,
    version: CgroupVersion,
    path: &str,
) -> Result<Vec<PathBuf>, ShimCgroupError> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ShimCgroupError::BadPath(path.to_string()));
    }
    let missing = || ShimCgroupError::Missing {
        path: path.to_string(),
        root: root.display().to_string(),
    };
    if version == CgroupVersion::V2 {
        let file = root.join(rel).join("cgroup.procs");
        return if file.exists() {
            Ok(vec![file])
        } else {
            Err(missing())
        };
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(root).map_err(|_| missing())?;
    for entry in entries.flatten() {
        // cpu -> cpu,cpuacct and the like: the real directory is listed too.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_dir() {
            continue;
        }
        let file = entry.path().join(rel).join("cgroup.procs");
        if file.exists() {
            files.push(file);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(missing());
    }
    Ok(files)
}

/// Moves process `pid` into cgroup `path` of the hierarchy at `root`.
pub fn join(
    root: &Path,
    version: CgroupVersion,
    path: &str,
    pid: u32,
) -> Result<(), ShimCgroupError> {
    for file in procs_files(root, version, path)? {
        std::fs::write(&file, pid.to_string()).map_err(|source| ShimCgroupError::Join {
            path: path.to_string(),
            file: file.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }

    #[test]
    fn v2_is_one_file() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("shims/arch/cgroup.procs"));
        let files = procs_files(d.path(), CgroupVersion::V2, "/shims/arch").unwrap();
        assert_eq!(files, vec![d.path().join("shims/arch/cgroup.procs")]);
        let err = procs_files(d.path(), CgroupVersion::V2, "/nope").unwrap_err();
        assert!(err.to_string().contains("no such cgroup"), "{err}");
    }

    #[test]
    fn v1_joins_every_hierarchy_that_has_it() {
        let d = tempfile::tempdir().unwrap();
        for h in ["memory", "pids", "unified"] {
            touch(&d.path().join(h).join("shims/cgroup.procs"));
        }
        std::fs::create_dir_all(d.path().join("blkio")).unwrap();
        std::os::unix::fs::symlink(d.path().join("memory"), d.path().join("mem-link")).unwrap();
        let files = procs_files(d.path(), CgroupVersion::Hybrid, "shims").unwrap();
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(procs_files(d.path(), CgroupVersion::V1, "/other").is_err());
    }

    #[test]
    fn join_writes_the_pid() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("s/cgroup.procs"));
        join(d.path(), CgroupVersion::V2, "/s", 4242).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("s/cgroup.procs")).unwrap(),
            "4242"
        );
    }

    #[test]
    fn dot_dot_refused() {
        let d = tempfile::tempdir().unwrap();
        let err = procs_files(d.path(), CgroupVersion::V2, "/a/../../etc").unwrap_err();
        assert!(matches!(err, ShimCgroupError::BadPath(_)), "{err}");
    }
}
