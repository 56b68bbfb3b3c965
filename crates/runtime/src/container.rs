//! Operations on an existing container that do not fork.

use std::path::{Path, PathBuf};

use libcontainer::container::{Container, ContainerStatus};
use libcontainer::signal::Signal;

use crate::cgroup::Cgroup;
use crate::error::{Result, RuntimeError};
use crate::spawn::{self, CreateRequest, ExecRequest};

/// libcontainer's state directory for one containerd namespace.
#[derive(Clone, Debug)]
pub struct Runtime {
    state_root: PathBuf,
}

/// What a CRIU dump may take along, as containerd's CheckpointOptions says.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    pub image_dir: PathBuf,
    pub work_dir: Option<PathBuf>,
    /// Keep the container running after the dump (otherwise CRIU kills it).
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub file_locks: bool,
    /// CRIU cgroup mode: "soft" (default), "full", "strict" or "ignore".
    pub cgroups_mode: String,
    /// Fault points armed by the reliability suite (none in production).
    pub faults: arch_faults::Plan,
}

fn cg_mode(mode: &str) -> Result<rust_criu::CgMode> {
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

/// A loaded libcontainer container; reload it for each operation, as its
/// status is refreshed from /proc and its state file.
pub struct ContainerHandle {
    id: String,
    inner: Container,
}

impl Runtime {
    pub fn new(state_root: impl Into<PathBuf>) -> Self {
        Self {
            state_root: state_root.into(),
        }
    }

    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    pub fn create(&self, req: CreateRequest) -> Result<i32> {
        std::fs::create_dir_all(&self.state_root).map_err(|source| RuntimeError::Io {
            context: format!("creating state root {}", self.state_root.display()),
            source,
        })?;
        spawn::create(req)
    }

    pub fn exec(&self, req: ExecRequest) -> Result<i32> {
        spawn::exec(req)
    }

    pub fn load(&self, id: &str) -> Result<ContainerHandle> {
        let dir = self.state_root.join(id);
        if !dir.join("state.json").exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let inner = Container::load(dir).map_err(|e| RuntimeError::lc(id, "load", e))?;
        Ok(ContainerHandle {
            id: id.to_string(),
            inner,
        })
    }
}

impl ContainerHandle {
    pub fn start(&mut self) -> Result<()> {
        self.inner
            .start()
            .map_err(|e| RuntimeError::lc(&self.id, "start", e))
    }

    /// Signals the init process, or every process in the cgroup with `all`.
    pub fn kill(&mut self, signal: i32, all: bool) -> Result<()> {
        let sig = Signal::try_from(signal)
            .map_err(|e| RuntimeError::InvalidSpec(format!("signal {signal}: {e}")))?;
        self.inner
            .kill(sig, all)
            .map_err(|e| RuntimeError::lc(&self.id, "kill", e))
    }

    pub fn pause(&mut self) -> Result<()> {
        self.inner
            .pause()
            .map_err(|e| RuntimeError::lc(&self.id, "pause", e))
    }

    pub fn resume(&mut self) -> Result<()> {
        self.inner
            .resume()
            .map_err(|e| RuntimeError::lc(&self.id, "resume", e))
    }

    /// Kills whatever is left and removes the cgroups and the state directory.
    pub fn delete(&mut self) -> Result<()> {
        self.inner
            .delete(true)
            .map_err(|e| RuntimeError::lc(&self.id, "delete", e))
    }

    /// Dumps the container's processes with CRIU into `opts.image_dir`
    /// (dump.log and descriptors.json land there too).
    pub fn checkpoint(&mut self, opts: &DumpOptions) -> Result<()> {
        let pid = self
            .inner
            .pid()
            .ok_or_else(|| RuntimeError::lc(&self.id, "checkpoint", "no init pid"))?;
        crate::dump::dump(
            &self.id,
            pid.as_raw(),
            self.inner.bundle(),
            opts,
            cg_mode(&opts.cgroups_mode)?,
        )
    }

    pub fn is_stopped(&mut self) -> bool {
        let _ = self.inner.refresh_status();
        self.inner.status() == ContainerStatus::Stopped
    }

    pub fn cgroup(&self) -> Result<Cgroup> {
        let config = self
            .inner
            .spec()
            .map_err(|e| RuntimeError::lc(&self.id, "read config", e))?;
        Ok(Cgroup::new(&self.id, config.cgroup_path))
    }
}

/// The installed CRIU's version, e.g. "4.1.1" (CRIU answers over its RPC,
/// which also proves it can run).
pub fn criu_version() -> Result<String> {
    let mut criu =
        rust_criu::Criu::new().map_err(|e| RuntimeError::InvalidSpec(format!("criu: {e}")))?;
    let v = criu.get_criu_version().map_err(|e| RuntimeError::Io {
        context: "asking criu for its version".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100))
}
