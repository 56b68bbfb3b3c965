//! Create and Start of a container: fresh, or from a restore Create staged.

use std::path::PathBuf;
use std::sync::Arc;

use arch_runtime::Stdio;
use containerd_shim::api::{self, Status};
use containerd_shim::protos::events::task::{TaskCreate, TaskIO, TaskOOM, TaskStart};
use containerd_shim::protos::topics;

use super::runtime_options::cgroup_driver;
use super::{load_spec, TaskService};
use crate::container::{Container, PendingRestore};
use crate::error::{io_err, Result, ShimError};
use crate::lifecycle::{ArchState, RestoreTarget, StagedRestore};
use crate::mounts::Rootfs;
use crate::process::Process;
use crate::spawning::{create_container, spawn_with_stdio};
use crate::stdio::{self, IoHandles, StdioPaths};

impl TaskService {
    pub fn create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        let id = req.id.clone();
        if self.containers.lock().unwrap().contains_key(&id) {
            return Err(ShimError::AlreadyExists(format!(
                "container {id} already exists"
            )));
        }
        // Refused options fail Create before anything is made.
        let options =
            crate::options::parse(req.options.as_ref(), &crate::options::read_config_file)
                .map_err(|e| ShimError::InvalidArgument(e.to_string()))?;
        let bundle = PathBuf::from(&req.bundle);
        let spec = load_spec(&bundle)?;
        let unified =
            arch_host::cgroup_version(std::path::Path::new(arch_host::paths::CGROUP_ROOT))
                == arch_host::CgroupVersion::V2;
        let cgroup_driver = cgroup_driver(options.systemd_cgroup, &spec, unified);
        let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
        self.runtime
            .record_cgroup(&id, &bundle, cgroups_path.as_deref(), cgroup_driver)?;
        self.arch.arm_faults(&id, &spec)?;
        let identity = self.arch.identify(&id, &spec)?;
        let predumps = match &identity {
            Some(_) => self.arch.predumps(&id, &spec)?,
            None => 0,
        };
        let rootfs = Rootfs::new(&bundle, &spec, &req.rootfs);
        if rootfs.shim_mounted() {
            self.mounts
                .mount(&rootfs.target, &rootfs.mounts)
                .map_err(|e| ShimError::Internal(e.to_string()))?;
        }
        // Only ARCH containers need to know where their changes land.
        let interval = match &identity {
            Some(_) => self.arch.interval(&id, &spec)?,
            None => None,
        };
        let arch = match identity {
            Some(identity) => {
                // Without a layer of its own the container's changes cannot
                // be told apart: refuse now rather than checkpoint an empty
                // diff and restore memory onto files it never wrote.
                let upperdir = rootfs.upperdir(&*self.mounts).map_err(|why| {
                    self.discard(&id, &rootfs);
                    ShimError::FailedPrecondition(format!(
                        "container {id} asks for ARCH, but its rootfs {} has no overlay upperdir to checkpoint: {why}; use an overlay snapshotter (overlayfs)",
                        rootfs.path.display()
                    ))
                })?;
                let profile =
                    crate::lifecycle::security_profile(&id, &spec, rootfs.image_identity())
                        .inspect_err(|_| self.discard(&id, &rootfs))?;
                let mut state = ArchState::new(identity, Some(upperdir), profile, interval);
                state.predumps = predumps;
                Some(state)
            }
            None => None,
        };
        let paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            io_owner: options.io_owner,
        };
        let init = Arc::new(Process::new("", paths.clone()));
        let created = (|| -> Result<(i32, Option<PendingRestore>)> {
            if !req.checkpoint.is_empty() {
                let (pending, io) = self.prepare_checkpoint_restore(&req, &bundle, &paths)?;
                if let Some(io) = io {
                    init.set_io(io);
                }
                return Ok((0, Some(PendingRestore::Checkpoint(pending))));
            }
            if let Some(state) = &arch {
                if let Some((staged, io)) =
                    self.stage_restore(&id, state, &bundle, &rootfs, &paths)?
                {
                    if let Some(io) = io {
                        init.set_io(io);
                    }
                    // The processes come back at Start.
                    return Ok((0, Some(PendingRestore::Arch(Box::new(staged)))));
                }
            }
            let (pid, io) = spawn_with_stdio(&paths, |console, stdio| {
                create_container(&*self.runtime, &id, &bundle, cgroup_driver, console, stdio)
            })?;
            init.set_io(io);
            Ok((pid, None))
        })();
        let (pid, staged) = match created {
            Ok(v) => v,
            Err(e) => {
                self.discard(&id, &rootfs);
                return Err(e);
            }
        };
        let container = Arc::new(
            Container::new(&id, &bundle, rootfs, init.clone(), arch, staged)
                .with_cgroup_driver(cgroup_driver),
        );
        self.containers
            .lock()
            .unwrap()
            .insert(id.clone(), container);
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
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// A restore staged for Start, with the stdio pipes it will inherit
    /// (a terminal only exists once CRIU has made it, at Start).
    fn stage_restore(
        &self,
        id: &str,
        state: &ArchState,
        bundle: &std::path::Path,
        rootfs: &Rootfs,
        paths: &StdioPaths,
    ) -> Result<Option<(StagedRestore, Option<IoHandles>)>> {
        let target = RestoreTarget {
            id,
            state,
            bundle,
            rootfs,
            terminal: paths.terminal,
        };
        let Some((copied, taken)) = self.arch.stage_restore(&target) else {
            return Ok(None);
        };
        let (stdio, io) = if paths.terminal {
            (Stdio::default(), None)
        } else {
            let (stdio, io) =
                stdio::setup_pipes(paths).map_err(io_err("setting up stdio pipes"))?;
            (stdio, Some(io))
        };
        Ok(Some((
            StagedRestore {
                copied,
                taken,
                stdio,
            },
            io,
        )))
    }

    /// Removes what a failed Create left behind.
    fn discard(&self, id: &str, rootfs: &Rootfs) {
        arch_faults::disarm(id);
        let _ = self.runtime.delete(id);
        if rootfs.shim_mounted() {
            self.mounts.unmount(&rootfs.target);
        }
    }

    pub(super) fn watch_oom(&self, id: &str) {
        let events = self.events.clone();
        let cid = id.to_string();
        let on_oom = Box::new(move || {
            events.send(
                topics::TASK_OOM_EVENT_TOPIC,
                TaskOOM {
                    container_id: cid.clone(),
                    ..Default::default()
                },
            )
        });
        if let Err(e) = self.runtime.watch_oom(id, on_oom) {
            log::warn!("no OOM events for {id}: {e}");
        }
    }

    pub fn start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
        let c = self.container(&req.id)?;
        let process = c.process(&req.exec_id)?;
        // A process that exits at once is reported after its start event.
        self.exit_hold.hold(&process);
        let started = if req.exec_id.is_empty() {
            self.start_init(&c, &process)
        } else {
            self.start_exec(&c, &req.exec_id)
        };
        if let Some((owner, pid, code)) = self.exit_hold.release(&process) {
            self.process_exited(owner, pid, code);
        }
        let pid = started?;
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// Starts (or restores) the init and announces it.
    fn start_init(&self, c: &Arc<Container>, init: &Arc<Process>) -> Result<i32> {
        let id = c.id();
        let pid = match c.take_pending() {
            Some(PendingRestore::Arch(staged)) => {
                let pid = self
                    .arch
                    .start_restore(c, *staged, |pid| self.register(id, init, pid))?;
                self.watch_oom(id);
                pid
            }
            Some(PendingRestore::Checkpoint(pending)) => {
                let pid = self.start_checkpoint_restore(c, pending)?;
                self.register(id, init, pid);
                self.watch_oom(id);
                pid
            }
            None => {
                self.runtime.start(id)?;
                init.pid()
            }
        };
        init.set_status(Status::RUNNING);
        self.arch.start_periodic(c);
        self.events.send(
            topics::TASK_START_EVENT_TOPIC,
            TaskStart {
                container_id: id.to_string(),
                pid: pid as u32,
                ..Default::default()
            },
        );
        Ok(pid)
    }
}
