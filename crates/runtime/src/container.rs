//! Operations on an existing container that do not fork.

use std::path::{Path, PathBuf};

use libcontainer::container::{Container, ContainerStatus};
use libcontainer::signal::Signal;

use crate::cgroup::Cgroup;
use crate::cgroup_driver::CgroupDriver;
use crate::dump::DumpOptions;
use crate::error::{Result, RuntimeError};
use crate::exec_security::ExecSecurity;
use crate::freeze::{self, Freezer};
use crate::libcontainer_spec;
use crate::spawn::{self, CreateRequest, ExecRequest};

/// libcontainer's state directory for one containerd namespace.
#[derive(Clone, Debug)]
pub struct Runtime {
    state_root: PathBuf,
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
        std::fs::create_dir_all(&self.state_root).map_err(RuntimeError::io(format!(
            "creating state root {}",
            self.state_root.display()
        )))?;
        let spec = libcontainer_spec::normalise_bundle(&req.bundle)?;
        if let Some(path) = spec["linux"]["cgroupsPath"].as_str() {
            let root = Path::new(arch_host::paths::CGROUP_ROOT);
            crate::cgroup_driver::prepare_parents(Path::new(path), req.cgroup_driver, root)?;
        }
        spawn::create(req)
    }

    /// Runs `req`'s process in the container, with the container's seccomp
    /// filter (see [`crate::exec_security`]).
    pub fn exec(&self, req: ExecRequest) -> Result<i32> {
        let handle = self.load(&req.container_id)?;
        let spec = libcontainer_spec::read_json(&handle.inner.bundle().join("config.json"))?;
        let mut process = libcontainer_spec::read_json(&req.process_json)?;
        let original = process.clone();
        libcontainer_spec::normalise_process(&mut process);
        let security = ExecSecurity::plan(&spec, &mut process)?;
        // The process as asked for: the plan may hold CAP_SYS_ADMIN for a
        // moment to install the seccomp filter (exec_security.rs), which
        // marked every exec under a filter (Docker's, CRI's RuntimeDefault)
        // as able to change the network.
        if crate::quiet_network::process_can_change(&original) {
            // From now on every dump keeps the network namespace.
            let state = self.state_root.join(&req.container_id);
            crate::quiet_network::mark_changeable(&state).map_err(RuntimeError::io(format!(
                "marking {}'s network as changeable",
                req.container_id
            )))?;
        }
        if process != original {
            libcontainer_spec::write_json(&req.process_json, &process)?;
        }
        spawn::exec(req, security)
    }

    /// Removes container `id`'s state directory, for a container whose
    /// state cannot be loaded any more (see [`crate::orphan`]).
    pub fn remove_state(&self, id: &str) -> Result<()> {
        match std::fs::remove_dir_all(self.state_root.join(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(RuntimeError::io(format!("removing the state of {id}"))(e))
            }
            _ => Ok(()),
        }
    }

    pub fn load(&self, id: &str) -> Result<ContainerHandle> {
        let dir = self.state_root.join(id);
        if !dir.join("state.json").exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let inner = Container::load(dir).map_err(RuntimeError::lc(id, "load"))?;
        Ok(ContainerHandle {
            id: id.to_string(),
            inner,
        })
    }
}

impl ContainerHandle {
    /// Starts the init, and returns once it runs the container's program:
    /// libcontainer only tells it to go, and until its execve the init is
    /// still a copy of the shim. A checkpoint or pause right after Start
    /// (ctr and the CRI do both) would otherwise catch that copy, which
    /// CRIU cannot dump (the shim's binary is not in the container).
    pub fn start(&mut self) -> Result<()> {
        self.inner
            .start()
            .map_err(RuntimeError::lc(&self.id, "start"))?;
        if let Some(pid) = self.inner.pid() {
            wait_for_exec(pid.as_raw(), EXEC_WAIT);
        }
        Ok(())
    }

    /// Signals the init process, or every process in the cgroup with `all`
    /// (through pidfds or `cgroup.kill`, never by pid: see kill_all).
    pub fn kill(&mut self, signal: i32, all: bool) -> Result<()> {
        let sig = Signal::try_from(signal)
            .map_err(|e| RuntimeError::InvalidSpec(format!("signal {signal}: {e}")))?;
        if all {
            return self.signal_all(signal);
        }
        self.inner
            .kill(sig, all)
            .map_err(RuntimeError::lc(&self.id, "kill"))
    }

    fn signal_all(&self, signal: i32) -> Result<()> {
        let driver = CgroupDriver::from_systemd(self.inner.systemd());
        crate::kill_all::signal_cgroup(&self.id, &self.cgroup_path()?, driver, signal)
    }

    /// The container's freezer: cgroup v1's freezer hierarchy, or its v2 cgroup.
    fn freezer_dir(&self) -> Result<std::path::PathBuf> {
        let driver = CgroupDriver::from_systemd(self.inner.systemd());
        Ok(crate::dump::freezer_dir(&self.cgroup_path()?, driver))
    }

    /// Freezes the container (patiently: see [`crate::freeze`]) and
    /// records it as paused.
    pub fn pause(&mut self) -> Result<()> {
        self.inner
            .refresh_status()
            .map_err(RuntimeError::lc(&self.id, "pause"))?;
        if self.inner.can_pause() {
            let dir = self.freezer_dir()?;
            let cgroup = freeze::HostFreezer::at(&dir);
            freeze::freeze(
                &self.id,
                &cgroup,
                freeze::FREEZE_PATIENCE,
                std::thread::sleep,
            )?;
        }
        self.inner
            .pause()
            .map_err(RuntimeError::lc(&self.id, "pause"))
    }

    pub fn resume(&mut self) -> Result<()> {
        self.inner
            .resume()
            .map_err(RuntimeError::lc(&self.id, "resume"))
    }

    /// Ends the frozen container (a stop-checkpoint committed): SIGKILL to
    /// every task, delivered as they thaw. The freezer is thawed directly,
    /// not through libcontainer's resume: this kernel may kill a frozen
    /// task outright, and with the init gone (or going) libcontainer calls
    /// the container Stopped and refuses to resume it, or fails reading the
    /// init's /proc entry (an error logged at one stop in ten; on a kernel
    /// that does not, the rest of a frozen tree would have stayed frozen).
    pub fn end_frozen(&mut self) -> Result<()> {
        let killed = self.signal_all(libc::SIGKILL);
        let dir = self.freezer_dir()?;
        let thawed = match freeze::HostFreezer::at(&dir).request(false) {
            // No freezer file: no cgroup, nothing left frozen.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(RuntimeError::io(format!("thawing {}", dir.display()))),
        };
        // libcontainer's state still says paused: it reads the init's pid
        // again at its next call (delete), and finds it gone.
        killed.and(thawed)
    }

    /// Kills whatever is left and removes the cgroups and the state directory.
    /// The kill is ours (see kill_all): libcontainer's own, which it would
    /// run on a live container, kill(2)s by pid. Once the cgroup is empty
    /// its kill finds no pid to signal.
    pub fn delete(&mut self) -> Result<()> {
        if let Err(e) = self.signal_all(libc::SIGKILL) {
            log::warn!("{}: kill before delete: {e}", self.id);
        }
        self.wait_cgroup_empty(CGROUP_EMPTY_WAIT);
        self.inner
            .delete(true)
            .map_err(RuntimeError::lc(&self.id, "delete"))
    }

    /// Dumps the container's processes with CRIU into `opts.image_dir`
    /// (dump.log and descriptors.json land there too); a streamed dump's
    /// stored files are returned as the streamer recorded them.
    pub fn checkpoint(&mut self, opts: &DumpOptions) -> Result<Vec<arch_imgstream::FileRecord>> {
        let pid = self.inner.pid().ok_or_else(|| RuntimeError::Spawn {
            id: self.id.clone(),
            action: "checkpoint",
            reason: "the container has no init pid".into(),
        })?;
        // A pre-dump freezes the cgroup for its moment, as runc's does.
        let freezer = match opts.frozen || opts.pre_dump {
            true => Some(self.freezer_dir()?),
            false => None,
        };
        crate::dump::dump(
            &self.id,
            pid.as_raw(),
            self.inner.bundle(),
            &self.inner.root,
            freezer.as_deref(),
            opts,
        )
    }

    pub fn is_stopped(&mut self) -> bool {
        let _ = self.inner.refresh_status();
        self.inner.status() == ContainerStatus::Stopped
    }

    pub fn cgroup(&self) -> Result<Cgroup> {
        let driver = CgroupDriver::from_systemd(self.inner.systemd());
        Ok(Cgroup::new(&self.id, self.cgroup_path()?, driver))
    }

    fn wait_cgroup_empty(&self, limit: std::time::Duration) {
        let Ok(cgroup) = self.cgroup() else { return };
        if cgroup.wait_empty(limit) {
            return;
        }
        log::warn!(
            "{}: processes left in the cgroup {limit:?} after SIGKILL",
            self.id
        );
    }

    fn cgroup_path(&self) -> Result<PathBuf> {
        let config = self
            .inner
            .spec()
            .map_err(RuntimeError::lc(&self.id, "read config"))?;
        Ok(config.cgroup_path)
    }
}

/// How long Delete waits for killed processes to leave the cgroup (a
/// task in uninterruptible sleep, e.g. on a dead NFS server, may not).
const CGROUP_EMPTY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long Start waits for the init's execve (a slow exec is not an
/// error: the init reports its own failure by exiting).
const EXEC_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits until `pid` no longer runs this process's own binary (it exec'd,
/// or exited), up to `limit`.
fn wait_for_exec(pid: i32, limit: std::time::Duration) {
    let ours = std::fs::read_link("/proc/self/exe").ok();
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        match std::fs::read_link(format!("/proc/{pid}/exe")) {
            Ok(exe) if Some(&exe) == ours.as_ref() => {}
            _ => return,
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    log::warn!("init {pid} had not exec'd {limit:?} after Start");
}
