//! The container a restore lands in: libcontainer state exists before CRIU
//! runs, CRIU joins the new spec's cgroup at its pre-restore notify, before
//! it forks the tree (so every restored process is born in the cgroup, on
//! v1 and v2, under cgroupfs and systemd alike), and the restored tree is
//! registered as the container's after.

use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupManager, ControllerOpt};
use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::{LinuxResources, Spec};
use nix::unistd::Pid;

use crate::cgroup_driver::{manager, CgroupDriver};
use crate::cgroup_v1::create_v1_cgroup_dirs;
use crate::container::Runtime;
use crate::error::{Result, RuntimeError};
use crate::proc_tree::process_tree;

fn state_err(id: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Spawn {
        id: id.to_string(),
        action: "restore",
        reason: e.to_string(),
    }
}

/// Where a restored tree goes: the container's cgroup, its driver and the
/// new spec's resources.
#[derive(Clone, Debug)]
pub(crate) struct RestoreCgroup {
    pub id: String,
    pub path: PathBuf,
    pub driver: CgroupDriver,
    pub resources: LinuxResources,
}

impl RestoreCgroup {
    /// Puts `pid` (CRIU, before it forks the tree) into the cgroup, made
    /// now if need be (systemd: the transient scope starts with it), and
    /// applies the spec's resources there.
    pub(crate) fn join(&self, pid: i32) -> Result<()> {
        let m = manager(&self.id, &self.path, self.driver)?;
        m.add_task(Pid::from_raw(pid))
            .map_err(|e| RuntimeError::cgroup(&self.id, format!("adding CRIU ({pid}): {e}")))?;
        let opt = ControllerOpt {
            resources: &self.resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        m.apply(&opt).map_err(|e| RuntimeError::cgroup(&self.id, e))
    }
}

impl Runtime {
    /// libcontainer state (no process yet) for the restored container; on
    /// cgroup v1 (cgroupfs) also its directories, so the thread that
    /// spawns CRIU can move in first. Returns where the tree must go.
    pub(crate) fn prepare_restore_target(
        &self,
        id: &str,
        bundle: &Path,
        spec: &Spec,
        driver: CgroupDriver,
    ) -> Result<RestoreCgroup> {
        let dir = self.state_root().join(id);
        std::fs::create_dir_all(&dir)
            .map_err(RuntimeError::io(format!("creating {}", dir.display())))?;
        let config = YoukiConfig::from_spec(spec, id).map_err(|e| state_err(id, e))?;
        config.save(&dir).map_err(|e| state_err(id, e))?;
        let mut container = Container::new(id, ContainerStatus::Creating, None, bundle, &dir)
            .map_err(RuntimeError::lc(id, "restore"))?;
        container.set_systemd(driver.is_systemd());
        container.save().map_err(RuntimeError::lc(id, "restore"))?;
        if !driver.is_systemd() {
            create_v1_cgroup_dirs(&config.cgroup_path).map_err(|e| RuntimeError::cgroup(id, e))?;
        }
        let resources = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        Ok(RestoreCgroup {
            id: id.to_string(),
            path: config.cgroup_path,
            driver,
            resources,
        })
    }

    /// Undoes `prepare_restore_target` (and the join) after a failed
    /// restore: whatever is in the cgroup is killed, the cgroup removed.
    pub(crate) fn remove_restore_target(&self, target: &RestoreCgroup) {
        if let Ok(m) = manager(&target.id, &target.path, target.driver) {
            let _ = m.remove();
        }
        let _ = std::fs::remove_dir_all(self.state_root().join(&target.id));
    }

    /// Makes a restored tree the container's: running state with its pid,
    /// and every process in the cgroup (they were born there; a process
    /// that is not is moved).
    pub(crate) fn adopt(&self, target: &RestoreCgroup, bundle: &Path, pid: i32) -> Result<()> {
        let id = target.id.as_str();
        let dir = self.state_root().join(id);
        let mut container = Container::new(id, ContainerStatus::Running, Some(pid), bundle, &dir)
            .map_err(RuntimeError::lc(id, "restore"))?;
        container.set_systemd(target.driver.is_systemd());
        container.save().map_err(RuntimeError::lc(id, "restore"))?;
        let m = manager(id, &target.path, target.driver)?;
        let inside: Vec<i32> = m
            .get_all_pids()
            .map(|v| v.into_iter().map(|p| p.as_raw()).collect())
            .unwrap_or_default();
        for p in process_tree(pid) {
            if inside.contains(&p) {
                continue;
            }
            if let Err(e) = m.add_task(Pid::from_raw(p)) {
                // A short-lived child may exit between listing and moving.
                if Path::new(&format!("/proc/{p}")).exists() {
                    return Err(RuntimeError::cgroup(id, format!("adding {p}: {e}")));
                }
            }
        }
        Ok(())
    }
}
