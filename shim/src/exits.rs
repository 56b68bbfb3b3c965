//! Matches reaped pids to processes. The reaper may see a pid exit before
//! the code that created it has registered it (a short exec), so unmatched
//! exits are kept briefly and claimed at registration.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::process::Process;
use crate::timeouts::EARLY_EXIT_TTL;

pub struct Owner {
    pub container_id: String,
    pub process: Arc<Process>,
}

#[derive(Default)]
pub struct ExitIndex {
    live: HashMap<i32, Owner>,
    early: HashMap<i32, (i32, Instant)>,
}

impl ExitIndex {
    /// Registers a new pid; returns its exit code if it already exited.
    pub fn register(&mut self, pid: i32, owner: Owner) -> Option<(Owner, i32)> {
        match self.early.remove(&pid) {
            Some((code, at)) if at.elapsed() < EARLY_EXIT_TTL => Some((owner, code)),
            _ => {
                self.live.insert(pid, owner);
                None
            }
        }
    }

    /// Takes the owner of an exited pid, or remembers the exit for later.
    pub fn exited(&mut self, pid: i32, code: i32) -> Option<Owner> {
        if let Some(owner) = self.live.remove(&pid) {
            return Some(owner);
        }
        self.early
            .retain(|_, (_, at)| at.elapsed() < EARLY_EXIT_TTL);
        self.early.insert(pid, (code, Instant::now()));
        None
    }

    pub fn forget(&mut self, pid: i32) {
        self.live.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdio::StdioPaths;

    fn owner() -> Owner {
        Owner {
            container_id: "c".into(),
            process: Arc::new(Process::new("", StdioPaths::default())),
        }
    }

    #[test]
    fn exit_after_register_finds_owner() {
        let mut idx = ExitIndex::default();
        assert!(idx.register(10, owner()).is_none());
        assert!(idx.exited(10, 3).is_some());
        assert!(idx.exited(10, 3).is_none(), "an owner is returned once");
    }

    #[test]
    fn exit_before_register_is_claimed() {
        let mut idx = ExitIndex::default();
        assert!(idx.exited(11, 7).is_none());
        let (_, code) = idx.register(11, owner()).expect("early exit claimed");
        assert_eq!(code, 7);
        assert!(idx.register(11, owner()).is_none(), "claimed only once");
    }

    #[test]
    fn forgotten_pid_is_not_matched() {
        let mut idx = ExitIndex::default();
        idx.register(12, owner());
        idx.forget(12);
        assert!(idx.exited(12, 0).is_none());
    }
}
