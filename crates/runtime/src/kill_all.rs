//! Signals every process of a container's cgroup without ever signalling
//! a stranger.
//!
//! libcontainer's kill-all freezes the cgroup, reads its pids and kill(2)s
//! each. On cgroup v2 a frozen task still dies of SIGKILL: a process
//! killed early in the loop can be reaped, and its pid reused by a
//! process anywhere on the host, before the loop reaches that pid. So:
//! - SIGKILL on cgroup v2 writes `cgroup.kill` (Linux 5.14): the kernel
//!   kills the cgroup's tasks itself, with no pid in between;
//! - otherwise the cgroup is frozen (a frozen task does not act on a
//!   signal, so none exits on its own meanwhile) and each pid is opened as
//!   a pidfd, checked to still be a member of the cgroup, and signalled
//!   through the pidfd. A signal through a pidfd reaches its process or
//!   nobody; the membership is read after the pidfd is open and the signal
//!   succeeds only if that process still held the pid, so the membership
//!   read was about it.

use std::path::Path;

use libcgroups::common::{AnyCgroupManager, CgroupManager, FreezerState};
use nix::errno::Errno;

use crate::cgroup_driver::{self, CgroupDriver};
use crate::error::{Result, RuntimeError};
use crate::pidfd::{pidfd_open, pidfd_send_signal};

/// Sends `signal` to every process of container `id`'s cgroup at
/// `path` (its cgroupsPath) under `driver`.
pub(crate) fn signal_cgroup(
    id: &str,
    path: &Path,
    driver: CgroupDriver,
    signal: i32,
) -> Result<()> {
    // libcgroups' v1 freeze makes the freezer directory if it is missing:
    // a kill-all after the cgroup is gone would leave an empty one behind.
    if !crate::dump::freezer_dir(path, driver).exists() {
        return Ok(());
    }
    let manager = cgroup_driver::manager(id, path, driver)?;
    let rel = cgroup_driver::cgroup_dir(path, driver);
    signal_all(
        &HostCgroup {
            manager: &manager,
            id,
            rel: &rel,
        },
        signal,
    )
}

/// What the kill needs of a cgroup, behind a trait for unit tests.
pub(crate) trait Members {
    /// Writes `cgroup.kill` if this cgroup has one (v2); false if not.
    fn kill_file(&self) -> std::io::Result<bool>;
    fn freeze(&self, frozen: bool) -> Result<()>;
    fn pids(&self) -> Result<Vec<i32>>;
    /// Whether `pid` is in this cgroup or one below it now.
    fn holds(&self, pid: i32) -> bool;
}

/// Sends `signal` to every process of the cgroup.
pub(crate) fn signal_all(cgroup: &impl Members, signal: i32) -> Result<()> {
    if signal == libc::SIGKILL {
        match cgroup.kill_file() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => log::warn!("cgroup.kill: {e}: killing by pidfds"),
        }
    }
    if let Err(e) = cgroup.freeze(true) {
        log::warn!("freezing before a kill-all: {e}");
    }
    let result = cgroup.pids().map(|pids| {
        for pid in pids {
            signal_member(cgroup, pid, signal);
        }
    });
    // A frozen task acts on its signal (dies of SIGKILL on v1) once thawed.
    if let Err(e) = cgroup.freeze(false) {
        log::warn!("thawing after a kill-all: {e}");
    }
    result
}

fn signal_member(cgroup: &impl Members, pid: i32, signal: i32) {
    let fd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(Errno::ESRCH) => return,
        Err(e) => {
            log::warn!("pidfd_open({pid}): {e}: not signalled");
            return;
        }
    };
    if !cgroup.holds(pid) {
        log::warn!("pid {pid} left the cgroup before its signal: not signalled");
        return;
    }
    match pidfd_send_signal(&fd, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => log::warn!("signal {signal} to {pid}: {e}"),
    }
}

/// A container's cgroup on this host.
pub(crate) struct HostCgroup<'a> {
    pub manager: &'a AnyCgroupManager,
    pub id: &'a str,
    /// The cgroup relative to the hierarchy roots (`cgroup_dir`).
    pub rel: &'a Path,
}

impl Members for HostCgroup<'_> {
    fn kill_file(&self) -> std::io::Result<bool> {
        let root = Path::new(arch_host::paths::CGROUP_ROOT);
        if arch_host::cgroup_version(root) != arch_host::CgroupVersion::V2 {
            return Ok(false);
        }
        let file = root.join(self.rel).join("cgroup.kill");
        match std::fs::write(&file, "1") {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn freeze(&self, frozen: bool) -> Result<()> {
        let state = match frozen {
            true => FreezerState::Frozen,
            false => FreezerState::Thawed,
        };
        self.manager
            .freeze(state)
            .map_err(|e| RuntimeError::cgroup(self.id, e))
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let pids = self
            .manager
            .get_all_pids()
            .map_err(|e| RuntimeError::cgroup(self.id, e))?;
        Ok(pids.into_iter().map(|p| p.as_raw()).collect())
    }

    fn holds(&self, pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|text| lists_cgroup(&text, self.rel))
            .unwrap_or(false)
    }
}

/// Whether a /proc/<pid>/cgroup text puts the task in `rel` or below it,
/// in any hierarchy (`N:controllers:/path`).
fn lists_cgroup(text: &str, rel: &Path) -> bool {
    let want = Path::new("/").join(rel);
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .any(|path| Path::new(path).starts_with(&want))
}

#[cfg(test)]
mod tests;
