//! Transparent restore: at Create, an ARCH container whose key has a
//! committed image gets that image validated and its filesystem changes
//! applied; at Start, CRIU restores the processes. Any failure falls back to
//! a fresh start from a pristine rootfs, with the image kept aside.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arch_checkpoint::{apply_rootfs, check_compatible, ArchIdentity, HostFacts, Mode};
use arch_image::{Claim, Image, ImageStore};
use arch_runtime::{CreateRequest, RestoreRequest, Restored, Stdio};
use containerd_shim::api::Status;
use containerd_shim::protos::events::task::TaskStart;
use containerd_shim::protos::topics;

use arch_records::{Operation, Outcome, Record};

use crate::arch::record;
use crate::error::{Result, ShimError};
use crate::mounts;
use crate::process::Process;
use crate::service::TaskService;
use crate::stdio;
use arch_faults::points;
use arch_host::hostname;

/// A restore staged by Create and carried out by Start.
pub struct PreparedRestore {
    pub identity: ArchIdentity,
    pub image: Image,
    /// The container-side ends of the new stdio pipes (none for a
    /// terminal: CRIU makes a new one at Start).
    pub stdio: Stdio,
    pub claim: Option<Claim>,
    pub rootfs: mounts::Rootfs,
}

/// What Create knows about a container it may restore.
pub struct RestoreTarget<'a> {
    pub id: &'a str,
    pub identity: &'a ArchIdentity,
    pub bundle: &'a Path,
    pub rootfs: &'a mounts::Rootfs,
    pub upperdir: Option<&'a Path>,
    pub terminal: bool,
}

/// The last lines of a CRIU log that say what went wrong.
pub fn log_tail(path: &Path) -> String {
    let errors = arch_checkpoint::criu_log_errors(path);
    if errors.is_empty() {
        String::new()
    } else {
        format!(" (restore.log: {})", errors.join(" | "))
    }
}

impl TaskService {
    /// Finds, claims, validates and stages the image for `identity`. None
    /// means a fresh start (no image, or one that cannot be used: that one
    /// is moved aside and the reason logged).
    pub(crate) fn stage_restore(&self, target: RestoreTarget) -> Option<(Image, Option<Claim>)> {
        let RestoreTarget {
            id,
            identity,
            bundle,
            rootfs,
            upperdir,
            terminal,
        } = target;
        let (store, cfg) = self.store().ok()?;
        let (ns, key) = (&identity.namespace, &identity.key);
        if !store
            .image_dir(ns, key)
            .map(|d| d.join("manifest.json").exists())
            .unwrap_or(false)
        {
            return None;
        }
        let claim = if cfg.mode == Mode::NetworkFs {
            let owner = format!("{}:{}:{id}", hostname(), std::process::id());
            match store.claim(ns, key, &owner) {
                Ok(c) => Some(c),
                Err(e) => {
                    log::warn!(
                        "{id}: image {ns}/{key} is being restored elsewhere ({e}); starting fresh"
                    );
                    return None;
                }
            }
        } else {
            None
        };
        let staged = (|| -> std::result::Result<Image, String> {
            let fault = |point: &str| arch_faults::hit(id, point).map_err(|e| e.to_string());
            fault(points::RESTORE_STAGING)?;
            // Changes must land in the container's own layer: a snapshot the
            // shim mounted, or an overlay the engine mounted (Docker's
            // overlay2), never a plain directory the bundle brought.
            if !rootfs.shim_mounted() && upperdir.is_none() {
                return Err(format!(
                    "the rootfs {} is neither mounted from the Create request nor an overlay: \
                     the filesystem changes have nowhere to go",
                    rootfs.path.display()
                ));
            }
            let image = store
                .open(ns, key)
                .map_err(|e| format!("invalid image: {e}"))?;
            // A terminal cannot become pipes or the reverse: refuse before
            // the rootfs is touched.
            arch_runtime::check_image_stdio(id, &image.criu_dir(), terminal)
                .map_err(|e| e.to_string())?;
            let criu = arch_runtime::criu_version().map_err(|e| e.to_string())?;
            check_compatible(image.manifest(), &HostFacts::detect(criu))
                .map_err(|e| e.to_string())?;
            fault(points::RESTORE_VALIDATED)?;
            let stats =
                apply_rootfs(&image, &rootfs.path).map_err(|e| format!("rootfs diff: {e}"))?;
            fault(points::RESTORE_ROOTFS_APPLIED)?;
            log::info!("{id}: applied rootfs diff of {ns}/{key}: {stats:?}");
            Ok(image)
        })();
        match staged {
            Ok(image) => Some((image, claim)),
            Err(reason) => {
                self.fall_back_image(&store, id, identity, bundle, rootfs, &reason);
                None
            }
        }
    }

    /// Keeps a failed image aside for inspection and resets the rootfs.
    fn fall_back_image(
        &self,
        store: &ImageStore,
        id: &str,
        identity: &ArchIdentity,
        bundle: &Path,
        rootfs: &mounts::Rootfs,
        reason: &str,
    ) {
        log::error!(
            "{id}: cannot restore {}/{}: {reason}; starting fresh",
            identity.namespace,
            identity.key
        );
        let rec = restore_record(
            identity,
            id,
            Outcome::Fallback,
            0,
            0,
            Some(reason.to_string()),
        );
        record(store.root(), rec);
        match store.mark_failed(&identity.namespace, &identity.key, reason) {
            Ok(aside) => {
                // The bundle goes away with the task: keep CRIU's story with the image.
                let log = bundle.join("restore-work/restore.log");
                if log.exists() {
                    let _ = std::fs::copy(&log, aside.join("restore.log"));
                }
                log::warn!("{id}: image kept for inspection at {}", aside.display())
            }
            Err(e) => log::error!("{id}: could not move the failed image aside: {e}"),
        }
        if rootfs.shim_mounted() {
            if let Err(e) = mounts::reset_rootfs(bundle, &rootfs.mounts) {
                log::error!("{id}: rolling back the rootfs failed: {e}");
            }
        } else {
            // The engine's mount is not ours to take down, and its layer is
            // the container's own: Docker keeps it across stop and start, so
            // emptying it would lose the container's files. It keeps what
            // the image's changes wrote, as it would after a plain restart.
            log::warn!(
                "{id}: rootfs {} is mounted by the engine: left as it is, with any changes from the image",
                rootfs.path.display()
            );
        }
    }

    /// Start of a container with a staged restore: CRIU restore, or a fresh
    /// start if it fails. Returns the init's pid.
    pub(crate) fn start_restore(
        &self,
        id: &str,
        bundle: &Path,
        init: &Arc<Process>,
        prep: PreparedRestore,
    ) -> Result<i32> {
        let started = Instant::now();
        let work_dir = bundle.join("restore-work");
        let PreparedRestore {
            identity,
            image,
            stdio,
            claim,
            rootfs,
        } = prep;
        let fds = [
            stdio.stdin.as_deref(),
            stdio.stdout.as_deref(),
            stdio.stderr.as_deref(),
        ];
        let terminal = init.stdio.terminal;
        let restored = self.runtime.restore(RestoreRequest {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            rootfs: rootfs.path.clone(),
            images_dir: image.criu_dir(),
            work_dir: work_dir.clone(),
            stdio: fds,
            terminal,
        });
        let (store, _) = self.store()?;
        let pid = match restored {
            Ok(Restored { pid, pty_master }) => {
                if let Some(master) = pty_master {
                    self.attach_restored_console(id, init, master);
                }
                log::info!(
                    "{id}: restored {}/{} (checkpointed from {}) in {} ms, pid {pid}{}",
                    identity.namespace,
                    identity.key,
                    image.manifest().container_id,
                    started.elapsed().as_millis(),
                    if terminal {
                        ", with a new terminal"
                    } else {
                        ""
                    }
                );
                let ms = started.elapsed().as_millis() as u64;
                let bytes = image.manifest().total_size;
                record(
                    store.root(),
                    restore_record(&identity, id, Outcome::Ok, ms, bytes, None),
                );
                if let Err(e) = store.retire(&identity.namespace, &identity.key) {
                    log::error!("{id}: could not retire the restored image: {e}");
                }
                pid
            }
            Err(e) => {
                let reason = format!("{e}{}", log_tail(&work_dir.join("restore.log")));
                self.fall_back_image(&store, id, &identity, bundle, &rootfs, &reason);
                self.fresh_start(id, bundle, init, stdio)?
            }
        };
        if let Some(claim) = claim {
            let _ = claim.release();
        }
        self.register(id, init, pid);
        init.set_status(Status::RUNNING);
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

    /// Serves the restored process's new terminal like a fresh container's
    /// console. The process runs already: if its terminal cannot be served
    /// (no descriptor left to copy it), it is ended rather than left
    /// running deaf and mute.
    fn attach_restored_console(&self, id: &str, init: &Process, master: OwnedFd) {
        match stdio::attach_console(&init.stdio, File::from(master)) {
            Ok(io) => init.set_io(io),
            Err(e) => {
                log::error!("{id}: cannot serve the restored terminal: {e}; killing the container");
                if let Err(e) = self
                    .runtime
                    .load(id)
                    .and_then(|mut h| h.kill(libc::SIGKILL, true))
                {
                    log::error!("{id}: killing the restored container: {e}");
                }
            }
        }
    }

    /// Starts the container from its image after a failed restore, with a
    /// console like any new container when it asked for a terminal (its
    /// pipes, for the others, were made at Create).
    fn fresh_start(&self, id: &str, bundle: &Path, init: &Process, stdio: Stdio) -> Result<i32> {
        let create = |console_socket: Option<std::path::PathBuf>, stdio: Stdio| -> Result<i32> {
            Ok(self.runtime.create(CreateRequest {
                id: id.to_string(),
                bundle: bundle.to_path_buf(),
                state_root: self.runtime.state_root().to_path_buf(),
                console_socket,
                stdio,
            })?)
        };
        let pid = if init.stdio.terminal {
            let (pid, io) = self.spawn_with_stdio(&init.stdio, create)?;
            init.set_io(io);
            pid
        } else {
            create(None, stdio)?
        };
        self.runtime.load(id)?.start()?;
        self.watch_oom(id);
        Ok(pid)
    }
}

fn restore_record(
    identity: &ArchIdentity,
    id: &str,
    outcome: Outcome,
    total_ms: u64,
    bytes: u64,
    error: Option<String>,
) -> Record {
    Record {
        time: arch_records::now_secs(),
        op: Operation::Restore,
        outcome,
        trigger: "create".into(),
        namespace: identity.namespace.clone(),
        key: identity.key.clone(),
        container_id: id.to_string(),
        total_ms,
        durations_ms: [("restore".to_string(), total_ms)].into(),
        bytes,
        error,
    }
}

impl From<arch_image::Error> for ShimError {
    fn from(e: arch_image::Error) -> Self {
        ShimError::Internal(e.to_string())
    }
}
