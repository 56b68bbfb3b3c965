//! The stop signal to an ARCH container's init means "checkpoint, then
//! stop": the dump runs on a thread of its own, the exit is reported only
//! once the image is committed, and a SIGKILL meanwhile waits (up to the
//! kill deadline) for the commit. A failed checkpoint keeps nothing and
//! delivers the signal as asked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arch_checkpoint::DumpRequest;
use arch_runtime::DumpOptions;
use containerd_shim::api::Status;

use super::dump::checkpoint_into_store;
use super::records::{checkpoint_record, record, Trigger};
use super::Arch;
use crate::container::Container;
use crate::error::Result;

/// What a signal to an init turns into.
#[derive(Debug, PartialEq, Eq)]
pub enum StopAction {
    /// Send the signal as usual.
    Deliver,
    /// A checkpoint runs and will end the container.
    Checkpointing,
    /// A checkpoint already ended the container.
    AlreadyExited,
}

/// Serialises stop-checkpoints and lets a SIGKILL wait for one to commit.
#[derive(Default)]
pub struct StopGate {
    busy: Mutex<bool>,
    idle: Condvar,
    /// A stop-checkpoint committed: the container is ending by design.
    committed: AtomicBool,
}

impl StopGate {
    /// Claims the gate; false if a checkpoint is already running.
    pub fn try_begin(&self) -> bool {
        let mut busy = self.busy.lock().unwrap();
        !std::mem::replace(&mut *busy, true)
    }

    pub fn end(&self, committed: bool) {
        self.committed.store(committed, Ordering::SeqCst);
        *self.busy.lock().unwrap() = false;
        self.idle.notify_all();
    }

    pub fn committed(&self) -> bool {
        self.committed.load(Ordering::SeqCst)
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

impl Arch {
    /// Decides what `signal` to the init of `c` does (`all`: to every
    /// process of it). The stop signal starts a checkpoint that ends the
    /// container; a SIGKILL waits (bounded) for one in progress.
    pub fn on_signal(&self, c: &Arc<Container>, signal: i32, all: bool) -> Result<StopAction> {
        let Some(state) = c.arch() else {
            return Ok(StopAction::Deliver);
        };
        let cfg = self.config()?;
        let init = c.init().clone();
        if signal == libc::SIGKILL {
            state.periodic.stop();
            if !state.gate.wait_idle(cfg.kill_deadline) {
                log::warn!(
                    "{}: checkpoint still running after {:?}; killing",
                    c.id(),
                    cfg.kill_deadline
                );
            }
            // After a committed stop-checkpoint the container is gone or
            // going: the SIGKILL that usually follows a stop has nothing to do.
            let ended = state.gate.committed() || init.state().status == Status::STOPPED;
            return Ok(if ended {
                StopAction::AlreadyExited
            } else {
                StopAction::Deliver
            });
        }
        if signal != cfg.stop_signal || init.state().status != Status::RUNNING {
            return Ok(StopAction::Deliver);
        }
        if !state.gate.try_begin() {
            return Ok(StopAction::Checkpointing);
        }
        state.periodic.stop();
        let store = self.store()?;
        let cfg = cfg.clone();
        let runtime = self.runtime.clone();
        let gate = state.gate.clone();
        let identity = state.identity.clone();
        let req = DumpRequest {
            identity: identity.clone(),
            container_id: c.id().to_string(),
            bundle: c.bundle().to_path_buf(),
            upperdir: state.upperdir.clone(),
            leave_running: false,
            paused: false,
            profile: state.profile.clone(),
            predumps: state.predumps,
        };
        let id = c.id().to_string();
        let container = c.clone();
        // Taken before the thread starts: a Delete that follows at once
        // already sees the commit coming.
        let commit = self.in_flight.begin(c.id());
        let spawned = std::thread::Builder::new()
            .name(format!("stop-{id}"))
            .spawn(move || {
                // A periodic checkpoint in flight finishes first.
                let _periodic = container.arch().map(|s| s.periodic.exclusive());
                log::info!(
                    "{id}: stop signal {signal}: checkpointing as {}/{}",
                    identity.namespace,
                    identity.key
                );
                let started = Instant::now();
                let outcome =
                    checkpoint_into_store(&store, &cfg, &*runtime, req, DumpOptions::default());
                record(
                    store.root(),
                    checkpoint_record(Trigger::Stop, &identity, &id, started, &outcome),
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
                        log::error!(
                            "{id}: checkpoint on stop failed, delivering signal {signal}: {e}"
                        );
                        deliver(&*runtime, &id, &init, signal, all);
                    }
                }
                gate.end(committed);
                drop(commit);
            });
        if let Err(e) = spawned {
            state.gate.end(false);
            log::error!("{}: cannot start the stop-checkpoint: {e}", c.id());
            return Ok(StopAction::Deliver);
        }
        Ok(StopAction::Checkpointing)
    }

    /// Holds an init's exit back until its stop-checkpoint committed (up to
    /// the kill deadline), so whoever sees the container stop can re-create
    /// it and find the image.
    pub fn await_stop(&self, c: &Container) {
        let Some(state) = c.arch() else { return };
        state.periodic.stop();
        let limit = self.config().map(|c| c.kill_deadline).unwrap_or_default();
        if !state.gate.wait_idle(limit) {
            log::warn!(
                "{}: exit reported before its checkpoint committed ({limit:?} passed)",
                c.id()
            );
        }
    }
}

/// The stop signal, after a checkpoint that could not be taken.
fn deliver(
    runtime: &dyn crate::seams::ContainerRuntime,
    id: &str,
    init: &Arc<crate::process::Process>,
    signal: i32,
    all: bool,
) {
    if all {
        if let Err(e) = runtime.kill(id, signal, true) {
            log::warn!("{id}: delivering signal {signal} to all: {e}");
        }
        return;
    }
    let Some(target) = init.target() else { return };
    if init.state().status != Status::STOPPED {
        if let Err(e) = runtime.signal(&target, signal) {
            log::warn!("{id}: delivering signal {signal} to {}: {e}", target.pid());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
