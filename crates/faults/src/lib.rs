//! Fault points: named places in a checkpoint or restore where the
//! reliability suite makes things go wrong on purpose — an error, a crash of
//! the shim, CRIU killed, the checkpoint root removed — deterministically,
//! instead of racing a `kill` against a timer.
//!
//! A container asks for one fault with the annotation
//! `io.arch.test.fault=<point>=<action>`, e.g. `after:dump=crash`. Only
//! debug builds (the ones the test suite runs) honour it: a release shim
//! ignores the annotation with a warning, so a workload can never make a
//! production shim misbehave.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The annotation that arms a fault for one container.
pub const ANNOTATION: &str = "io.arch.test.fault";

/// What happens when the armed point is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The operation fails there, as if the step had failed.
    Error,
    /// The shim dies on the spot (SIGKILL to itself), as in a crash or OOM kill.
    Crash,
    /// The whole checkpoint root disappears (an operator's `rm -rf`, a
    /// lost network mount); the operation goes on.
    RemoveRoot,
    /// Every CRIU process the shim started is SIGKILLed; the operation goes on.
    KillCriu,
    /// The checkpoint root's filesystem is filled up (a file of zeros
    /// written until ENOSPC, `{root}/.arch-fault-fill`); the operation goes
    /// on. Only sensible on a small filesystem the test mounted there.
    FillDisk,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Error,
        Action::Crash,
        Action::RemoveRoot,
        Action::KillCriu,
        Action::FillDisk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Error => "error",
            Action::Crash => "crash",
            Action::RemoveRoot => "remove-root",
            Action::KillCriu => "kill-criu",
            Action::FillDisk => "fill-disk",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    #[error("{ANNOTATION} {0:?}: expected <point>=<action> with action one of error, crash, remove-root, kill-criu, fill-disk")]
    Malformed(String),
    /// What an `error` action makes the operation fail with.
    #[error("injected fault at {0}")]
    Injected(String),
}

#[derive(Debug)]
struct Armed {
    point: String,
    action: Action,
    root: PathBuf,
    fired: AtomicBool,
}

/// The fault armed for one container, or none. Cheap to clone; a point
/// fires at most once per container.
#[derive(Clone, Debug, Default)]
pub struct Plan(Option<Arc<Armed>>);

impl Plan {
    /// No fault: every `hit` passes.
    pub fn none() -> Self {
        Self(None)
    }

    /// The plan a container's annotations ask for. `root` is the checkpoint
    /// root a `remove-root` action removes.
    pub fn from_annotation(value: Option<&str>, root: &Path) -> Result<Self, FaultError> {
        let Some(value) = value else {
            return Ok(Self::none());
        };
        if !cfg!(debug_assertions) {
            log::warn!(
                "ignoring {ANNOTATION}={value:?}: fault points are honoured by debug builds only"
            );
            return Ok(Self::none());
        }
        Self::parse(value, root)
    }

    fn parse(value: &str, root: &Path) -> Result<Self, FaultError> {
        let malformed = || FaultError::Malformed(value.to_string());
        let (point, action) = value.rsplit_once('=').ok_or_else(malformed)?;
        let action = Action::parse(action).ok_or_else(malformed)?;
        if point.is_empty() || point.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed());
        }
        Ok(Self(Some(Arc::new(Armed {
            point: point.to_string(),
            action,
            root: root.to_path_buf(),
            fired: AtomicBool::new(false),
        }))))
    }

    pub fn is_armed(&self) -> bool {
        self.0.is_some()
    }

    /// Passes `point`: fires the armed action if this is its point (once).
    pub fn hit(&self, point: &str) -> Result<(), FaultError> {
        let Some(armed) = &self.0 else {
            return Ok(());
        };
        if armed.point != point || armed.fired.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        log::warn!("fault point {point}: {}", armed.action.name());
        match armed.action {
            Action::Error => return Err(FaultError::Injected(point.to_string())),
            Action::Crash => crash(),
            Action::RemoveRoot => {
                if let Err(e) = std::fs::remove_dir_all(&armed.root) {
                    log::warn!(
                        "fault point {point}: removing {}: {e}",
                        armed.root.display()
                    );
                }
            }
            Action::KillCriu => {
                kill_criu_children();
            }
            Action::FillDisk => fill(&armed.root.join(FILL_FILE)),
        }
        Ok(())
    }
}

/// The file a `fill-disk` action writes, for the test to remove.
pub const FILL_FILE: &str = ".arch-fault-fill";

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

/// SIGKILLs every `criu` process whose parent is this process (rust-criu
/// runs `criu swrk` as a child of the calling process). The runtime uses it
/// too, outside fault injection, to end a CRIU worker a failed request left
/// behind. Returns how many were killed.
pub fn kill_criu_children() -> usize {
    let mut killed = 0;
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm may hold spaces and parens: the fields after the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = tail.split_whitespace().nth(1);
        if head.ends_with("(criu") && ppid == Some(me.as_str()) {
            // SAFETY: kill(2) with a pid read from /proc.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_annotation_means_no_fault() {
        let plan = Plan::from_annotation(None, Path::new("/nowhere")).unwrap();
        assert!(!plan.is_armed());
        assert_eq!(plan.hit("after:dump"), Ok(()));
    }

    #[test]
    fn an_error_fires_once_at_its_point_only() {
        let plan = Plan::parse("after:dump=error", Path::new("/nowhere")).unwrap();
        assert_eq!(plan.hit("before:dump"), Ok(()));
        assert_eq!(
            plan.hit("after:dump"),
            Err(FaultError::Injected("after:dump".into()))
        );
        assert_eq!(plan.hit("after:dump"), Ok(()), "fires once");
        let clone = plan.clone();
        assert_eq!(clone.hit("after:dump"), Ok(()), "clones share the firing");
    }

    #[test]
    fn remove_root_removes_the_root_and_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("ns/key")).unwrap();
        let plan = Plan::parse("commit:sealed=remove-root", &root).unwrap();
        assert_eq!(plan.hit("commit:sealed"), Ok(()));
        assert!(!root.exists());
    }

    #[test]
    fn malformed_plans_are_refused() {
        for bad in [
            "",
            "after:dump",
            "after:dump=explode",
            "=error",
            "a b=error",
            "x\n=crash",
        ] {
            assert!(
                matches!(
                    Plan::parse(bad, Path::new("/")),
                    Err(FaultError::Malformed(_))
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn points_may_contain_the_separator() {
        let plan = Plan::parse("criu:post-dump=kill-criu", Path::new("/")).unwrap();
        assert!(plan.is_armed());
    }
}
