//! Start of a container whose restore Create staged: CRIU restores the
//! processes, or, if that fails, the image is moved aside, the rootfs put
//! back, and the container starts fresh from its image.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Instant;

use arch_image::{Image, Taken, VerifyBehind};
use arch_records::Outcome;
use arch_runtime::{RestoreRequest, Restored, Stdio};

use super::records::{record, restore_record};
use super::staging::{Copied, RestoreTarget, StagedRestore};
use super::Arch;
use crate::container::Container;
use crate::error::{Result, ShimError};
use crate::process::Process;
use crate::spawning::{create_container, spawn_with_stdio};
use crate::stdio;

/// The last lines of a CRIU log that say what went wrong.
fn log_tail(path: &Path) -> String {
    let errors = arch_checkpoint::criu_log_errors(path);
    if errors.is_empty() {
        String::new()
    } else {
        format!(" (restore.log: {})", errors.join(" | "))
    }
}

impl Arch {
    /// Restores `c`'s processes from its staged image, or starts it fresh.
    /// `register` learns the init's pid as soon as it exists, before the
    /// bookkeeping (records, retiring the image) that may be slow on a
    /// network filesystem. Returns the init's pid.
    pub fn start_restore(
        &self,
        c: &Container,
        staged: StagedRestore,
        register: impl FnOnce(i32),
    ) -> Result<i32> {
        let state = c.arch().ok_or_else(|| {
            ShimError::Internal(format!("{}: restore staged without ARCH", c.id()))
        })?;
        let (id, init) = (c.id(), c.init());
        let started = Instant::now();
        let work_dir = c.bundle().join("restore-work");
        let StagedRestore {
            mut copied,
            mut taken,
            stdio,
        } = staged;
        let terminal = init.stdio.terminal;
        let target = RestoreTarget {
            id,
            state,
            bundle: c.bundle(),
            rootfs: c.rootfs(),
            terminal,
        };
        let store = self.store()?;
        let identity = &state.identity;
        // Each failed CRIU restore falls back to the key's next older
        // generation (staged here as Create stages the newest), and past
        // the oldest to a fresh start.
        let (Restored { pid, pty_master }, image, local, taken) = loop {
            let Copied {
                image,
                local,
                verified,
            } = copied;
            let restored = self.criu_restore(c, &mut taken, &image, verified, &stdio, &work_dir);
            match restored {
                Ok(r) => break (r, image, local, taken),
                Err(e) => {
                    let reason = format!("{e}{}", log_tail(&work_dir.join("restore.log")));
                    let next = self
                        .fall_back(&store, taken, &target, &reason)
                        .and_then(|t| self.stage_from(&store, t, &target));
                    drop(local);
                    match next {
                        Some(staged) => (copied, taken) = staged,
                        None => return self.fresh_start(c, stdio, register),
                    }
                }
            }
        };
        if let Some(master) = pty_master {
            self.attach_restored_console(id, init, master);
        }
        register(pid);
        let ms = started.elapsed().as_millis() as u64;
        log::info!(
            "{id}: restored {}/{} from {} (checkpointed from {}) in {ms} ms, pid {pid}{}",
            identity.namespace,
            identity.key,
            taken.origin(),
            image.manifest().container_id,
            if terminal {
                ", with a new terminal"
            } else {
                ""
            }
        );
        let bytes = image.manifest().total_size;
        // A restore from an older generation says which one.
        let from = (taken.origin() != identity.key)
            .then(|| format!("restored from older generation {}", taken.origin()));
        record(
            store.root(),
            restore_record(identity, id, Outcome::Ok, ms, bytes, from),
        );
        if let Err(e) = taken.retire() {
            log::error!("{id}: could not retire the restored image: {e}");
        }
        drop(local);
        Ok(pid)
    }

    /// CRIU restores `c` from `image`, the copy of `taken`; the tree runs
    /// only once `verified` says the copy's memory images check out.
    fn criu_restore(
        &self,
        c: &Container,
        taken: &mut Taken,
        image: &Image,
        verified: VerifyBehind,
        stdio: &Stdio,
        work_dir: &Path,
    ) -> std::result::Result<Restored, String> {
        // On a shared root another host gives the image back once our
        // lease expired (a stall longer than the lease): then it may be
        // restored there, and must not be here too. The fence's rename
        // decides which of the two happened.
        taken.fence().map_err(|e| e.to_string())?;
        // An image with pre-dumps: CRIU follows `parent` links from the
        // final dump to them; the image holds none, its copy gets them.
        arch_image::link_parents(image.dir())
            .map_err(|e| format!("linking the pre-dump images: {e}"))?;
        self.runtime
            .restore(RestoreRequest {
                id: c.id().to_string(),
                bundle: c.bundle().to_path_buf(),
                rootfs: c.rootfs().path.clone(),
                images_dir: image.criu_dir(),
                work_dir: work_dir.to_path_buf(),
                stdio: stdio.fds(),
                terminal: c.init().stdio.terminal,
                cgroup_driver: c.cgroup_driver(),
                resume_check: Some(Box::new(move || {
                    verified
                        .wait()
                        .map_err(|e| Box::new(e) as arch_runtime::NotifyError)
                })),
            })
            .map_err(|e| e.to_string())
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
                if let Err(e) = self.runtime.kill(id, libc::SIGKILL, true) {
                    log::error!("{id}: killing the restored container: {e}");
                }
            }
        }
    }

    /// Starts the container from its image after a failed restore, with a
    /// console like any new container when it asked for a terminal (its
    /// pipes, for the others, were made at Create).
    fn fresh_start(&self, c: &Container, stdio: Stdio, register: impl FnOnce(i32)) -> Result<i32> {
        let (id, init) = (c.id(), c.init());
        let create = |console, stdio| {
            create_container(
                &*self.runtime,
                id,
                c.bundle(),
                c.cgroup_driver(),
                console,
                stdio,
            )
        };
        let pid = if init.stdio.terminal {
            let (pid, io) = spawn_with_stdio(&init.stdio, create)?;
            init.set_io(io);
            pid
        } else {
            create(None, stdio)?
        };
        register(pid);
        self.runtime.start(id)?;
        Ok(pid)
    }
}
