//! A checkpoint into the image store: the arch-checkpoint chain over this
//! shim's runtime, queued for a host-wide dump slot.

use std::path::Path;
use std::time::Instant;

use arch_checkpoint::{
    default_steps, run_dump_chain, ArchConfig, DumpContext, DumpOutcome, DumpRequest, DumpSlots,
    Dumper, HostProcs,
};
use arch_image::ImageStore;
use arch_runtime::{DumpOptions, RuntimeError};

use crate::seams::ContainerRuntime;
use crate::timeouts::STALE_TEMP_AGE;

/// The runtime as the dump chain sees it.
struct RuntimeDumper<'a> {
    runtime: &'a dyn ContainerRuntime,
    id: &'a str,
    base: DumpOptions,
    /// The host-wide limit on dumps at once.
    slots: DumpSlots,
}

impl Dumper for RuntimeDumper<'_> {
    type Error = RuntimeError;

    fn pids(&self) -> Result<Vec<i32>, RuntimeError> {
        self.runtime.pids(self.id)
    }

    fn dump(&self, dir: &Path) -> Result<(), RuntimeError> {
        // CRIU dumps the frozen tree and leaves it frozen; the chain decides
        // when it thaws or ends (run_dump_chain).
        let opts = DumpOptions {
            image_dir: dir.to_path_buf(),
            leave_running: true,
            frozen: true,
            ..self.base.clone()
        };
        let queued = Instant::now();
        let slot = self.slots.acquire();
        if let Some(s) = &slot {
            log::info!(
                "{}: dump slot {} after {} ms",
                self.id,
                s.index,
                queued.elapsed().as_millis()
            );
        }
        self.runtime.checkpoint(self.id, &opts)
    }

    fn freeze(&self) -> Result<(), RuntimeError> {
        self.runtime.pause(self.id)
    }

    fn thaw(&self) -> Result<(), RuntimeError> {
        self.runtime.resume(self.id)
    }

    fn kill_frozen(&self) -> Result<(), RuntimeError> {
        // SIGKILL is delivered as the tasks thaw.
        let killed = self.runtime.kill(self.id, libc::SIGKILL, true);
        let thawed = self.runtime.resume(self.id);
        killed.and(thawed)
    }

    fn criu_version(&self) -> Result<String, RuntimeError> {
        self.runtime.criu_version()
    }
}

/// Dumps the container of `req` into the image store under its identity.
pub(super) fn checkpoint_into_store(
    store: &ImageStore,
    cfg: &ArchConfig,
    runtime: &dyn ContainerRuntime,
    req: DumpRequest,
    base: DumpOptions,
) -> arch_checkpoint::Result<DumpOutcome> {
    // Temporaries of a checkpoint whose shim died; old enough that no live
    // checkpoint (on this or another host) can still be writing them.
    match store.cleanup_stale_temps(STALE_TEMP_AGE) {
        Ok(0) => {}
        Ok(n) => log::info!("removed {n} stale checkpoint temporaries"),
        Err(e) => log::warn!("cleaning stale checkpoint temporaries: {e}"),
    }
    let id = req.container_id.clone();
    let dumper = RuntimeDumper {
        runtime,
        id: &id,
        base,
        slots: DumpSlots::new(arch_host::paths::dump_slot_dir(), cfg.max_concurrent_dumps),
    };
    run_dump_chain(
        &default_steps(),
        DumpContext::new(req, store, &dumper, &HostProcs),
    )
}
