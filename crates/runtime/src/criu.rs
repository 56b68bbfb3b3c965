//! Small things every CRIU request needs.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

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

/// CRIU's command line (`criu pre-dump`, `criu dump --stream`) for the
/// runs rust-criu's RPC cannot make: it dies with the thread that starts
/// it (`PR_SET_PDEATHSIG`, as every CRIU the shim runs) and inherits
/// `keep` (directories it gets as `/proc/self/fd/N`), which stay
/// close-on-exec in the shim so no other child inherits them.
pub(crate) fn criu_cli(criu: &std::path::Path, args: &[String], keep: Vec<RawFd>) -> Command {
    let mut cmd = Command::new(criu);
    cmd.args(args);
    // SAFETY: prctl and fcntl on the child's own descriptors only,
    // async-signal-safe between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in &keep {
                if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
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
