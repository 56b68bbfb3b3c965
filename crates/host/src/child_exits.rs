//! The exit code of a child the shim's reaper may reap first.
//!
//! The shim is a subreaper and its SIGCHLD thread waits for *every* child
//! (`waitpid(-1)`), so a child the runtime starts and must judge by its
//! status (an OCI hook, CRIU's CLI) can be gone, ECHILD, by the time the
//! runtime waits for it. The reaper hands each exit here too
//! ([`child_exited`]); while an [`ExitWatch`] is open every exit is kept,
//! so the watcher finds its child's code whoever reaped it. Without a
//! reaper (archctl, tests) the watcher reaps its child itself.

use std::process::Child;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

struct Seen {
    watchers: usize,
    /// Exits the reaper reported while someone watched: (pid, code).
    codes: Vec<(i32, i32)>,
}

static SEEN: Mutex<Seen> = Mutex::new(Seen {
    watchers: 0,
    codes: Vec::new(),
});
static REPORTED: Condvar = Condvar::new();

fn seen() -> std::sync::MutexGuard<'static, Seen> {
    SEEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// The shim's reaper took `pid`'s exit: `code`, or 128 + the signal.
pub fn child_exited(pid: i32, code: i32) {
    let mut seen = seen();
    if seen.watchers > 0 {
        seen.codes.push((pid, code));
        REPORTED.notify_all();
    }
}

/// Keeps every reaped exit while it lives; open it before the spawn.
pub struct ExitWatch(());

/// How a watched child ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Its exit code, or 128 + the signal that ended it.
    Code(i32),
    /// Still running at the deadline.
    Running,
}

impl ExitWatch {
    pub fn open() -> ExitWatch {
        seen().watchers += 1;
        ExitWatch(())
    }

    /// Waits for `child` until `deadline` (None: as long as it runs).
    pub fn wait(&self, child: &mut Child, deadline: Option<Instant>) -> Ended {
        let pid = child.id() as i32;
        let mut pause = Duration::from_millis(1);
        loop {
            let reaped_elsewhere = match child.try_wait() {
                Ok(Some(status)) => return Ended::Code(code_of(status)),
                Ok(None) => false,
                // ECHILD: the reaper took it, and reports it here.
                Err(_) => true,
            };
            let mut seen = seen();
            // Only once the child is gone, and the latest entry: one for
            // its pid from before is another process's.
            if reaped_elsewhere {
                if let Some(i) = seen.codes.iter().rposition(|(p, _)| *p == pid) {
                    return Ended::Code(seen.codes.swap_remove(i).1);
                }
            }
            let left = match deadline {
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => return Ended::Running,
                },
                None => Duration::MAX,
            };
            // Woken by a report, or after a moment to ask the child again
            // (when nobody else reaps, nobody reports): 1 ms, doubling to
            // 8, so a quick exit is seen soon and a long run costs little.
            let nap = left.min(pause);
            pause = (pause * 2).min(Duration::from_millis(8));
            let _ = REPORTED
                .wait_timeout(seen, nap)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// As [`Self::wait`], but a child still running at `deadline` is
    /// killed and waited for: None then.
    pub fn wait_or_kill(&self, child: &mut Child, deadline: Option<Instant>) -> Option<i32> {
        match self.wait(child, deadline) {
            Ended::Code(code) => Some(code),
            Ended::Running => {
                let _ = child.kill();
                let _ = self.wait(child, None);
                None
            }
        }
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        let mut seen = seen();
        seen.watchers -= 1;
        if seen.watchers == 0 {
            seen.codes.clear();
        }
    }
}

fn code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_child_nobody_else_reaps_is_waited_for_here() {
        let watch = ExitWatch::open();
        let mut child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        assert_eq!(watch.wait(&mut child, None), Ended::Code(3));
    }

    #[test]
    fn a_child_another_thread_reaped_gets_its_code_from_the_report() {
        let watch = ExitWatch::open();
        let mut child = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        let pid = child.id() as i32;
        // The shim's reaper, in short: waits for the pid and reports.
        std::thread::spawn(move || {
            let mut status = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            child_exited(pid, libc::WEXITSTATUS(status));
        });
        assert_eq!(watch.wait(&mut child, None), Ended::Code(7));
    }

    #[test]
    fn a_child_still_running_at_the_deadline() {
        let watch = ExitWatch::open();
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let at = Instant::now() + Duration::from_millis(100);
        assert_eq!(watch.wait(&mut child, Some(at)), Ended::Running);
        assert_eq!(watch.wait_or_kill(&mut child, Some(at)), None);
        assert!(child.try_wait().unwrap().is_some(), "killed and reaped");
    }
}
