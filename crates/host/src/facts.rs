//! Facts about this host: recorded in an image when it is made, compared
//! when it is restored, shown by archctl.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The host's cgroup layout (a restore needs the one the dump saw).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
    Hybrid,
}

impl CgroupVersion {
    pub fn name(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
            CgroupVersion::Hybrid => "hybrid",
        }
    }
}

impl std::fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The cgroup layout mounted at `root` (normally [`crate::paths::CGROUP_ROOT`]):
/// unified (v2), hybrid (v1 with a v2 mount at `unified`), or v1.
pub fn cgroup_version(root: &Path) -> CgroupVersion {
    if root.join("cgroup.controllers").exists() {
        CgroupVersion::V2
    } else if root.join("unified").exists() {
        CgroupVersion::Hybrid
    } else {
        CgroupVersion::V1
    }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// This host's name, for records and network-fs claims.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Unix time in whole seconds (0 for a clock before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_read_from_the_mounts() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_version(d.path()), CgroupVersion::V1);
        std::fs::create_dir(d.path().join("unified")).unwrap();
        assert_eq!(cgroup_version(d.path()), CgroupVersion::Hybrid);
        std::fs::write(d.path().join("cgroup.controllers"), "").unwrap();
        assert_eq!(cgroup_version(d.path()), CgroupVersion::V2);
    }

    #[test]
    fn versions_serialise_in_lower_case() {
        assert_eq!(
            serde_json::to_string(&CgroupVersion::Hybrid).unwrap(),
            "\"hybrid\""
        );
        assert_eq!(CgroupVersion::V2.to_string(), "v2");
    }

    #[test]
    fn the_kernel_release_is_known() {
        assert!(!kernel_release().is_empty());
    }
}
