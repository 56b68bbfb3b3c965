//! A host-wide limit on CRIU dumps running at once. Every shim is its own
//! process, so the limit lives in the filesystem: N slot files under a
//! run directory, each held with an exclusive `flock` for one dump. The
//! kernel drops a dead shim's lock with its file descriptors, so a crash
//! never leaks a slot.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct DumpSlots {
    dir: PathBuf,
    slots: usize,
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    _lock: File,
    pub index: usize,
}

impl DumpSlots {
    pub fn new(dir: impl Into<PathBuf>, slots: usize) -> Self {
        Self {
            dir: dir.into(),
            slots: slots.max(1),
        }
    }

    /// Takes a free slot, or waits (blocked in the kernel, not polling:
    /// hundreds of shims may wait at once) for the one this process hashes
    /// to. None when the slot directory is unusable: the caller then dumps
    /// anyway, since refusing would lose the checkpoint for certain.
    pub fn acquire(&self) -> Option<Slot> {
        match self.try_acquire() {
            Ok(Some(slot)) => return Some(slot),
            Ok(None) => {}
            Err(e) => {
                log::warn!("dump slots {}: {e}", self.dir.display());
                return None;
            }
        }
        let index = std::process::id() as usize % self.slots;
        match lock(&self.slot_path(index), libc::LOCK_EX) {
            Ok(Some(lock)) => Some(Slot { _lock: lock, index }),
            Ok(None) => None,
            Err(e) => {
                log::warn!("dump slot {index} in {}: {e}", self.dir.display());
                None
            }
        }
    }

    /// A free slot, if there is one now.
    pub fn try_acquire(&self) -> std::io::Result<Option<Slot>> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        // Start at a per-process offset so concurrent takers spread out.
        let first = std::process::id() as usize % self.slots;
        for n in 0..self.slots {
            let index = (first + n) % self.slots;
            if let Some(lock) = lock(&self.slot_path(index), libc::LOCK_EX | libc::LOCK_NB)? {
                return Ok(Some(Slot { _lock: lock, index }));
            }
        }
        Ok(None)
    }

    fn slot_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{index}.lock"))
    }
}

/// flock(2) with `op`; None if a non-blocking lock is held elsewhere.
fn lock(path: &Path, op: libc::c_int) -> std::io::Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    loop {
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(Some(file));
        }
        match std::io::Error::last_os_error() {
            e if e.kind() == std::io::ErrorKind::Interrupted => continue,
            e if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            e => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn no_more_slots_than_the_limit_are_held() {
        let tmp = tempfile::tempdir().unwrap();
        let slots = DumpSlots::new(tmp.path().join("slots"), 2);
        let a = slots.try_acquire().unwrap().unwrap();
        let b = slots.try_acquire().unwrap().unwrap();
        assert_ne!(a.index, b.index);
        assert!(slots.try_acquire().unwrap().is_none(), "a third must wait");
        drop(a);
        // Another test of this process that forks (predump's fake CRIU)
        // gives its child a copy of every descriptor, the lock's too,
        // until the child execs: the slot is free once that copy closes
        // (CI saw the lock still held once). Bounded: a slot that is
        // never freed still fails.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut again = slots.try_acquire().unwrap();
        while again.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            again = slots.try_acquire().unwrap();
        }
        assert!(again.is_some(), "a freed slot is reusable");
    }

    #[test]
    fn a_waiter_gets_the_slot_when_it_is_freed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("slots");
        let held = DumpSlots::new(&dir, 1).acquire().unwrap();
        let waiter = std::thread::spawn(move || DumpSlots::new(dir, 1).acquire().is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "waits while the slot is held");
        drop(held);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn an_unusable_directory_lets_the_dump_go_ahead() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        assert!(DumpSlots::new(&file, 2).acquire().is_none());
    }
}
