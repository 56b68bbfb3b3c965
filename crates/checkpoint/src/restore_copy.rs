//! Where a restore's verified copy of its image is written (the copy CRIU
//! reads at Start): the host's memory when it has room, else its disk.

use crate::error::{CheckpointError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreCopy {
    /// In memory (a private directory on the host's `/dev/shm` tmpfs) when
    /// the host and the shim's memory cgroup have room for the copy and the
    /// restored memory it becomes; on disk otherwise.
    Auto,
    /// Always on the host's disk (`/var/lib/containerd-arch/restore`).
    Disk,
}

pub(crate) fn parse_restore_copy(v: &str, origin: &str) -> Result<RestoreCopy> {
    match v.trim() {
        "auto" => Ok(RestoreCopy::Auto),
        "disk" => Ok(RestoreCopy::Disk),
        other => Err(CheckpointError::Config {
            origin: origin.to_string(),
            reason: format!("restore_copy {other:?}: use \"auto\" or \"disk\""),
        }),
    }
}
