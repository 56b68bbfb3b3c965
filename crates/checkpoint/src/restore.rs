//! Restore-side checks on a committed image: is it usable on this host, and
//! applying its filesystem changes to the new container's rootfs.

use std::path::Path;

use arch_image::{CgroupVersion, Image, Manifest};
use arch_rootfs::{ApplyStats, Limits};

use crate::error::{io, CheckpointError, Result};

/// What an image must match on the restoring host.
#[derive(Clone, Debug)]
pub struct HostFacts {
    pub arch: String,
    pub cgroup_version: CgroupVersion,
    pub criu_version: String,
    pub kernel: String,
}

impl HostFacts {
    pub fn detect(criu_version: String) -> Self {
        HostFacts {
            arch: std::env::consts::ARCH.to_string(),
            cgroup_version: arch_host::cgroup_version(Path::new(arch_host::paths::CGROUP_ROOT)),
            criu_version,
            kernel: arch_host::kernel_release(),
        }
    }
}

fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or("")
}

/// Refuses images CRIU could not restore here. A different kernel release
/// is allowed (CRIU restores across kernels of the same ABI) but logged.
pub fn check_compatible(m: &Manifest, host: &HostFacts) -> Result<()> {
    let refuse = |what: &str, image: &str, here: &str| {
        Err(CheckpointError::Unsupported(format!(
            "image made on {what} {image}, this host has {here}"
        )))
    };
    if m.arch != host.arch {
        return refuse("architecture", &m.arch, &host.arch);
    }
    if m.cgroup_version != host.cgroup_version {
        return refuse(
            "cgroup version",
            &format!("{:?}", m.cgroup_version),
            &format!("{:?}", host.cgroup_version),
        );
    }
    if major(&m.criu_version) != major(&host.criu_version) {
        return refuse("CRIU", &m.criu_version, &host.criu_version);
    }
    if m.kernel != host.kernel {
        log::info!(
            "restoring an image made on kernel {} on kernel {}",
            m.kernel,
            host.kernel
        );
    }
    Ok(())
}

/// Applies the image's rootfs-diff.tar to the mounted rootfs (writes land
/// in the new upperdir); never writes outside `rootfs`.
pub fn apply_rootfs(image: &Image, rootfs: &Path) -> Result<ApplyStats> {
    let tar = std::fs::File::open(image.rootfs_diff()).map_err(io("opening rootfs-diff.tar"))?;
    Ok(arch_rootfs::apply_diff(
        std::io::BufReader::new(tar),
        rootfs,
        Limits::default(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(arch: &str, cg: CgroupVersion, criu: &str) -> Manifest {
        let json = serde_json_like(arch, cg, criu);
        Manifest::parse(json.as_bytes(), Path::new("/img")).unwrap()
    }

    fn serde_json_like(arch: &str, cg: CgroupVersion, criu: &str) -> String {
        let cg = match cg {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
            CgroupVersion::Hybrid => "hybrid",
        };
        format!(
            r#"{{"format_version":2,"namespace":"ns","key":"k","container_id":"c","created_at":{{"secs":1,"nanos":0}},
"durations_ms":{{}},"total_size":0,"files":[],"criu_version":"{criu}","kernel":"6.1","arch":"{arch}","cgroup_version":"{cg}","profile":{{"digest":"{zero}","fields":{{}}}},"status":"committed"}}"#,
            zero = "0".repeat(64)
        )
    }

    fn host() -> HostFacts {
        HostFacts {
            arch: "x86_64".into(),
            cgroup_version: CgroupVersion::Hybrid,
            criu_version: "4.1.1".into(),
            kernel: "6.18".into(),
        }
    }

    #[test]
    fn same_host_kind_is_compatible() {
        check_compatible(&manifest("x86_64", CgroupVersion::Hybrid, "4.0.2"), &host()).unwrap();
    }

    #[test]
    fn other_arch_cgroups_or_criu_major_are_refused() {
        for m in [
            manifest("aarch64", CgroupVersion::Hybrid, "4.1.1"),
            manifest("x86_64", CgroupVersion::V2, "4.1.1"),
            manifest("x86_64", CgroupVersion::Hybrid, "3.17"),
        ] {
            let e = check_compatible(&m, &host()).unwrap_err().to_string();
            assert!(e.contains("this host has"), "{e}");
        }
    }
}
