//! ARCH behaviour in the shim: checkpoint-on-stop and checkpoints into the
//! image store, through the arch-checkpoint chain.

use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use arch_checkpoint::{
    default_steps, run_dump_chain, ArchConfig, DumpContext, DumpOutcome, DumpRequest, DumpSlots,
    Dumper, HostProcs,
};
use arch_image::ImageStore;
use arch_runtime::{DumpOptions, Runtime, RuntimeError};

pub const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// The runtime as the dump chain sees it.
pub struct RuntimeDumper<'a> {
    pub runtime: &'a Runtime,
    pub id: &'a str,
    pub base: DumpOptions,
    /// The host-wide limit on dumps at once.
    pub slots: DumpSlots,
}

impl Dumper for RuntimeDumper<'_> {
    type Error = RuntimeError;

    fn pids(&self) -> Result<Vec<i32>, RuntimeError> {
        self.runtime.load(self.id)?.cgroup()?.pids()
    }

    fn dump(&self, dir: &Path, leave_running: bool) -> Result<(), RuntimeError> {
        let opts = DumpOptions {
            image_dir: dir.to_path_buf(),
            leave_running,
            ..self.base.clone()
        };
        let mut handle = self.runtime.load(self.id)?;
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
        handle.checkpoint(&opts)
    }

    fn criu_version(&self) -> Result<String, RuntimeError> {
        arch_runtime::criu_version()
    }
}

/// Dumps the container of `req` into the image store under its identity.
pub fn checkpoint_into_store(
    store: &ImageStore,
    cfg: &ArchConfig,
    runtime: &Runtime,
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

/// Serialises stop-checkpoints and lets a SIGKILL wait for one to commit.
#[derive(Default)]
pub struct StopGate {
    busy: Mutex<bool>,
    idle: Condvar,
    /// A stop-checkpoint committed: the container is ending by design.
    committed: std::sync::atomic::AtomicBool,
}

impl StopGate {
    /// Claims the gate; false if a checkpoint is already running.
    pub fn try_begin(&self) -> bool {
        let mut busy = self.busy.lock().unwrap();
        !std::mem::replace(&mut *busy, true)
    }

    pub fn end(&self, committed: bool) {
        self.committed
            .store(committed, std::sync::atomic::Ordering::SeqCst);
        *self.busy.lock().unwrap() = false;
        self.idle.notify_all();
    }

    pub fn committed(&self) -> bool {
        self.committed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until no checkpoint runs, up to `limit`; true if idle.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut busy = self.busy.lock().unwrap();
        while *busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            busy = self.idle.wait_timeout(busy, left).unwrap().0;
        }
        true
    }
}

/// Appends an operation record for archctl and metrics; a failure to record
/// is logged, never fatal to the operation.
pub fn record(root: &Path, rec: arch_records::Record) {
    if let Err(e) = arch_records::append(root, &arch_host::hostname(), &rec) {
        log::warn!("could not record {:?} of {}: {e}", rec.op, rec.container_id);
    }
}

/// The record of a checkpoint attempt.
pub fn checkpoint_record(
    trigger: &str,
    identity: &arch_checkpoint::ArchIdentity,
    id: &str,
    started: Instant,
    outcome: &arch_checkpoint::Result<DumpOutcome>,
) -> arch_records::Record {
    let (result, durations_ms, bytes, error) = match outcome {
        Ok(o) => (
            arch_records::Outcome::Ok,
            o.durations_ms.clone(),
            o.image.manifest().total_size,
            None,
        ),
        Err(e) => (
            arch_records::Outcome::Failed,
            Default::default(),
            0,
            Some(e.to_string()),
        ),
    };
    arch_records::Record {
        time: arch_records::now_secs(),
        op: arch_records::Operation::Checkpoint,
        outcome: result,
        trigger: trigger.to_string(),
        namespace: identity.namespace.clone(),
        key: identity.key.clone(),
        container_id: id.to_string(),
        total_ms: started.elapsed().as_millis() as u64,
        durations_ms,
        bytes,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn gate_serialises_and_releases_waiters() {
        let gate = Arc::new(StopGate::default());
        assert!(gate.try_begin());
        assert!(!gate.try_begin(), "one checkpoint at a time");
        assert!(
            !gate.wait_idle(Duration::from_millis(20)),
            "deadline honoured"
        );
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.wait_idle(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        gate.end(true);
        assert!(waiter.join().unwrap());
        assert!(gate.committed());
    }
}
