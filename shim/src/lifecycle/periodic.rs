//! Periodic checkpoints (`ARCH_INTERVAL`): every interval a leave-running
//! checkpoint replaces the container's image, so a crash (SIGKILL of the
//! container or the shim, a host that dies) loses at most one interval.
//!
//! One thread per container ticks at fixed times. A tick that comes while
//! the previous dump still runs, or finds no periodic slot free on the host,
//! is skipped and recorded as such: periodic dumps never pile up. The stop
//! signal ends the ticking and waits for a dump in flight before its own
//! final checkpoint (see `stop.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arch_checkpoint::{DumpRequest, DumpSlots};
use arch_records::Outcome;
use arch_runtime::DumpOptions;
use containerd_shim::api::Status;

use super::dump::checkpoint_into_store;
use super::records::{checkpoint_record, record, skipped_record, Trigger};
use super::Arch;
use crate::container::Container;

/// The periodic state of one container.
#[derive(Default)]
pub struct Periodic {
    stopped: Mutex<bool>,
    wake: Condvar,
    /// Held for each periodic dump; the stop-checkpoint takes it too, so it
    /// never runs beside one.
    dumping: Mutex<()>,
    skipped: AtomicU64,
}

impl Periodic {
    /// Ends the ticking (the container is stopping or gone).
    pub fn stop(&self) {
        *self.stopped.lock().unwrap() = true;
        self.wake.notify_all();
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap()
    }

    /// Sleeps until `at`; false if stopped meanwhile.
    fn sleep_until(&self, at: Instant) -> bool {
        let mut stopped = self.stopped.lock().unwrap();
        loop {
            if *stopped {
                return false;
            }
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            stopped = self.wake.wait_timeout(stopped, left).unwrap().0;
        }
    }

    /// Waits for a periodic dump in flight; holds further ones off.
    pub fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.dumping.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// The next tick after `last` that is still ahead of `now`, and how many
/// ticks fell in between (skipped: the dump before them still ran).
pub fn next_tick(last: Instant, interval: Duration, now: Instant) -> (Instant, u64) {
    let mut next = last + interval;
    let mut missed = 0;
    while next <= now {
        next += interval;
        missed += 1;
    }
    (next, missed)
}

impl Arch {
    /// Starts the periodic checkpoints of a started container that asked
    /// for them.
    pub fn start_periodic(&self, c: &Arc<Container>) {
        let (Some(state), Ok(cfg), Ok(store)) = (c.arch(), self.config(), self.store()) else {
            return;
        };
        let Some(interval) = state.interval else {
            return;
        };
        let (cfg, runtime, c2) = (cfg.clone(), self.runtime.clone(), c.clone());
        let in_flight = self.in_flight.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("periodic-{}", c.id()))
            .spawn(move || {
                let c = c2;
                let state = c.arch().expect("an ARCH container");
                let (id, periodic) = (c.id(), &state.periodic);
                let slots =
                    DumpSlots::new(arch_host::paths::periodic_slot_dir(), cfg.max_periodic_dumps);
                let mut tick = Instant::now() + interval;
                log::info!("{id}: periodic checkpoints every {interval:?}");
                while periodic.sleep_until(tick) {
                    let skip = |reason: &str| {
                        periodic.skipped.fetch_add(1, Ordering::Relaxed);
                        log::warn!("{id}: periodic checkpoint skipped: {reason}");
                        record(store.root(), skipped_record(&state.identity, id, reason));
                    };
                    match c.init().state().status {
                        Status::RUNNING => {}
                        Status::PAUSED => {
                            skip("the container is paused");
                            tick += interval;
                            continue;
                        }
                        _ => break,
                    }
                    let guard = periodic.exclusive();
                    if periodic.is_stopped() {
                        break;
                    }
                    match slots.try_acquire() {
                        Ok(Some(_slot)) => {
                            let _commit = in_flight.begin(id);
                            let req = DumpRequest {
                                identity: state.identity.clone(),
                                container_id: id.to_string(),
                                bundle: c.bundle().to_path_buf(),
                                upperdir: state.upperdir.clone(),
                                leave_running: true,
                                paused: false,
                                profile: state.profile.clone(),
                                predumps: state.predumps,
                            };
                            let started = Instant::now();
                            let outcome = checkpoint_into_store(
                                &store,
                                &cfg,
                                &*runtime,
                                req,
                                DumpOptions::default(),
                            );
                            let rec = checkpoint_record(
                                Trigger::Periodic,
                                &state.identity,
                                id,
                                started,
                                &outcome,
                            );
                            match &outcome {
                                Ok(o) => log::info!(
                                    "{id}: periodic checkpoint committed; frozen {} ms (dump {} ms, rootfs {} ms), pre-dumps {} ms before it, {} ms in all",
                                    o.durations_ms.get(arch_checkpoint::FREEZE).copied().unwrap_or_default(),
                                    o.durations_ms.get("dump").copied().unwrap_or_default(),
                                    o.durations_ms.get("rootfs").copied().unwrap_or_default(),
                                    o.durations_ms.get("predump").copied().unwrap_or_default(),
                                    rec.total_ms
                                ),
                                Err(e) => log::warn!("{id}: periodic checkpoint failed: {e}"),
                            }
                            debug_assert!(rec.outcome != Outcome::Skipped);
                            record(store.root(), rec);
                        }
                        Ok(None) => skip("no periodic dump slot free on this host"),
                        Err(e) => skip(&format!("periodic dump slots unusable: {e}")),
                    }
                    drop(guard);
                    let (next, missed) = next_tick(tick, interval, Instant::now());
                    for _ in 0..missed {
                        skip("the previous periodic checkpoint was still running");
                    }
                    tick = next;
                }
                log::info!(
                    "{id}: periodic checkpoints end ({} skipped)",
                    periodic.skipped()
                );
            });
        if let Err(e) = spawned {
            log::error!("{}: no periodic checkpoints: {e}", c.id());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_that_passed_during_a_dump_are_skipped() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(next_tick(t0, s, t0 + s / 2), (t0 + s, 0));
        assert_eq!(next_tick(t0, s, t0 + s * 3 + s / 2), (t0 + s * 4, 3));
    }

    #[test]
    fn stop_wakes_a_sleeper_at_once() {
        let p = Arc::new(Periodic::default());
        let p2 = p.clone();
        let started = Instant::now();
        let sleeper =
            std::thread::spawn(move || p2.sleep_until(Instant::now() + Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        p.stop();
        assert!(!sleeper.join().unwrap(), "stopped, not a tick");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!p.sleep_until(Instant::now()), "stays stopped");
    }
}
