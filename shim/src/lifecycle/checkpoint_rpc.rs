//! containerd's Checkpoint RPC (`ctr task checkpoint`, the CRI's checkpoint):
//! a CRIU dump into the path containerd asks for; for an ARCH container,
//! into the image store as well.

use std::path::{Path, PathBuf};
use std::time::Instant;

use arch_checkpoint::DumpRequest;
use arch_runtime::DumpOptions;
use containerd_shim::api::{self, Status};
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::CheckpointOptions;

use super::dump::checkpoint_into_store;
use super::records::{checkpoint_record, record, Trigger};
use super::{Arch, ArchState};
use crate::container::Container;
use crate::error::{io_err, Result, ShimError};

impl Arch {
    /// Checkpoints `c` as `req` asks; returns where the CRIU images went.
    pub fn checkpoint(&self, c: &Container, req: &api::CheckpointTaskRequest) -> Result<PathBuf> {
        let status = c.init().state().status;
        if !matches!(status, Status::RUNNING | Status::PAUSED) {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is not running",
                c.id()
            )));
        }
        let opts = checkpoint_options(req)?;
        let image_dir = if opts.image_path.is_empty() {
            PathBuf::from(&req.path)
        } else {
            PathBuf::from(&opts.image_path)
        };
        let paused = status == Status::PAUSED;
        let dump = DumpOptions {
            image_dir: image_dir.clone(),
            work_dir: (!opts.work_path.is_empty()).then(|| PathBuf::from(&opts.work_path)),
            leave_running: !opts.exit,
            tcp_established: opts.open_tcp,
            ext_unix_sk: opts.external_unix_sockets,
            file_locks: opts.file_locks,
            cgroups_mode: opts.cgroups_mode.clone(),
            // containerd reads CRIU's files from its path as CRIU wrote them.
            stream: None,
            // containerd pauses the task around a checkpoint: CRIU dumps
            // the frozen tree and leaves it frozen, so nothing runs between
            // the dump and the rootfs containerd takes next (runc's
            // FreezeCgroup). Thawing for the dump let a process change a
            // file CRIU had just recorded ("bad size" at restore).
            frozen: paused,
            // An ARCH container's ARCH_PREDUMP applies in its dump chain;
            // CheckpointOptions has no field for a count (see
            // docs/configuration.md).
            pre_dump: false,
            parent_img: None,
            // The host's encryption applies to images in its store
            // (checkpoint_into_store); containerd's copy would be clear
            // bytes, so an ARCH container's is refused there.
            crypt: None,
            seal_dir: None,
            // containerd's copy may be restored by another runtime; an
            // ARCH container's image in its store is ARCH's own
            // (checkpoint_into_store decides).
            own_image: false,
        };
        let dumped = match c.arch() {
            None if dump.image_dir.as_os_str().is_empty() => Err(ShimError::InvalidArgument(
                "checkpoint: no image path given".into(),
            )),
            None => self.checkpoint_plain(c, paused, &dump),
            Some(state) => self.checkpoint_arch(c, state, paused, &dump),
        };
        dumped.map(|_| image_dir)
    }

    /// A container without ARCH: a CRIU dump into containerd's path only.
    fn checkpoint_plain(&self, c: &Container, paused: bool, dump: &DumpOptions) -> Result<()> {
        if !paused || dump.leave_running {
            return self
                .runtime
                .checkpoint(c.id(), dump)
                .map(|_| ())
                .map_err(|e| criu_failure(e, dump));
        }
        // Paused, and the checkpoint ends it: CRIU kills the tree it dumped,
        // which it can only do to running tasks.
        self.runtime.resume(c.id())?;
        let unfrozen = DumpOptions {
            frozen: false,
            ..dump.clone()
        };
        let dumped = self
            .runtime
            .checkpoint(c.id(), &unfrozen)
            .map(|_| ())
            .map_err(|e| criu_failure(e, &unfrozen));
        if dumped.is_err() {
            self.runtime.pause(c.id())?;
        }
        dumped
    }

    /// An ARCH container's Checkpoint RPC commits an image to the store and,
    /// where containerd asked for one, copies the CRIU images there too.
    fn checkpoint_arch(
        &self,
        c: &Container,
        state: &ArchState,
        paused: bool,
        dump: &DumpOptions,
    ) -> Result<()> {
        let (store, cfg) = (self.store()?, self.config()?);
        let id = c.id();
        // Never beside a periodic checkpoint of the same container.
        let _periodic = state.periodic.exclusive();
        let _commit = self.in_flight.begin(id);
        let req = DumpRequest {
            identity: state.identity.clone(),
            container_id: id.to_string(),
            bundle: c.bundle().to_path_buf(),
            upperdir: state.upperdir.clone(),
            leave_running: dump.leave_running,
            paused,
            profile: state.profile.clone(),
            predumps: state.predumps,
        };
        let started = Instant::now();
        let outcome = checkpoint_into_store(&store, cfg, &*self.runtime, req, dump.clone());
        record(
            store.root(),
            checkpoint_record(Trigger::Rpc, &state.identity, id, started, &outcome),
        );
        let outcome = outcome?;
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
    let reasons = arch_checkpoint::criu_log_errors(&log_dir.join(arch_image::DUMP_LOG));
    ShimError::Internal(format!(
        "checkpoint failed: {e}{}",
        if reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", reasons.join("; "))
        }
    ))
}
