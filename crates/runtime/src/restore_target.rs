//! The container a restore lands in: libcontainer state and the new spec's
//! cgroup exist before CRIU runs (so the restored tree can be born in the
//! cgroup), and the restored tree is registered as the container's after.

use std::path::{Path, PathBuf};

use libcgroups::common::{create_cgroup_manager, CgroupConfig, CgroupManager, ControllerOpt};
use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::Spec;
use nix::unistd::Pid;

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

impl Runtime {
    /// libcontainer state (no process yet) and the new spec's cgroup, with
    /// its resources applied; returns the cgroup path.
    pub(crate) fn prepare_restore_target(
        &self,
        id: &str,
        bundle: &Path,
        spec: &Spec,
    ) -> Result<PathBuf> {
        let dir = self.state_root().join(id);
        std::fs::create_dir_all(&dir)
            .map_err(RuntimeError::io(format!("creating {}", dir.display())))?;
        let config = YoukiConfig::from_spec(spec, id).map_err(|e| state_err(id, e))?;
        config.save(&dir).map_err(|e| state_err(id, e))?;
        let mut container = Container::new(id, ContainerStatus::Creating, None, bundle, &dir)
            .map_err(RuntimeError::lc(id, "restore"))?;
        container.set_systemd(false);
        container.save().map_err(RuntimeError::lc(id, "restore"))?;
        let default_resources = Default::default();
        let resources = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .unwrap_or(&default_resources);
        let opt = ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        create_v1_cgroup_dirs(&config.cgroup_path).map_err(|e| RuntimeError::cgroup(id, e))?;
        cgroup_manager(id, &config.cgroup_path)?
            .apply(&opt)
            .map_err(|e| RuntimeError::cgroup(id, e))?;
        Ok(config.cgroup_path)
    }

    /// Undoes `prepare_restore_target` after a failed restore.
    pub(crate) fn remove_restore_target(&self, id: &str, cgroup_path: &Path) {
        if let Ok(manager) = cgroup_manager(id, cgroup_path) {
            let _ = manager.remove();
        }
        let _ = std::fs::remove_dir_all(self.state_root().join(id));
    }

    /// Makes a restored tree the container's: running state with its pid,
    /// and every process in the cgroup.
    pub(crate) fn adopt(&self, id: &str, bundle: &Path, spec: &Spec, pid: i32) -> Result<()> {
        let dir = self.state_root().join(id);
        let config = YoukiConfig::from_spec(spec, id).map_err(|e| state_err(id, e))?;
        let mut container = Container::new(id, ContainerStatus::Running, Some(pid), bundle, &dir)
            .map_err(RuntimeError::lc(id, "restore"))?;
        container.set_systemd(false);
        container.save().map_err(RuntimeError::lc(id, "restore"))?;
        // Where the thread trick is unavailable (cgroup v2), move them now.
        let manager = cgroup_manager(id, &config.cgroup_path)?;
        for p in process_tree(pid) {
            if let Err(e) = manager.add_task(Pid::from_raw(p)) {
                // A short-lived child may exit between listing and moving.
                if Path::new(&format!("/proc/{p}")).exists() {
                    return Err(RuntimeError::cgroup(id, format!("adding {p}: {e}")));
                }
            }
        }
        Ok(())
    }
}

fn cgroup_manager(id: &str, path: &Path) -> Result<libcgroups::common::AnyCgroupManager> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: path.to_path_buf(),
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(|e| RuntimeError::cgroup(id, e))
}
