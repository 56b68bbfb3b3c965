//! ARCH's checkpoint paths in the task service: opt-in at Create, the
//! stop signal (checkpoint, then stop), and the Checkpoint RPC.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arch_checkpoint::{arch_identity, ArchConfig, ArchIdentity, DumpRequest};
use arch_image::ImageStore;
use arch_runtime::oci_spec::runtime::Spec;
use arch_runtime::DumpOptions;
use containerd_shim::api::{self, Status};
use containerd_shim::protos::events::task::TaskCheckpointed;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::CheckpointOptions;
use containerd_shim::protos::topics;

use crate::arch::{checkpoint_into_store, checkpoint_record, record};
use crate::error::{io_err, Result, ShimError};
use crate::process::Process;
use crate::service::TaskService;

impl TaskService {
    pub(crate) fn arch_identity(&self, spec: &Spec, id: &str) -> Result<Option<ArchIdentity>> {
        let env = spec
            .process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default();
        let annotations = spec.annotations().clone().unwrap_or_default();
        let identity = arch_identity(&env, &annotations, &self.namespace, id)
            .map_err(|e| ShimError::InvalidArgument(format!("container {id}: {e}")))?;
        if identity.is_some() {
            if let Err(e) = &self.arch_config {
                return Err(ShimError::FailedPrecondition(format!(
                    "container {id} asks for ARCH, but {e}"
                )));
            }
        }
        Ok(identity)
    }

    /// Arms the fault a test container asks for with its annotation (test
    /// builds only; see arch-faults).
    pub(crate) fn arm_faults(&self, id: &str, spec: &Spec) -> Result<()> {
        let annotations = spec.annotations().clone().unwrap_or_default();
        let root = match &self.arch_config {
            Ok(cfg) => cfg.checkpoint_root.clone(),
            Err(_) => PathBuf::new(),
        };
        arch_faults::arm(
            id,
            annotations.get(arch_faults::ANNOTATION).map(String::as_str),
            &root,
        )
        .map_err(|e| ShimError::InvalidArgument(e.to_string()))
    }

    /// The image store, for ARCH containers (whose Create checked the config).
    pub(crate) fn store(&self) -> Result<(ImageStore, ArchConfig)> {
        let cfg = self
            .arch_config
            .clone()
            .map_err(ShimError::FailedPrecondition)?;
        Ok((ImageStore::new(&cfg.checkpoint_root), cfg))
    }

    /// Decides what a signal to an init does: the stop signal to an ARCH
    /// container starts a checkpoint that ends the container; a SIGKILL waits
    /// (bounded) for a checkpoint in progress to commit.
    pub(crate) fn arch_stop(
        &self,
        id: &str,
        init: &Arc<Process>,
        signal: i32,
    ) -> Result<StopAction> {
        let (arch, bundle, upperdir, gate) = self.with_container(id, |c| {
            Ok((
                c.arch.clone(),
                c.bundle.clone(),
                c.upperdir.clone(),
                c.stop_gate.clone(),
            ))
        })?;
        let Some(identity) = arch else {
            return Ok(StopAction::Deliver);
        };
        let (store, cfg) = self.store()?;
        if signal == libc::SIGKILL {
            if !gate.wait_idle(cfg.kill_deadline) {
                log::warn!(
                    "{id}: checkpoint still running after {:?}; killing",
                    cfg.kill_deadline
                );
            }
            // After a committed stop-checkpoint the container is gone or
            // going: the SIGKILL that usually follows a stop has nothing to do.
            let ended = gate.committed() || init.state().status == Status::STOPPED;
            return Ok(if ended {
                StopAction::AlreadyExited
            } else {
                StopAction::Deliver
            });
        }
        if signal != cfg.stop_signal || init.state().status != Status::RUNNING {
            return Ok(StopAction::Deliver);
        }
        if !gate.try_begin() {
            return Ok(StopAction::Checkpointing);
        }
        let runtime = self.runtime.clone();
        let (id, init) = (id.to_string(), init.clone());
        std::thread::spawn(move || {
            log::info!(
                "{id}: stop signal {signal}: checkpointing as {}/{}",
                identity.namespace,
                identity.key
            );
            let started = std::time::Instant::now();
            let req = DumpRequest {
                identity: identity.clone(),
                container_id: id.clone(),
                bundle,
                upperdir,
                leave_running: false,
            };
            let outcome =
                checkpoint_into_store(&store, &cfg, &runtime, req, DumpOptions::default());
            record(
                store.root(),
                checkpoint_record("stop", &identity, &id, started, &outcome),
            );
            let committed = outcome.is_ok();
            match outcome {
                Ok(o) => log::info!(
                    "{id}: checkpoint committed at {} ({:?} ms)",
                    o.image.dir().display(),
                    o.durations_ms
                ),
                Err(e) => {
                    // Nothing was committed; stop the container as asked.
                    log::error!("{id}: checkpoint on stop failed, delivering signal {signal}: {e}");
                    let pid = init.pid();
                    if pid > 0 && init.state().status != Status::STOPPED {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::try_from(signal).ok(),
                        );
                    }
                }
            }
            gate.end(committed);
        });
        Ok(StopAction::Checkpointing)
    }

    /// containerd's Checkpoint RPC (`ctr task checkpoint`): a CRIU dump into
    /// the image path containerd asked for.
    pub fn checkpoint(&self, req: api::CheckpointTaskRequest) -> Result<()> {
        let init = self.process(&req.id, "")?;
        let status = init.state().status;
        if !matches!(status, Status::RUNNING | Status::PAUSED) {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is not running",
                req.id
            )));
        }
        let opts = checkpoint_options(&req)?;
        let image_dir = if opts.image_path.is_empty() {
            PathBuf::from(&req.path)
        } else {
            PathBuf::from(&opts.image_path)
        };
        let dump = DumpOptions {
            image_dir: image_dir.clone(),
            work_dir: (!opts.work_path.is_empty()).then(|| PathBuf::from(&opts.work_path)),
            leave_running: !opts.exit,
            tcp_established: opts.open_tcp,
            ext_unix_sk: opts.external_unix_sockets,
            file_locks: opts.file_locks,
            cgroups_mode: opts.cgroups_mode.clone(),
        };
        let (arch, bundle, upperdir) = self.with_container(&req.id, |c| {
            Ok((c.arch.clone(), c.bundle.clone(), c.upperdir.clone()))
        })?;
        let mut handle = self.runtime.load(&req.id)?;
        // containerd pauses the task around a checkpoint; libcontainer only
        // dumps a running container, so thaw it for the dump and freeze it
        // again if it stays.
        if status == Status::PAUSED {
            handle.resume()?;
        }
        let dumped = match &arch {
            None if dump.image_dir.as_os_str().is_empty() => Err(ShimError::InvalidArgument(
                "checkpoint: no image path given".into(),
            )),
            None => handle.checkpoint(&dump).map_err(|e| criu_failure(e, &dump)),
            Some(identity) => {
                self.checkpoint_arch(&req.id, identity, &bundle, upperdir.as_deref(), &dump)
            }
        };
        if status == Status::PAUSED && (dumped.is_err() || dump.leave_running) {
            self.runtime.load(&req.id)?.pause()?;
        }
        dumped?;
        self.events.send(
            topics::TASK_CHECKPOINTED_EVENT_TOPIC,
            TaskCheckpointed {
                container_id: req.id,
                checkpoint: image_dir.display().to_string(),
                ..Default::default()
            },
        );
        Ok(())
    }

    /// An ARCH container's Checkpoint RPC commits an image to the store and,
    /// where containerd asked for one, copies the CRIU images there too.
    fn checkpoint_arch(
        &self,
        id: &str,
        identity: &ArchIdentity,
        bundle: &Path,
        upperdir: Option<&Path>,
        dump: &DumpOptions,
    ) -> Result<()> {
        let (store, cfg) = self.store()?;
        let req = DumpRequest {
            identity: identity.clone(),
            container_id: id.to_string(),
            bundle: bundle.to_path_buf(),
            upperdir: upperdir.map(Path::to_path_buf),
            leave_running: dump.leave_running,
        };
        let started = std::time::Instant::now();
        let outcome = checkpoint_into_store(&store, &cfg, &self.runtime, req, dump.clone());
        record(
            store.root(),
            checkpoint_record("rpc", identity, id, started, &outcome),
        );
        let outcome =
            outcome.map_err(|e| ShimError::Internal(format!("checkpoint of {id} failed: {e}")))?;
        log::info!(
            "{id}: checkpoint committed at {} ({:?} ms)",
            outcome.image.dir().display(),
            outcome.durations_ms
        );
        if dump.image_dir.as_os_str().is_empty() {
            return Ok(());
        }
        copy_dir_files(&outcome.image.criu_dir(), &dump.image_dir).map_err(io_err(format!(
            "copying CRIU images to {}",
            dump.image_dir.display()
        )))
    }
}

pub(crate) enum StopAction {
    /// Send the signal as usual.
    Deliver,
    /// A checkpoint runs and will end the container.
    Checkpointing,
    /// A checkpoint already ended the container.
    AlreadyExited,
}

fn copy_dir_files(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn checkpoint_options(req: &api::CheckpointTaskRequest) -> Result<CheckpointOptions> {
    match req.options.as_ref() {
        Some(any) if !any.value.is_empty() || any.type_url.ends_with("CheckpointOptions") => {
            CheckpointOptions::parse_from_bytes(&any.value).map_err(|e| {
                ShimError::InvalidArgument(format!("checkpoint options ({}): {e}", any.type_url))
            })
        }
        _ => Ok(CheckpointOptions::new()),
    }
}

/// A failed dump, with the dump.log lines that say why.
fn criu_failure(e: arch_runtime::RuntimeError, dump: &DumpOptions) -> ShimError {
    let log_dir = dump.work_dir.as_ref().unwrap_or(&dump.image_dir);
    let reasons = arch_checkpoint::criu_log_errors(&log_dir.join("dump.log"));
    ShimError::Internal(format!(
        "checkpoint failed: {e}{}",
        if reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", reasons.join("; "))
        }
    ))
}
