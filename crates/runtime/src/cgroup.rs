//! The container's cgroup: statistics, pids, resource updates, OOM watching.

use std::path::{Path, PathBuf};

use libcgroups::common::{AnyCgroupManager, CgroupManager, ControllerOpt};
pub use libcgroups::stats::Stats as CgroupStats;
use libcontainer::oci_spec::runtime::LinuxResources;

use crate::cgroup_driver::{self, CgroupDriver};
use crate::error::{Result, RuntimeError};

use arch_host::paths::CGROUP_ROOT;

pub struct Cgroup {
    id: String,
    path: PathBuf,
    driver: CgroupDriver,
}

impl Cgroup {
    pub(crate) fn new(id: &str, path: PathBuf, driver: CgroupDriver) -> Self {
        Self {
            id: id.to_string(),
            path,
            driver,
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::cgroup(&self.id, e)
    }

    fn manager(&self) -> Result<AnyCgroupManager> {
        cgroup_driver::manager(&self.id, &self.path, self.driver)
    }

    pub fn stats(&self) -> Result<CgroupStats> {
        let manager = self.manager()?;
        match manager.stats() {
            Ok(stats) => Ok(stats),
            // A systemd scope lacks hugetlb's files (see v2_controllers).
            Err(e) if self.driver.is_systemd() => {
                let rel = cgroup_driver::cgroup_dir(&self.path, self.driver);
                crate::v2_controllers::enable_down_to(Path::new(CGROUP_ROOT), &rel, "hugetlb")
                    .map_err(|why| self.err(format!("{e} (enabling hugetlb: {why})")))?;
                manager.stats().map_err(|e| self.err(e))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    pub fn pids(&self) -> Result<Vec<i32>> {
        let pids = self.manager()?.get_all_pids().map_err(|e| self.err(e))?;
        Ok(pids.into_iter().map(|p| p.as_raw()).collect())
    }

    /// Waits up to `limit` for the cgroup to hold no process (killed
    /// ones leave asynchronously); false if some are still there.
    pub(crate) fn wait_empty(&self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.pids() {
                Ok(pids) if !pids.is_empty() => {}
                _ => return true,
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Removes the cgroup (every hierarchy, or the systemd scope).
    pub(crate) fn remove(&self) -> Result<()> {
        self.manager()?.remove().map_err(|e| self.err(e))
    }

    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        let opt = ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        self.manager()?.apply(&opt).map_err(|e| self.err(e))
    }

    /// Calls `on_oom` each time the kernel's OOM killer acts in this cgroup,
    /// from a thread that ends when the cgroup is removed.
    pub fn watch_oom(&self, on_oom: impl Fn() + Send + 'static) -> Result<()> {
        let rel = cgroup_driver::cgroup_dir(&self.path, self.driver);
        let v1 = Path::new(CGROUP_ROOT).join("memory").join(&rel);
        if v1.join("memory.oom_control").exists() {
            let efd = v1_oom_eventfd(&v1).map_err(|e| self.err(format!("oom eventfd: {e}")))?;
            self.oom_thread()
                .spawn(move || v1_oom_loop(efd, v1, on_oom))
                .map_err(|e| self.err(format!("oom watch thread: {e}")))?;
            return Ok(());
        }
        let v2 = Path::new(CGROUP_ROOT).join(&rel).join("memory.events");
        if v2.exists() {
            self.oom_thread()
                .spawn(move || {
                    let _ = crate::oom_v2::watch(v2, on_oom);
                })
                .map_err(|e| self.err(format!("oom watch thread: {e}")))?;
        }
        Ok(())
    }

    fn oom_thread(&self) -> std::thread::Builder {
        std::thread::Builder::new().name(format!("oom-{}", self.id))
    }
}

fn v1_oom_eventfd(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let oom_control = std::fs::File::open(dir.join("memory.oom_control"))?;
    // SAFETY: eventfd returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let efd = unsafe { std::fs::File::from_raw_fd(fd) };
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd()),
    )?;
    // The registration holds its own reference to oom_control.
    Ok(efd)
}

fn v1_oom_loop(mut efd: std::fs::File, dir: PathBuf, on_oom: impl Fn()) {
    use std::io::Read;
    let mut buf = [0u8; 8];
    // The eventfd also fires when the cgroup is removed; that ends the watch.
    while efd.read_exact(&mut buf).is_ok() {
        if !dir.exists() {
            return;
        }
        on_oom();
    }
}
