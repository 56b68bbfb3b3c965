//! One container of this shim: its bundle and root filesystem, its init and
//! exec processes, and — when it is opted in — its ARCH state and a restore
//! that Create staged for Start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arch_runtime::CgroupDriver;

use crate::error::{Result, ShimError};
use crate::lifecycle::{ArchState, StagedRestore};
use crate::mounts::Rootfs;
use crate::process::Process;
use crate::service::CheckpointRestore;

/// A restore Create prepared for Start to carry out.
pub enum PendingRestore {
    /// An ARCH image from the store: a failure falls back to a fresh start.
    Arch(Box<StagedRestore>),
    /// containerd's own checkpoint (`ctr container restore --live`, the
    /// CRI's restore): a failure fails Start, never a silent fresh start.
    Checkpoint(CheckpointRestore),
}

pub struct Container {
    id: String,
    bundle: PathBuf,
    rootfs: Rootfs,
    init: Arc<Process>,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    arch: Option<ArchState>,
    pending: Mutex<Option<PendingRestore>>,
    /// Who manages the container's cgroup, chosen at Create; a restore or
    /// a fallback start uses it too.
    cgroup_driver: CgroupDriver,
}

impl Container {
    pub fn new(
        id: &str,
        bundle: &Path,
        rootfs: Rootfs,
        init: Arc<Process>,
        arch: Option<ArchState>,
        pending: Option<PendingRestore>,
    ) -> Self {
        Container {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            rootfs,
            init,
            execs: Mutex::new(HashMap::new()),
            arch,
            pending: Mutex::new(pending),
            cgroup_driver: CgroupDriver::default(),
        }
    }

    pub fn with_cgroup_driver(mut self, driver: CgroupDriver) -> Self {
        self.cgroup_driver = driver;
        self
    }

    pub fn cgroup_driver(&self) -> CgroupDriver {
        self.cgroup_driver
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn bundle(&self) -> &Path {
        &self.bundle
    }

    pub fn rootfs(&self) -> &Rootfs {
        &self.rootfs
    }

    pub fn init(&self) -> &Arc<Process> {
        &self.init
    }

    /// Set for containers opted in to ARCH.
    pub fn arch(&self) -> Option<&ArchState> {
        self.arch.as_ref()
    }

    /// The init (empty `exec_id`) or an exec.
    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        self.execs
            .lock()
            .unwrap()
            .get(exec_id)
            .cloned()
            .ok_or_else(|| {
                ShimError::NotFound(format!("exec {exec_id} not found in container {}", self.id))
            })
    }

    /// Registers a new exec process; an exec id is used once per container.
    pub fn add_exec(&self, process: Process) -> Result<Arc<Process>> {
        let mut execs = self.execs.lock().unwrap();
        if execs.contains_key(&process.exec_id) {
            return Err(ShimError::AlreadyExists(format!(
                "exec {} already exists",
                process.exec_id
            )));
        }
        let process = Arc::new(process);
        execs.insert(process.exec_id.clone(), process.clone());
        Ok(process)
    }

    pub fn remove_exec(&self, exec_id: &str) {
        self.execs.lock().unwrap().remove(exec_id);
        let _ = std::fs::remove_file(self.exec_spec_path(exec_id));
    }

    /// The OCI process of an exec, which libcontainer's tenant builder reads.
    pub fn exec_spec_path(&self, exec_id: &str) -> PathBuf {
        self.bundle.join(format!("exec-{exec_id}.json"))
    }

    /// The restore Create prepared, for Start to carry out (once).
    pub fn take_pending(&self) -> Option<PendingRestore> {
        self.pending.lock().unwrap().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdio::StdioPaths;

    fn container() -> Container {
        let spec = serde_json::from_str(r#"{"ociVersion":"1.0.2"}"#).unwrap();
        let bundle = Path::new("/b");
        Container::new(
            "c",
            bundle,
            Rootfs::new(bundle, &spec, &[]),
            Arc::new(Process::new("", StdioPaths::default())),
            None,
            None,
        )
    }

    #[test]
    fn execs_are_unique_and_found_by_id() {
        let c = container();
        c.add_exec(Process::new("e1", StdioPaths::default()))
            .unwrap();
        assert!(matches!(
            c.add_exec(Process::new("e1", StdioPaths::default())),
            Err(ShimError::AlreadyExists(_))
        ));
        assert_eq!(c.process("e1").unwrap().exec_id, "e1");
        assert!(c.process("").unwrap().exec_id.is_empty(), "the init");
        c.remove_exec("e1");
        assert!(matches!(c.process("e1"), Err(ShimError::NotFound(_))));
    }

    #[test]
    fn exec_specs_live_in_the_bundle() {
        assert_eq!(
            container().exec_spec_path("e1"),
            Path::new("/b/exec-e1.json")
        );
    }
}
