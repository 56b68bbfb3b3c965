//! Checkpoints writing an image right now, by container id. Delete and
//! Shutdown wait for them (bounded) instead of tearing the container or the
//! shim down mid-commit: an image whose commit was cut short is lost, and
//! with it the process (issue 13 §3).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct InFlight {
    busy: Mutex<HashMap<String, usize>>,
    idle: Condvar,
}

/// One checkpoint in flight; dropping it ends it.
pub struct Commit {
    tracker: Arc<InFlight>,
    id: String,
}

impl InFlight {
    /// A checkpoint of `id` starts (it ends when the guard drops).
    pub fn begin(self: &Arc<Self>, id: &str) -> Commit {
        *self.busy.lock().unwrap().entry(id.to_string()).or_default() += 1;
        Commit {
            tracker: self.clone(),
            id: id.to_string(),
        }
    }

    /// Waits until no checkpoint of `id` (None: of any container) is in
    /// flight, up to `limit`; true if none is.
    pub fn wait(&self, id: Option<&str>, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut busy = self.busy.lock().unwrap();
        loop {
            let running = match id {
                Some(id) => busy.contains_key(id),
                None => !busy.is_empty(),
            };
            if !running {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            busy = self.idle.wait_timeout(busy, left).unwrap().0;
        }
    }

    /// Whether a checkpoint of `id` (None: of any container) is in flight.
    pub fn busy(&self, id: Option<&str>) -> bool {
        let busy = self.busy.lock().unwrap();
        id.map_or(!busy.is_empty(), |id| busy.contains_key(id))
    }
}

impl Drop for Commit {
    fn drop(&mut self) {
        let mut busy = self.tracker.busy.lock().unwrap();
        if let Some(n) = busy.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.id);
            }
        }
        self.tracker.idle.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_commits_asked_for_and_no_longer_than_the_limit() {
        let t = Arc::new(InFlight::default());
        let a = t.begin("a");
        let b1 = t.begin("b");
        let b2 = t.begin("b");
        assert!(t.wait(Some("c"), Duration::ZERO), "nothing of c runs");
        assert!(
            !t.wait(Some("a"), Duration::from_millis(20)),
            "limit honoured"
        );
        let t2 = t.clone();
        let waiter = std::thread::spawn(move || t2.wait(Some("a"), Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        drop(a);
        assert!(waiter.join().unwrap());
        drop(b1);
        assert!(t.busy(Some("b")), "the second checkpoint of b still runs");
        let t2 = t.clone();
        let all = std::thread::spawn(move || t2.wait(None, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!all.is_finished(), "Shutdown waits for every container");
        drop(b2);
        assert!(all.join().unwrap());
        assert!(!t.busy(None));
    }
}
