//! A checkpoint into the image store: the arch-checkpoint chain over this
//! shim's runtime, queued for a host-wide dump slot.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use arch_checkpoint::{
    default_steps, run_dump_chain, ArchConfig, DumpContext, DumpOutcome, DumpRequest, DumpSlots,
    Dumper, HostProcs, Slot,
};
use arch_image::{HostKey, ImageStore};
use arch_runtime::{DumpOptions, RuntimeError, StreamedFile};

use super::local_dump::{copy_into_staging, LocalDump, LOCAL_DUMP_DIR};
use crate::seams::ContainerRuntime;
use crate::timeouts::STALE_TEMP_AGE;

/// The runtime as the dump chain sees it.
struct RuntimeDumper<'a> {
    runtime: &'a dyn ContainerRuntime,
    id: &'a str,
    base: DumpOptions,
    /// The host-wide limit on dumps at once.
    slots: DumpSlots,
    /// Held from the freeze to the end of the dump: a container waiting for
    /// its turn keeps running, and hundreds of stops at once never freeze
    /// hundreds of cgroups at once (the freezer gave up under that load).
    slot: Mutex<Option<Slot>>,
    /// network-fs: where CRIU writes an unstreamed dump before it is
    /// copied into staging (local_dump.rs).
    local: Option<LocalDump>,
}

impl RuntimeDumper<'_> {
    /// Takes this dump's slot, waiting for one if all are busy.
    fn take_slot(&self) {
        let mut held = self.slot.lock().unwrap();
        if held.is_some() {
            return;
        }
        let queued = Instant::now();
        *held = self.slots.acquire();
        if let Some(s) = held.as_ref() {
            log::info!(
                "{}: dump slot {} after {} ms",
                self.id,
                s.index,
                queued.elapsed().as_millis()
            );
        }
    }

    fn release_slot(&self) {
        self.slot.lock().unwrap().take();
    }

    /// One CRIU run (a pre-dump or the dump) holding a host-wide slot.
    fn checkpoint_in_slot(&self, opts: DumpOptions) -> Result<Vec<StreamedFile>, RuntimeError> {
        self.take_slot();
        let dumped = self.checkpoint_here(opts);
        self.release_slot();
        dumped
    }

    /// On a network-fs root, whatever CRIU opens by name goes to the local
    /// mirror first and is copied into staging after (local_dump.rs): an
    /// unstreamed dump's images directory; a streamed dump's work
    /// directory (its log and stats; the streamer creates the images).
    fn checkpoint_here(&self, mut opts: DumpOptions) -> Result<Vec<StreamedFile>, RuntimeError> {
        let local = match &self.local {
            // containerd's own work path is not on the root.
            Some(l) if opts.stream.is_none() || opts.work_dir.is_none() => l,
            _ => return self.runtime.checkpoint(self.id, &opts),
        };
        let staged = opts.image_dir.clone();
        let io = |what: &str| {
            let context = format!("{what} {}", staged.display());
            move |source| RuntimeError::Io { context, source }
        };
        let mirror = if opts.stream.is_some() {
            let work = local.dir_for(Path::new("work")).map_err(io("mirroring"))?;
            opts.work_dir = Some(work.clone());
            work
        } else {
            opts.image_dir = local.dir_for(&staged).map_err(io("mirroring"))?;
            opts.image_dir.clone()
        };
        let dumped = self.runtime.checkpoint(self.id, &opts);
        let copied = copy_into_staging(&mirror, &staged);
        // A failed dump's log still goes to staging, for its record.
        let dumped = dumped?;
        copied.map_err(io("copying CRIU's files into"))?;
        Ok(dumped)
    }
}

impl Dumper for RuntimeDumper<'_> {
    type Error = RuntimeError;

    fn pids(&self) -> Result<Vec<i32>, RuntimeError> {
        self.runtime.pids(self.id)
    }

    fn dump(&self, dir: &Path, parent: Option<&str>) -> Result<Vec<StreamedFile>, RuntimeError> {
        // CRIU dumps the frozen tree and leaves it frozen; the chain decides
        // when it thaws or ends (run_dump_chain).
        self.checkpoint_in_slot(DumpOptions {
            image_dir: dir.to_path_buf(),
            leave_running: true,
            frozen: true,
            parent_img: parent.map(str::to_string),
            // Streaming excludes parent images: a dump after pre-dumps is
            // written by CRIU as files.
            stream: self.base.stream.filter(|_| parent.is_none()),
            ..self.base.clone()
        })
    }

    fn pre_dump(&self, dir: &Path, parent: Option<&str>) -> Result<(), RuntimeError> {
        // The container runs meanwhile (or stays paused, if its user or
        // containerd paused it); a pre-dump holds a slot like a dump.
        self.checkpoint_in_slot(DumpOptions {
            image_dir: dir.to_path_buf(),
            leave_running: true,
            pre_dump: true,
            parent_img: parent.map(str::to_string),
            stream: None,
            ..self.base.clone()
        })
        .map(|_| ())
    }

    fn freeze(&self) -> Result<(), RuntimeError> {
        self.take_slot();
        // The runtime's freeze waits out a loaded host (see arch_runtime's
        // freeze module); past its patience the checkpoint fails.
        let frozen = self.runtime.pause(self.id);
        if frozen.is_err() {
            self.release_slot();
        }
        frozen
    }

    fn thaw(&self) -> Result<(), RuntimeError> {
        self.release_slot();
        self.runtime.resume(self.id)
    }

    fn kill_frozen(&self) -> Result<(), RuntimeError> {
        self.runtime.end_frozen(self.id)
    }

    fn criu_version(&self) -> Result<String, RuntimeError> {
        self.runtime.criu_version()
    }

    fn sealing(&self) -> Option<(arch_imgstream::Codec, &arch_imgstream::Crypt)> {
        // A cipher comes only with a streamed dump (`encryption` below).
        let codec = self.base.stream.unwrap_or(arch_imgstream::Codec::None);
        self.base.crypt.as_ref().map(|crypt| (codec, crypt))
    }
}

/// The encryption of this checkpoint's streamed files, when the host has a
/// key: bound to the image by a fresh image id. A checkpoint that would
/// not be streamed (containerd's own image path, pre-dumps, a CRIU
/// without `--stream`) fails rather than be written unencrypted.
fn encryption(
    store: &ImageStore,
    req: &DumpRequest,
    streamed: bool,
) -> arch_checkpoint::Result<Option<arch_imgstream::Crypt>> {
    let refuse = |why: &str| {
        Err(arch_checkpoint::CheckpointError::Unsupported(format!(
            "encryption at rest is configured, and {why}: refusing to write it unencrypted"
        )))
    };
    let key = match store.encryption() {
        HostKey::None => return Ok(None),
        HostKey::Unloadable(why) => {
            return Err(arch_checkpoint::CheckpointError::Config {
                origin: "encryption_key_file".into(),
                reason: why.clone(),
            })
        }
        HostKey::Loaded(k) => k.clone(),
    };
    if req.predumps > 0 {
        return refuse("a checkpoint with pre-dumps (ARCH_PREDUMP) is not streamed");
    }
    if !streamed {
        return refuse("this checkpoint would not be streamed");
    }
    let image_id =
        arch_imgstream::new_image_id().map_err(|source| arch_checkpoint::CheckpointError::Io {
            context: "an image id (getrandom)".into(),
            source,
        })?;
    Ok(Some(arch_imgstream::Crypt {
        key,
        namespace: req.identity.namespace.clone(),
        image_key: req.identity.key.clone(),
        image_id,
    }))
}

/// Dumps the container of `req` into the image store under its identity.
pub(super) fn checkpoint_into_store(
    store: &ImageStore,
    cfg: &ArchConfig,
    runtime: &dyn ContainerRuntime,
    req: DumpRequest,
    mut base: DumpOptions,
) -> arch_checkpoint::Result<DumpOutcome> {
    // Streamed when the host says so, except when containerd wants CRIU's
    // files copied to its own path (it reads them as CRIU wrote them).
    base.stream = (base.image_dir.as_os_str().is_empty()
        && cfg.stream.streams(runtime.criu_can_stream()))
    .then(|| cfg.stream.codec());
    base.crypt = encryption(store, &req, base.stream.is_some())?;
    // Restored only by ARCH, unless containerd takes a copy of CRIU's files.
    base.own_image = base.image_dir.as_os_str().is_empty();
    // A terminal's dump cannot stream: with a key CRIU writes it here, on
    // this host's own disk, and each image is sealed from here into staging.
    let seal_dir = match &base.crypt {
        Some(_) => {
            let local_err = |e| arch_checkpoint::CheckpointError::Io {
                context: format!("making a private dump directory in {LOCAL_DUMP_DIR}"),
                source: e,
            };
            let local = LocalDump::new(&req.container_id).map_err(local_err)?;
            base.seal_dir = Some(local.dir_for(Path::new("seal")).map_err(local_err)?);
            Some(local)
        }
        None => None,
    };
    // Temporaries of a checkpoint whose shim died; old enough that no live
    // checkpoint (on this or another host) can still be writing them.
    match store.cleanup_stale_temps(STALE_TEMP_AGE) {
        Ok(0) => {}
        Ok(n) => log::info!("removed {n} stale checkpoint temporaries"),
        Err(e) => log::warn!("cleaning stale checkpoint temporaries: {e}"),
    }
    let id = req.container_id.clone();
    let local = match cfg.mode {
        arch_checkpoint::Mode::NetworkFs => {
            Some(
                LocalDump::new(&id).map_err(|e| arch_checkpoint::CheckpointError::Io {
                    context: format!("making a local dump directory in {LOCAL_DUMP_DIR}"),
                    source: e,
                })?,
            )
        }
        arch_checkpoint::Mode::Basic => None,
    };
    let dumper = RuntimeDumper {
        runtime,
        id: &id,
        base,
        slots: DumpSlots::new(arch_host::paths::dump_slot_dir(), cfg.max_concurrent_dumps),
        slot: Mutex::new(None),
        local,
    };
    let dumped = run_dump_chain(
        &default_steps(),
        DumpContext::new(req, store, &dumper, &HostProcs),
    );
    drop(seal_dir);
    dumped
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arch_checkpoint::{ArchIdentity, DumpRequest};
    use arch_image::{HostKey, ImageStore};

    use super::encryption;

    fn req(predumps: u8) -> DumpRequest {
        DumpRequest {
            identity: ArchIdentity {
                namespace: "default".into(),
                key: "web".into(),
            },
            container_id: "c1".into(),
            bundle: "/b".into(),
            upperdir: None,
            leave_running: false,
            paused: false,
            profile: Default::default(),
            predumps,
        }
    }

    fn store(key: HostKey) -> ImageStore {
        ImageStore::new("/nonexistent").with_encryption(key)
    }

    #[test]
    fn a_key_encrypts_streamed_checkpoints_and_refuses_the_others() {
        assert!(encryption(&store(HostKey::None), &req(0), false)
            .unwrap()
            .is_none());
        let key = Arc::new(arch_imgcrypt::Key::from_bytes([3; 32]));
        let s = store(HostKey::Loaded(key.clone()));
        let a = encryption(&s, &req(0), true).unwrap().unwrap();
        let b = encryption(&s, &req(0), true).unwrap().unwrap();
        assert_eq!(
            (a.namespace.as_str(), a.image_key.as_str()),
            ("default", "web")
        );
        assert_eq!(a.key.id(), key.id());
        assert_eq!(a.image_id.len(), 32);
        assert_ne!(a.image_id, b.image_id, "a fresh image id per checkpoint");
        for (predumps, streamed) in [(0, false), (1, true)] {
            let e = encryption(&s, &req(predumps), streamed).unwrap_err();
            assert!(
                e.to_string().contains("refusing to write it unencrypted"),
                "{e}"
            );
        }
        let e = encryption(
            &store(HostKey::Unloadable("mode 0644".into())),
            &req(0),
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("mode 0644"), "{e}");
    }
}
