//! Leases on taken images for shared (NFS/EFS) roots.
//!
//! A restorer in `network-fs` mode takes an image under a name of its own
//! (`{key}@taken-{tag}`, see taken.rs) and holds a lease file beside it,
//! `{key}@lease-{tag}`, created with `O_EXCL` *before* the take. A thread
//! touches the lease file every quarter of the lease duration while the
//! image is held. Another host that finds a `@taken-` image judges its
//! lease by the **shared filesystem's clock**: it creates a probe file in
//! the same directory and compares the probe's mtime with the lease's.
//! Both times are set by the file server (a touch with `UTIME_NOW` is sent
//! to NFS as "set to server time"), so the hosts' own clocks never matter.
//!
//! A lease not touched for longer than the duration means the restorer is
//! gone (killed mid-restore, its host dead): the image is renamed back
//! under its key for the next restorer. The rename is atomic, so exactly
//! one reclaimer gets it, and a live restorer that finds its taken image
//! gone (or its lease file replaced) knows it lost the lease and does not
//! restore.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::error::{io_err, Result};
use crate::fsutil::{rand_suffix, FILE_MODE};
use crate::SIDECAR_SEP as SEP;

/// The sidecar kind of a lease file.
pub(crate) const LEASE: &str = "lease-";

/// Lease duration when the host configuration names none.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// "Now" as the filesystem holding `dir` sees it.
pub trait FsClock: Send + Sync {
    fn now(&self, dir: &Path) -> Result<SystemTime>;
}

/// The file server's clock: the mtime of a new probe file in `dir`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProbeClock;

impl FsClock for ProbeClock {
    fn now(&self, dir: &Path) -> Result<SystemTime> {
        // `@clock-…` has an empty key: never taken for an image or sidecar.
        let probe = dir.join(format!("{SEP}clock-{}", rand_suffix()));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&probe)
            .map_err(io_err("create", &probe))?;
        let now = f.metadata().and_then(|m| m.modified());
        let _ = fs::remove_file(&probe);
        now.map_err(io_err("stat", &probe))
    }
}

/// Whether the lease whose file (or, without one, whose taken image) last
/// changed at `touched` has expired at the filesystem's `now`.
pub(crate) fn expired(touched: SystemTime, now: SystemTime, lease: Duration) -> bool {
    now.duration_since(touched).is_ok_and(|age| age > lease)
}

/// When `path` last changed (a lease file's touch, a rename of a taken
/// image: ctime, which a rename sets and a touch sets too).
pub(crate) fn changed_at(path: &Path) -> Option<SystemTime> {
    let m = fs::symlink_metadata(path).ok()?;
    let ctime = SystemTime::UNIX_EPOCH
        + Duration::new(m.ctime().max(0) as u64, m.ctime_nsec().max(0) as u32);
    Some(m.modified().map_or(ctime, |mtime| mtime.max(ctime)))
}

/// The lease file of the taken image `{key}@taken-{tag}`.
pub(crate) fn lease_path(ns_dir: &Path, key: &str, tag: &str) -> PathBuf {
    ns_dir.join(format!("{key}{SEP}{LEASE}{tag}"))
}

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    lost: AtomicBool,
}

/// Touches a file or directory (through its descriptor) every `period`
/// until dropped, noting when its name no longer refers to it.
pub(crate) struct Heartbeat {
    path: PathBuf,
    file: Arc<File>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    pub(crate) fn start(path: PathBuf, file: File, period: Duration) -> Heartbeat {
        let mut hb = Heartbeat {
            path,
            file: Arc::new(file),
            shared: Arc::new(Shared {
                stop: Mutex::new(false),
                wake: Condvar::new(),
                lost: AtomicBool::new(false),
            }),
            thread: None,
        };
        let (path, file, shared) = (hb.path.clone(), hb.file.clone(), hb.shared.clone());
        hb.thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || heartbeat(&path, &file, &shared, period))
            .ok();
        if hb.thread.is_none() {
            log::warn!("{}: no heartbeat thread", hb.path.display());
        }
        hb
    }

    /// Touches now; false once the name no longer refers to what we hold.
    pub(crate) fn beat(&self) -> bool {
        beat(&self.path, &self.file, &self.shared)
    }

    fn stop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A held lease: its file is touched every quarter of the lease until
/// dropped, when it is removed (if it is still ours).
pub struct Lease {
    hb: Heartbeat,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("path", &self.hb.path)
            .finish()
    }
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("path", &self.path)
            .finish()
    }
}

impl Lease {
    /// Creates the lease file `path` (`O_EXCL`, never through a link) and
    /// starts touching it every quarter of `duration`.
    pub(crate) fn acquire(path: PathBuf, owner: &str, duration: Duration) -> Result<Lease> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let written = f
            .write_all(format!("{owner}\n").as_bytes())
            .and_then(|_| f.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(io_err("write", &path)(e));
        }
        let period = (duration / 4).max(Duration::from_millis(100));
        Ok(Lease {
            hb: Heartbeat::start(path, f, period),
        })
    }

    /// The lease file.
    pub fn path(&self) -> &Path {
        &self.hb.path
    }

    /// Touches the lease now; false once it is no longer ours (removed or
    /// replaced by a host that judged it expired).
    pub fn beat(&self) -> bool {
        self.hb.beat()
    }

    /// As if the holder were SIGKILLed: no more touches, the file stays.
    #[cfg(test)]
    pub(crate) fn die(mut self) {
        self.hb.stop();
        std::mem::forget(self);
    }

    /// Whether the lease was lost (seen by a heartbeat or [`Lease::beat`]).
    pub fn lost(&self) -> bool {
        self.hb.shared.lost.load(Ordering::SeqCst)
    }
}

fn heartbeat(path: &Path, file: &File, shared: &Shared, period: Duration) {
    let mut stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
    while !*stop {
        let (guard, _) = shared
            .wake
            .wait_timeout(stop, period)
            .unwrap_or_else(|e| e.into_inner());
        stop = guard;
        if !*stop && !beat(path, file, shared) {
            return;
        }
    }
}

/// Touches the lease through its descriptor (`UTIME_NOW`: the server's
/// time on NFS) and checks the name still refers to it.
fn beat(path: &Path, file: &File, shared: &Shared) -> bool {
    if shared.lost.load(Ordering::SeqCst) {
        return false;
    }
    // SAFETY: futimens on a descriptor we own; NULL times means "now".
    let touched = unsafe { libc::futimens(file.as_raw_fd(), std::ptr::null()) } == 0;
    if !touched {
        log::warn!(
            "{}: touching the lease: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    if !is_ours(path, file) {
        log::error!(
            "{}: no longer ours (judged expired elsewhere, or removed)",
            path.display()
        );
        shared.lost.store(true, Ordering::SeqCst);
        return false;
    }
    true
}

fn is_ours(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(named), Ok(held)) => named.dev() == held.dev() && named.ino() == held.ino(),
        _ => false,
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.hb.stop();
        if is_ours(&self.hb.path, &self.hb.file) {
            if let Err(e) = fs::remove_file(&self.hb.path) {
                log::warn!("{}: removing the lease: {e}", self.hb.path.display());
            }
        }
    }
}
