//! Enabling a cgroup v2 controller down to a cgroup. systemd enables only
//! the controllers it manages (cpu, cpuset, io, memory, pids) for the
//! scopes it makes; libcgroups' v2 statistics also read hugetlb's files,
//! and fail without them. As libcgroups does for cgroupfs cgroups, the
//! controller is enabled in every ancestor's `cgroup.subtree_control`.

use std::path::Path;

/// Enables `controller` in the `cgroup.subtree_control` of `root` and of
/// every ancestor of `root/rel` below it (not in `rel` itself, which holds
/// processes). Fails if the root does not offer the controller.
pub(crate) fn enable_down_to(root: &Path, rel: &Path, controller: &str) -> std::io::Result<()> {
    let offered = std::fs::read_to_string(root.join("cgroup.controllers"))?;
    if !offered.split_whitespace().any(|c| c == controller) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("the {controller} controller is not available"),
        ));
    }
    let mut dir = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in std::iter::once(None)
        .chain(parts.iter().map(Some))
        .enumerate()
    {
        if let Some(part) = part {
            dir.push(part);
        }
        if i == parts.len() {
            break;
        }
        let control = dir.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&control)?;
        if !enabled.split_whitespace().any(|c| c == controller) {
            std::fs::write(&control, format!("+{controller}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enables_in_the_ancestors_only() {
        let root = tempfile::tempdir().unwrap();
        let scope = root.path().join("system.slice/arch-c1.scope");
        std::fs::create_dir_all(&scope).unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpu memory hugetlb\n",
        )
        .unwrap();
        for d in [root.path(), &root.path().join("system.slice"), &scope] {
            std::fs::write(d.join("cgroup.subtree_control"), "cpu memory\n").unwrap();
        }
        enable_down_to(
            root.path(),
            Path::new("system.slice/arch-c1.scope"),
            "hugetlb",
        )
        .unwrap();
        let read = |d: &Path| std::fs::read_to_string(d.join("cgroup.subtree_control")).unwrap();
        assert_eq!(read(root.path()), "+hugetlb");
        assert_eq!(read(&root.path().join("system.slice")), "+hugetlb");
        assert_eq!(read(&scope), "cpu memory\n");
    }

    #[test]
    fn refuses_a_controller_the_root_lacks() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        assert!(enable_down_to(root.path(), Path::new("a/b"), "hugetlb").is_err());
    }
}
