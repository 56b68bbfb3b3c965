//! The Task service: containerd's task API on top of arch-runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arch_checkpoint::{ArchConfig, ArchIdentity};
use arch_runtime::oci_spec::runtime::{LinuxResources, Process as OciProcess, Spec};
use arch_runtime::{CreateRequest, ExecRequest, Runtime, Stdio};
use containerd_shim::api::{self, Status};
use containerd_shim::monitor::{ExitEvent, Subject, Topic};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::util::convert_to_any;
use containerd_shim::ExitSignal;

use crate::arch::StopGate;
use crate::checkpoint::StopAction;
use crate::error::{io_err, Result, ShimError};
use crate::events::EventSender;
use crate::exits::{ExitIndex, Owner};
use crate::mounts;
use crate::process::{ExitInfo, Process};
use crate::restore::{PreparedRestore, RestoreTarget};
use crate::stats::to_metrics;
use crate::stdio::{self, ConsoleSocket, IoHandles, StdioPaths};

/// How long Create waits for the container's init to hand over its pty.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What Create found out about a new container.
struct Created {
    bundle: PathBuf,
    /// Where the shim mounted the rootfs (None if it did not).
    rootfs: Option<PathBuf>,
    upperdir: Option<PathBuf>,
    arch: Option<ArchIdentity>,
}

pub(crate) struct Container {
    pub(crate) bundle: PathBuf,
    /// Where the shim mounted the rootfs, to unmount at Delete (None when
    /// the engine or the bundle brought it).
    pub(crate) rootfs: Option<PathBuf>,
    pub(crate) init: Arc<Process>,
    pub(crate) execs: HashMap<String, Arc<Process>>,
    /// Set for containers opted in to ARCH.
    pub(crate) arch: Option<ArchIdentity>,
    pub(crate) upperdir: Option<PathBuf>,
    pub(crate) stop_gate: Arc<StopGate>,
    /// A restore staged by Create, carried out by Start.
    pub(crate) restore: Option<PreparedRestore>,
}

pub struct TaskService {
    pub(crate) namespace: String,
    /// The host's ARCH configuration; an error fails ARCH containers only.
    pub(crate) arch_config: std::result::Result<ArchConfig, String>,
    pub(crate) runtime: Runtime,
    pub(crate) events: EventSender,
    exit_signal: Arc<ExitSignal>,
    containers: Mutex<HashMap<String, Container>>,
    exits: Mutex<ExitIndex>,
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

fn exited_at(exit: &Option<ExitInfo>) -> MessageField<Timestamp> {
    exit.as_ref().map(|e| timestamp(e.at)).into()
}

impl TaskService {
    pub fn new(
        namespace: &str,
        runtime: Runtime,
        events: EventSender,
        exit_signal: Arc<ExitSignal>,
    ) -> Arc<Self> {
        let arch_config = ArchConfig::from_process_env().map_err(|e| {
            log::error!("{e}: ARCH containers cannot be created until it is fixed");
            e.to_string()
        });
        // Subscribe before any process exists so no exit is missed.
        let subscription = containerd_shim::monitor::monitor_subscribe(Topic::All)
            .expect("subscribe to process exits");
        let service = Arc::new(Self {
            namespace: namespace.to_string(),
            arch_config,
            runtime,
            events,
            exit_signal,
            containers: Mutex::new(HashMap::new()),
            exits: Mutex::new(ExitIndex::default()),
        });
        let weak = Arc::downgrade(&service);
        std::thread::spawn(move || {
            for ExitEvent { subject, exit_code } in subscription.rx.iter() {
                let Subject::Pid(pid) = subject else { continue };
                let Some(service) = weak.upgrade() else {
                    return;
                };
                let owner = service.exits.lock().unwrap().exited(pid, exit_code);
                if let Some(owner) = owner {
                    // Draining output may take a moment; never hold up the reaper.
                    std::thread::spawn(move || service.process_exited(owner, pid, exit_code));
                }
            }
        });
        service
    }

    fn process_exited(&self, owner: Owner, pid: i32, code: i32) {
        if owner.process.exec_id.is_empty() {
            self.await_stop_checkpoint(&owner.container_id);
        }
        if !owner.process.set_exited(code) {
            return;
        }
        let exit = owner.process.state().exit.clone();
        let id = if owner.process.exec_id.is_empty() {
            owner.container_id.clone()
        } else {
            owner.process.exec_id.clone()
        };
        log::info!(
            "process {id} (pid {pid}) of {} exited with {code}",
            owner.container_id
        );
        self.events.send(
            topics::TASK_EXIT_EVENT_TOPIC,
            TaskExit {
                container_id: owner.container_id,
                id,
                pid: pid as u32,
                exit_status: code as u32,
                exited_at: exited_at(&exit),
                ..Default::default()
            },
        );
    }

    /// A checkpoint-on-stop ends the container when CRIU finishes dumping,
    /// before the image is committed. Holding the exit back until the commit
    /// means that whoever sees the container stop can re-create it and find
    /// the image.
    fn await_stop_checkpoint(&self, id: &str) {
        let Ok(gate) = self.with_container(id, |c| Ok(c.stop_gate.clone())) else {
            return;
        };
        let limit = self
            .arch_config
            .as_ref()
            .map(|c| c.kill_deadline)
            .unwrap_or_default();
        if !gate.wait_idle(limit) {
            log::warn!("{id}: exit reported before its checkpoint committed ({limit:?} passed)");
        }
    }

    pub(crate) fn register(&self, container_id: &str, process: &Arc<Process>, pid: i32) {
        process.set_created(pid);
        let owner = Owner {
            container_id: container_id.to_string(),
            process: process.clone(),
        };
        let early = self.exits.lock().unwrap().register(pid, owner);
        if let Some((owner, code)) = early {
            self.process_exited(owner, pid, code);
        }
    }

    pub(crate) fn with_container<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Container) -> Result<T>,
    ) -> Result<T> {
        let mut containers = self.containers.lock().unwrap();
        let c = containers
            .get_mut(id)
            .ok_or_else(|| ShimError::NotFound(format!("container {id} not found")))?;
        f(c)
    }

    pub(crate) fn process(&self, id: &str, exec_id: &str) -> Result<Arc<Process>> {
        self.with_container(id, |c| {
            if exec_id.is_empty() {
                return Ok(c.init.clone());
            }
            c.execs.get(exec_id).cloned().ok_or_else(|| {
                ShimError::NotFound(format!("exec {exec_id} not found in container {id}"))
            })
        })
    }

    /// Sets up the streams of a process about to be created, and finishes
    /// wiring them once it exists (a pty only exists after creation).
    pub(crate) fn spawn_with_stdio(
        &self,
        paths: &StdioPaths,
        spawn: impl FnOnce(Option<PathBuf>, Stdio) -> Result<i32>,
    ) -> Result<(i32, IoHandles)> {
        if paths.terminal {
            let socket = ConsoleSocket::new().map_err(io_err("creating console socket"))?;
            let path = socket.path.clone();
            let master = socket.receive_master();
            let pid = spawn(Some(path.clone()), Stdio::default()).inspect_err(|_| {
                let _ = std::fs::remove_file(&path);
            })?;
            let master = master
                .recv_timeout(CONSOLE_TIMEOUT)
                .map_err(|_| {
                    ShimError::Internal("timed out waiting for the container's terminal".into())
                })?
                .map_err(io_err("receiving the container's terminal"))?;
            let io = stdio::attach_console(paths, master).map_err(io_err("attaching terminal"))?;
            Ok((pid, io))
        } else {
            let (fds, io) = stdio::setup_pipes(paths).map_err(io_err("setting up stdio pipes"))?;
            Ok((spawn(None, fds)?, io))
        }
    }

    pub fn create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        let id = req.id.clone();
        if self.containers.lock().unwrap().contains_key(&id) {
            return Err(ShimError::AlreadyExists(format!(
                "container {id} already exists"
            )));
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = load_spec(&bundle)?;
        let arch = self.arch_identity(&spec, &id)?;
        self.arm_faults(&id, &spec)?;
        let root = mounts::Rootfs::new(&bundle, &spec, &req.rootfs);
        let rootfs = mounts::mount_rootfs(&bundle, &req.rootfs)?;
        // Only ARCH containers need to know where their changes land.
        let upperdir = arch.as_ref().and_then(|_| root.upperdir(&id));
        let paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let staged = arch.as_ref().and_then(|identity| {
            self.stage_restore(RestoreTarget {
                id: &id,
                identity,
                bundle: &bundle,
                rootfs: &root,
                upperdir: upperdir.as_deref(),
                terminal: req.terminal,
            })
        });
        let created = Created {
            bundle,
            rootfs,
            upperdir,
            arch,
        };
        if let Some((image, claim)) = staged {
            // The processes come back at Start; stdio pipes are ready now
            // (a terminal only exists once CRIU has made it, at Start).
            let pipes = if paths.terminal {
                Ok((Stdio::default(), IoHandles::default()))
            } else {
                stdio::setup_pipes(&paths)
            };
            let (stdio, io) = match pipes {
                Ok(v) => v,
                Err(e) => {
                    self.discard_container(&id, created.rootfs.as_deref());
                    return Err(ShimError::Io {
                        context: "setting up stdio pipes".into(),
                        source: e,
                    });
                }
            };
            let identity = created
                .arch
                .clone()
                .expect("staged only for ARCH containers");
            let prep = PreparedRestore {
                identity,
                image,
                stdio,
                claim,
                rootfs: root,
            };
            return Ok(self.insert_created(&req, created, paths, io, 0, Some(prep)));
        }
        let spawned = self.spawn_with_stdio(&paths, |console_socket, stdio| {
            Ok(self.runtime.create(CreateRequest {
                id: id.clone(),
                bundle: created.bundle.clone(),
                state_root: self.runtime.state_root().to_path_buf(),
                console_socket,
                stdio,
            })?)
        });
        let (pid, io) = match spawned {
            Ok(v) => v,
            Err(e) => {
                self.discard_container(&id, created.rootfs.as_deref());
                return Err(e);
            }
        };
        Ok(self.insert_created(&req, created, paths, io, pid, None))
    }

    /// Records a created container and announces it (pid 0 for a restore,
    /// whose processes only exist after Start).
    fn insert_created(
        &self,
        req: &api::CreateTaskRequest,
        created: Created,
        paths: StdioPaths,
        io: IoHandles,
        pid: i32,
        restore: Option<PreparedRestore>,
    ) -> api::CreateTaskResponse {
        let id = req.id.clone();
        let init = Arc::new(Process::new("", paths.clone()));
        init.set_io(io);
        self.containers.lock().unwrap().insert(
            id.clone(),
            Container {
                bundle: created.bundle,
                rootfs: created.rootfs,
                init: init.clone(),
                execs: HashMap::new(),
                arch: created.arch,
                upperdir: created.upperdir,
                stop_gate: Arc::new(StopGate::default()),
                restore,
            },
        );
        if pid > 0 {
            self.register(&id, &init, pid);
            self.watch_oom(&id);
        }
        self.events.send(
            topics::TASK_CREATE_EVENT_TOPIC,
            TaskCreate {
                container_id: id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: paths.stdin,
                    stdout: paths.stdout,
                    stderr: paths.stderr,
                    terminal: paths.terminal,
                    ..Default::default()
                })
                .into(),
                checkpoint: req.checkpoint.clone(),
                pid: pid as u32,
                ..Default::default()
            },
        );
        api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        }
    }

    /// Removes what a failed Create left behind.
    fn discard_container(&self, id: &str, rootfs: Option<&Path>) {
        arch_faults::disarm(id);
        if let Ok(mut handle) = self.runtime.load(id) {
            let _ = handle.delete();
        }
        if let Some(rootfs) = rootfs {
            mounts::unmount_rootfs(rootfs);
        }
    }

    pub(crate) fn watch_oom(&self, id: &str) {
        let cgroup = match self.runtime.load(id).and_then(|h| h.cgroup()) {
            Ok(c) => c,
            Err(e) => return log::warn!("no OOM events for {id}: {e}"),
        };
        let events = self.events.clone();
        let cid = id.to_string();
        if let Err(e) = cgroup.watch_oom(move || {
            events.send(
                topics::TASK_OOM_EVENT_TOPIC,
                TaskOOM {
                    container_id: cid.clone(),
                    ..Default::default()
                },
            )
        }) {
            log::warn!("no OOM events for {id}: {e}");
        }
    }

    pub fn start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
        let process = self.process(&req.id, &req.exec_id)?;
        if process.state().status != Status::CREATED {
            return Err(ShimError::FailedPrecondition(format!(
                "process {} of {} is not in created state",
                req.exec_id, req.id
            )));
        }
        let staged = if req.exec_id.is_empty() {
            self.with_container(&req.id, |c| {
                Ok(c.restore.take().map(|r| (r, c.bundle.clone())))
            })?
        } else {
            None
        };
        if let Some((prep, bundle)) = staged {
            let pid = self.start_restore(&req.id, &bundle, &process, prep)?;
            return Ok(api::StartResponse {
                pid: pid as u32,
                ..Default::default()
            });
        }
        let pid = if req.exec_id.is_empty() {
            self.runtime.load(&req.id)?.start()?;
            process.set_status(Status::RUNNING);
            let pid = process.pid();
            self.events.send(
                topics::TASK_START_EVENT_TOPIC,
                TaskStart {
                    container_id: req.id.clone(),
                    pid: pid as u32,
                    ..Default::default()
                },
            );
            pid
        } else {
            self.start_exec(&req.id, &process)?
        };
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn start_exec(&self, id: &str, process: &Arc<Process>) -> Result<i32> {
        let spec_path =
            self.with_container(id, |c| Ok(exec_spec_path(&c.bundle, &process.exec_id)))?;
        let spawned = self.spawn_with_stdio(&process.stdio, |console_socket, stdio| {
            Ok(self.runtime.exec(ExecRequest {
                container_id: id.to_string(),
                state_root: self.runtime.state_root().to_path_buf(),
                process_json: spec_path.clone(),
                console_socket,
                stdio,
            })?)
        });
        let (pid, io) = match spawned {
            Ok(v) => v,
            Err(e) => {
                process.set_exited(255);
                return Err(e);
            }
        };
        process.set_io(io);
        process.set_status(Status::RUNNING);
        self.register(id, process, pid);
        self.events.send(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            TaskExecStarted {
                container_id: id.to_string(),
                exec_id: process.exec_id.clone(),
                pid: pid as u32,
                ..Default::default()
            },
        );
        Ok(pid)
    }

    pub fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        let process = self.process(&req.id, &req.exec_id)?;
        let (pid, status, exit) = {
            let st = process.state();
            (st.pid, st.status, st.exit.clone())
        };
        if matches!(status, Status::RUNNING | Status::PAUSED) {
            return Err(ShimError::FailedPrecondition(format!(
                "cannot delete process {} of {}: it is still running",
                if req.exec_id.is_empty() {
                    &req.id
                } else {
                    &req.exec_id
                },
                req.id
            )));
        }
        self.exits.lock().unwrap().forget(pid);
        process.close_io();
        if req.exec_id.is_empty() {
            let container = self.containers.lock().unwrap().remove(&req.id);
            match self.runtime.load(&req.id) {
                Ok(mut handle) => handle.delete()?,
                Err(arch_runtime::RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(rootfs) = container.and_then(|c| c.rootfs) {
                mounts::unmount_rootfs(&rootfs);
            }
            arch_faults::disarm(&req.id);
            self.events.send(
                topics::TASK_DELETE_EVENT_TOPIC,
                TaskDelete {
                    container_id: req.id.clone(),
                    pid: pid as u32,
                    exit_status: exit.as_ref().map_or(0, |e| e.code),
                    exited_at: exited_at(&exit),
                    id: req.id.clone(),
                    ..Default::default()
                },
            );
        } else {
            self.with_container(&req.id, |c| {
                c.execs.remove(&req.exec_id);
                let _ = std::fs::remove_file(exec_spec_path(&c.bundle, &req.exec_id));
                Ok(())
            })?;
        }
        Ok(api::DeleteResponse {
            pid: pid as u32,
            exit_status: exit.as_ref().map_or(0, |e| e.code),
            exited_at: exited_at(&exit),
            ..Default::default()
        })
    }

    pub fn kill(&self, req: api::KillRequest) -> Result<()> {
        let process = self.process(&req.id, &req.exec_id)?;
        let signal = req.signal as i32;
        if req.exec_id.is_empty() && !req.all {
            match self.arch_stop(&req.id, &process, signal)? {
                StopAction::Checkpointing => return Ok(()),
                StopAction::AlreadyExited => return Ok(()),
                StopAction::Deliver => {}
            }
        }
        if req.exec_id.is_empty() && req.all {
            return Ok(self.runtime.load(&req.id)?.kill(signal, true)?);
        }
        let (pid, stopped) = {
            let st = process.state();
            (st.pid, st.status == Status::STOPPED)
        };
        if stopped || pid <= 0 {
            return Err(ShimError::NotFound("process already finished".into()));
        }
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| ShimError::InvalidArgument(format!("invalid signal {signal}")))?;
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => {
                Err(ShimError::NotFound("process already finished".into()))
            }
            Err(e) => Err(ShimError::Internal(format!("kill {pid}: {e}"))),
        }
    }

    pub fn exec(&self, req: api::ExecProcessRequest) -> Result<()> {
        if req.exec_id.is_empty() || req.exec_id.contains('/') || req.exec_id.starts_with('.') {
            return Err(ShimError::InvalidArgument(format!(
                "invalid exec id {:?}",
                req.exec_id
            )));
        }
        let spec: OciProcess = serde_json::from_slice(&req.spec.value).map_err(|e| {
            ShimError::InvalidArgument(format!("exec {}: invalid process spec: {e}", req.exec_id))
        })?;
        self.with_container(&req.id, |c| {
            if c.execs.contains_key(&req.exec_id) {
                return Err(ShimError::AlreadyExists(format!(
                    "exec {} already exists",
                    req.exec_id
                )));
            }
            if c.init.state().status == Status::STOPPED {
                return Err(ShimError::FailedPrecondition(format!(
                    "container {} is stopped",
                    req.id
                )));
            }
            let path = exec_spec_path(&c.bundle, &req.exec_id);
            let json = serde_json::to_vec(&spec).map_err(|e| ShimError::Internal(e.to_string()))?;
            std::fs::write(&path, json).map_err(io_err(format!("writing {}", path.display())))?;
            let stdio = StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            };
            c.execs.insert(
                req.exec_id.clone(),
                Arc::new(Process::new(&req.exec_id, stdio)),
            );
            Ok(())
        })?;
        self.events.send(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id,
                exec_id: req.exec_id,
                ..Default::default()
            },
        );
        Ok(())
    }

    pub fn state(&self, req: api::StateRequest) -> Result<api::StateResponse> {
        let process = self.process(&req.id, &req.exec_id)?;
        let bundle = self.with_container(&req.id, |c| Ok(c.bundle.clone()))?;
        let st = process.state();
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: bundle.display().to_string(),
            pid: st.pid as u32,
            status: st.status.into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: st.exit.as_ref().map_or(0, |e| e.code),
            exited_at: exited_at(&st.exit),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    pub fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse> {
        let exit = self.process(&req.id, &req.exec_id)?.wait();
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    pub fn pids(&self, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let pids = self.runtime.load(&req.id)?.cgroup()?.pids()?;
        let processes = pids
            .into_iter()
            .map(|pid| ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    pub fn pause(&self, req: api::PauseRequest) -> Result<()> {
        let init = self.process(&req.id, "")?;
        self.runtime.load(&req.id)?.pause()?;
        init.set_status(Status::PAUSED);
        self.events.send(
            topics::TASK_PAUSED_EVENT_TOPIC,
            TaskPaused {
                container_id: req.id,
                ..Default::default()
            },
        );
        Ok(())
    }

    pub fn resume(&self, req: api::ResumeRequest) -> Result<()> {
        let init = self.process(&req.id, "")?;
        self.runtime.load(&req.id)?.resume()?;
        init.set_status(Status::RUNNING);
        self.events.send(
            topics::TASK_RESUMED_EVENT_TOPIC,
            TaskResumed {
                container_id: req.id,
                ..Default::default()
            },
        );
        Ok(())
    }

    pub fn resize_pty(&self, req: api::ResizePtyRequest) -> Result<()> {
        let process = self.process(&req.id, &req.exec_id)?;
        process
            .with_io(|io| io.resize(req.width, req.height))
            .unwrap_or_else(|| Err(std::io::Error::other("process has no io")))
            .map_err(|e| ShimError::FailedPrecondition(format!("resize pty: {e}")))
    }

    pub fn close_io(&self, req: api::CloseIORequest) -> Result<()> {
        let process = self.process(&req.id, &req.exec_id)?;
        if req.stdin {
            process.with_io(|io| io.close_stdin());
        }
        Ok(())
    }

    pub fn update(&self, req: api::UpdateTaskRequest) -> Result<()> {
        let resources: LinuxResources = serde_json::from_slice(&req.resources.value)
            .map_err(|e| ShimError::InvalidArgument(format!("invalid resources: {e}")))?;
        self.process(&req.id, "")?;
        Ok(self.runtime.load(&req.id)?.cgroup()?.update(&resources)?)
    }

    pub fn stats(&self, req: api::StatsRequest) -> Result<api::StatsResponse> {
        self.process(&req.id, "")?;
        let stats = self.runtime.load(&req.id)?.cgroup()?.stats()?;
        let any = convert_to_any(Box::new(to_metrics(&stats)))
            .map_err(|e| ShimError::Internal(e.to_string()))?;
        Ok(api::StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    pub fn connect(&self, req: api::ConnectRequest) -> Result<api::ConnectResponse> {
        let task_pid = self.process(&req.id, "").map(|p| p.pid()).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: task_pid as u32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    pub fn shutdown(&self, _req: api::ShutdownRequest) -> Result<()> {
        if self.containers.lock().unwrap().is_empty() {
            self.events.flush(Duration::from_secs(5));
            self.exit_signal.signal();
        }
        Ok(())
    }
}

fn exec_spec_path(bundle: &Path, exec_id: &str) -> PathBuf {
    bundle.join(format!("exec-{exec_id}.json"))
}

/// Reads the bundle's config.json, so a bad spec fails Create with a clear
/// message before anything is mounted or forked.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    if !path.exists() {
        return Err(ShimError::InvalidArgument(format!(
            "bundle {}: config.json not found",
            bundle.display()
        )));
    }
    let bytes = std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
    // serde_json directly: its errors say which field and where.
    let spec: Spec = serde_json::from_slice(&bytes).map_err(|e| {
        ShimError::InvalidArgument(format!(
            "bundle {}: invalid config.json: {e}",
            bundle.display()
        ))
    })?;
    if spec.process().is_none() {
        return Err(ShimError::InvalidArgument(format!(
            "bundle {}: config.json has no process",
            bundle.display()
        )));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_spec_explains_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let msg = |r: Result<Spec>| match r {
            Err(ShimError::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
        };
        assert!(msg(load_spec(dir.path())).contains("config.json not found"));
        std::fs::write(dir.path().join("config.json"), "{").unwrap();
        assert!(msg(load_spec(dir.path())).contains("invalid config.json"));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","process":{"cwd":"/"}}"#,
        )
        .unwrap();
        assert!(
            msg(load_spec(dir.path())).contains("missing field `user`"),
            "names the field"
        );
        std::fs::write(dir.path().join("config.json"), r#"{"ociVersion":"1.0.2"}"#).unwrap();
        assert!(msg(load_spec(dir.path())).contains("no process"));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}}"#,
        )
        .unwrap();
        load_spec(dir.path()).map_err(|e| e.to_string()).unwrap();
    }

    #[test]
    fn exec_spec_lives_in_the_bundle() {
        assert_eq!(
            exec_spec_path(Path::new("/b"), "e1"),
            Path::new("/b/exec-e1.json")
        );
    }

    #[test]
    fn timestamps_keep_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(5, 7);
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (5, 7));
    }
}
