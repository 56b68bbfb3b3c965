//! What the benchmark examples commit with: nothing in it is measured.

use arch_image::{CgroupVersion, CommitInfo, ProfileDigest};

pub fn commit_info() -> CommitInfo {
    CommitInfo {
        container_id: "bench".into(),
        durations_ms: Default::default(),
        criu_version: "4.1.1".into(),
        kernel: String::new(),
        arch: std::env::consts::ARCH.into(),
        cgroup_version: CgroupVersion::V1,
        profile: ProfileDigest {
            digest: "0".repeat(64),
            fields: Default::default(),
        },
    }
}
