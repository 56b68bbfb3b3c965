//! Restore from containerd's own checkpoint: `ctr container restore
//! --live`, a client's CreateTaskRequest.checkpoint, Kubernetes' restore.
//! containerd has unpacked the CRIU images into `checkpoint` (and applied
//! the rw layer to the new snapshot); Start restores the processes as runc
//! does. What cannot be honoured fails Create or Start with the reason:
//! nobody asked for a fresh start.

use std::path::{Path, PathBuf};

use arch_runtime::{RestoreRequest, Restored, Stdio};
use containerd_shim::api;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::Options;

use super::TaskService;
use crate::container::Container;
use crate::error::{io_err, Result, ShimError};
use crate::stdio::{self, IoHandles, StdioPaths};

/// A restore from containerd's checkpoint, prepared by Create.
pub struct CheckpointRestore {
    images_dir: PathBuf,
    work_dir: PathBuf,
    /// The container-side ends of the new stdio pipes (none for a terminal).
    stdio: Stdio,
}

/// Where runc's options put CRIU's work files, if they say.
fn criu_work_path(req: &api::CreateTaskRequest) -> Result<Option<PathBuf>> {
    let Some(any) = req.options.as_ref() else {
        return Ok(None);
    };
    if any.value.is_empty() {
        return Ok(None);
    }
    if !any.type_url.ends_with("runc.v1.Options") {
        return Ok(None);
    }
    let opts = Options::parse_from_bytes(&any.value).map_err(|e| {
        ShimError::InvalidArgument(format!("runtime options ({}): {e}", any.type_url))
    })?;
    if !opts.criu_image_path.is_empty()
        && Path::new(&opts.criu_image_path) != Path::new(&req.checkpoint)
    {
        return Err(ShimError::InvalidArgument(format!(
            "CriuImagePath {} differs from the checkpoint {}: restore reads the checkpoint",
            opts.criu_image_path, req.checkpoint
        )));
    }
    Ok((!opts.criu_work_path.is_empty()).then(|| PathBuf::from(opts.criu_work_path)))
}

impl TaskService {
    /// Checks that containerd's checkpoint can be restored into this
    /// container and makes its stdio; the processes come at Start.
    pub(super) fn prepare_checkpoint_restore(
        &self,
        req: &api::CreateTaskRequest,
        bundle: &Path,
        paths: &StdioPaths,
    ) -> Result<(CheckpointRestore, Option<IoHandles>)> {
        let images_dir = PathBuf::from(&req.checkpoint);
        let refuse = |why: String| {
            ShimError::FailedPrecondition(format!(
                "container {}: cannot restore checkpoint {}: {why}",
                req.id, req.checkpoint
            ))
        };
        if !images_dir.join("inventory.img").is_file() {
            return Err(refuse(
                "no CRIU images there (inventory.img is missing)".into(),
            ));
        }
        arch_runtime::check_image_stdio(&req.id, &images_dir, paths.terminal)
            .map_err(|e| refuse(e.to_string()))?;
        self.runtime
            .criu_version()
            .map_err(|e| refuse(e.to_string()))?;
        let work_dir = criu_work_path(req)?.unwrap_or_else(|| bundle.join("restore-work"));
        let (stdio, io) = if paths.terminal {
            (Stdio::default(), None)
        } else {
            let (stdio, io) =
                stdio::setup_pipes(paths).map_err(io_err("setting up stdio pipes"))?;
            (stdio, Some(io))
        };
        Ok((
            CheckpointRestore {
                images_dir,
                work_dir,
                stdio,
            },
            io,
        ))
    }

    /// Restores the processes; returns the init's pid.
    pub(super) fn start_checkpoint_restore(
        &self,
        c: &Container,
        pending: CheckpointRestore,
    ) -> Result<i32> {
        let CheckpointRestore {
            images_dir,
            work_dir,
            stdio,
        } = pending;
        let init = c.init();
        let restored = self
            .runtime
            .restore(RestoreRequest {
                id: c.id().to_string(),
                bundle: c.bundle().to_path_buf(),
                rootfs: c.rootfs().path.clone(),
                images_dir: images_dir.clone(),
                work_dir: work_dir.clone(),
                stdio: stdio.fds(),
                terminal: init.stdio.terminal,
                cgroup_driver: c.cgroup_driver(),
                // containerd's image, read where it put it: nothing left
                // to check.
                resume_check: None,
            })
            .map_err(|e| {
                let why = arch_checkpoint::criu_log_errors(&work_dir.join("restore.log"));
                ShimError::Internal(format!(
                    "container {}: restoring checkpoint {}: {e}{}",
                    c.id(),
                    images_dir.display(),
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" (restore.log: {})", why.join(" | "))
                    }
                ))
            })?;
        let Restored { pid, pty_master } = restored;
        if let Some(master) = pty_master {
            match stdio::attach_console(&init.stdio, std::fs::File::from(master)) {
                Ok(io) => init.set_io(io),
                Err(e) => {
                    // Running deaf and mute is no restore: end it.
                    let _ = self.runtime.kill(c.id(), libc::SIGKILL, true);
                    return Err(io_err("attaching the restored terminal")(e));
                }
            }
        }
        log::info!(
            "{}: restored from containerd's checkpoint {}, pid {pid}",
            c.id(),
            images_dir.display()
        );
        Ok(pid)
    }
}
