//! Small things every CRIU request needs.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::error::{Result, RuntimeError};

/// The installed CRIU's version, e.g. "4.1.1" (CRIU answers over its RPC,
/// which also proves it can run).
pub fn criu_version() -> Result<String> {
    let mut criu = crate::criu_launch::new_criu().map_err(RuntimeError::CriuUnavailable)?;
    let v = criu
        .get_criu_version()
        .map_err(RuntimeError::CriuUnavailable)?;
    Ok(format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100))
}

/// CRIU's cgroup mode from containerd's CheckpointOptions spelling.
pub(crate) fn cg_mode(mode: &str) -> Result<rust_criu::CgMode> {
    Ok(match mode {
        "" | "soft" => rust_criu::CgMode::SOFT,
        "full" => rust_criu::CgMode::FULL,
        "strict" => rust_criu::CgMode::STRICT,
        "ignore" => rust_criu::CgMode::IGNORE,
        other => {
            return Err(RuntimeError::InvalidSpec(format!(
                "unknown cgroups mode {other:?}"
            )))
        }
    })
}

/// CRIU inherits the descriptors it passes on (inherit_fd), so they must
/// survive its exec; everywhere else they stay close-on-exec.
pub(crate) fn set_cloexec(fd: &OwnedFd, on: bool) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(flags))
        .map(|_| ())
        .map_err(|e| RuntimeError::io("setting FD_CLOEXEC around CRIU")(e.into()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn containerds_cgroup_modes_map_to_criu() {
        assert!(super::cg_mode("").is_ok());
        assert!(super::cg_mode("strict").is_ok());
        assert!(super::cg_mode("bogus").is_err());
    }
}
