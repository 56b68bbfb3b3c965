//! What a fault does when its point is reached.

use std::path::Path;

/// The actions a fault can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The operation fails there, as if the step had failed.
    Error,
    /// The shim dies on the spot (SIGKILL to itself), as in a crash or OOM kill.
    Crash,
    /// The whole checkpoint root disappears (an operator's `rm -rf`, a
    /// lost network mount); the operation goes on.
    RemoveRoot,
    /// The CRIU worker of the request at this point (a notify runs on the
    /// thread that started it) is SIGKILLed; the operation goes on.
    KillCriu,
    /// The checkpoint root's filesystem is filled up (a file of zeros
    /// written until ENOSPC, `{root}/.arch-fault-fill`); the operation goes
    /// on. Only sensible on a small filesystem the test mounted there.
    FillDisk,
    /// The operation waits 3 s there, then goes on: a window for a test to
    /// act in (e.g. rewrite the root between a restore's Create and Start).
    Pause,
}

/// How long a `pause` action waits.
pub const PAUSE: std::time::Duration = std::time::Duration::from_secs(3);

/// The file a `fill-disk` action writes, for the test to remove.
pub const FILL_FILE: &str = ".arch-fault-fill";

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Error,
        Action::Crash,
        Action::RemoveRoot,
        Action::KillCriu,
        Action::FillDisk,
        Action::Pause,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Error => "error",
            Action::Crash => "crash",
            Action::RemoveRoot => "remove-root",
            Action::KillCriu => "kill-criu",
            Action::FillDisk => "fill-disk",
            Action::Pause => "pause",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Carries out every action but `Error`, which the caller returns.
    #[cfg_attr(not(feature = "inject"), allow(dead_code))]
    pub(crate) fn fire(self, point: &str, root: &Path) {
        log::warn!("fault point {point}: {}", self.name());
        match self {
            Action::Error => {}
            Action::Crash => crash(),
            Action::RemoveRoot => {
                if let Err(e) = std::fs::remove_dir_all(root) {
                    log::warn!("fault point {point}: removing {}: {e}", root.display());
                }
            }
            Action::KillCriu => {
                crate::criu::kill_criu_of_this_thread();
            }
            Action::FillDisk => fill(&root.join(FILL_FILE)),
            Action::Pause => std::thread::sleep(PAUSE),
        }
    }
}

fn fill(path: &Path) {
    use std::io::Write;
    let Ok(mut file) = std::fs::File::create(path) else {
        return;
    };
    let chunk = vec![0u8; 1 << 20];
    while file.write_all(&chunk).is_ok() {}
    // Whatever fits of a last partial chunk, so not a block is left.
    while file.write(&chunk[..4096]).is_ok_and(|n| n > 0) {}
    let _ = file.sync_all();
}

fn crash() -> ! {
    log::logger().flush();
    // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, so this
    // never returns — abort() is the fallback should it somehow not land.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}
