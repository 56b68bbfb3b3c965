//! Holds a process's exit while its Start is being announced, so containerd
//! sees TaskStart before that process's TaskExit, as runc's shim
//! guarantees (its `preStart`/`handleStarted`): an init that exits at once
//! would otherwise race its own start event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::exits::Owner;
use crate::process::Process;

/// An exit that arrived during a hold: owner, pid, code.
pub type HeldExit = (Owner, i32, i32);

#[derive(Default)]
pub struct ExitHold {
    /// Keyed by the process's address: one entry per process being started.
    held: Mutex<HashMap<usize, Option<HeldExit>>>,
}

fn key(process: &Arc<Process>) -> usize {
    Arc::as_ptr(process) as usize
}

impl ExitHold {
    /// From now until `release`, an exit of `process` is kept back.
    pub fn hold(&self, process: &Arc<Process>) {
        self.held.lock().unwrap().insert(key(process), None);
    }

    /// Keeps the exit back if its process is held; otherwise hands it back
    /// to be reported now.
    pub fn keep(&self, exit: HeldExit) -> Option<HeldExit> {
        let mut held = self.held.lock().unwrap();
        match held.get_mut(&key(&exit.0.process)) {
            Some(slot) => {
                *slot = Some(exit);
                None
            }
            None => Some(exit),
        }
    }

    /// Ends the hold; returns the exit that arrived meanwhile, to report.
    pub fn release(&self, process: &Arc<Process>) -> Option<HeldExit> {
        self.held.lock().unwrap().remove(&key(process)).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdio::StdioPaths;

    fn owner(process: &Arc<Process>) -> Owner {
        Owner {
            container_id: "c".into(),
            process: process.clone(),
        }
    }

    #[test]
    fn an_exit_during_a_hold_is_reported_at_release() {
        let hold = ExitHold::default();
        let p = Arc::new(Process::new("", StdioPaths::default()));
        hold.hold(&p);
        assert!(hold.keep((owner(&p), 10, 0)).is_none(), "kept back");
        let (_, pid, code) = hold.release(&p).expect("handed back at release");
        assert_eq!((pid, code), (10, 0));
        assert!(hold.release(&p).is_none(), "released once");
    }

    #[test]
    fn exits_of_other_processes_pass() {
        let hold = ExitHold::default();
        let held = Arc::new(Process::new("", StdioPaths::default()));
        let other = Arc::new(Process::new("e1", StdioPaths::default()));
        hold.hold(&held);
        assert!(hold.keep((owner(&other), 11, 1)).is_some());
        assert!(hold.release(&held).is_none(), "nothing arrived");
        assert!(
            hold.keep((owner(&held), 10, 0)).is_some(),
            "not held any more"
        );
    }
}
