//! The threads the shim starts container processes from, which never exit.
//!
//! A process the shim starts is the child of the *thread* that started it,
//! and the kernel sends a process its parent-death signal
//! (`PR_SET_PDEATHSIG`: `tini -p`, `setpriv --pdeathsig`, a supervisor that
//! must not outlive its parent) when that thread exits, though the shim
//! lives on. Two kinds are born that way: a container's init and its exec'd
//! processes (libcontainer builds them "as siblings" of the spawn helper,
//! so their parent is the thread that ran the helper), and a restored init
//! (CRIU's `rst_sibling` forks it with `CLONE_PARENT`, and CRIU gives it
//! back the parent-death signal it had). Run from a ttrpc worker, which
//! quits when more than its pool's maximum are idle or when containerd's
//! connection closes, such an init was killed at some later request (seen
//! in e2e: a fresh `setpriv --pdeathsig` init SIGKILLed as an unrelated
//! exec ended); run from the short-lived thread a namespace restore used,
//! at once. runc-v2's inits are orphaned to the shim's main thread instead.
//!
//! So the helper and CRIU's restores run on one of these threads: one per
//! request in flight, kept idle in between, and put back into the shim's
//! own namespaces after each job (a restore enters a pod's, or a new
//! network namespace). One that cannot go back is retired: it parks
//! forever, since processes it started may still be its children.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, sync_channel, Sender};
use std::sync::Mutex;

/// No parent thread could run the job.
#[derive(Debug, thiserror::Error)]
pub enum ParentThreadError {
    #[error("starting a parent thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the parent thread's job panicked")]
    Panicked,
}

type Job = Box<dyn FnOnce() + Send>;

/// Parent threads waiting for a job.
static IDLE: Mutex<Vec<Sender<Job>>> = Mutex::new(Vec::new());

/// The namespaces a thread can leave and come back to (as
/// `namespaces::KINDS`), opened when the thread starts.
struct Home(Vec<(libc::c_int, File)>);

impl Home {
    fn open() -> std::io::Result<Home> {
        let kinds = [
            ("ipc", libc::CLONE_NEWIPC),
            ("uts", libc::CLONE_NEWUTS),
            ("net", libc::CLONE_NEWNET),
        ];
        kinds
            .iter()
            .map(|(name, flag)| Ok((*flag, File::open(format!("/proc/thread-self/ns/{name}"))?)))
            .collect::<std::io::Result<_>>()
            .map(Home)
    }

    fn go_back(&self) -> std::io::Result<()> {
        for (flag, file) in &self.0 {
            // SAFETY: a valid namespace fd; affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), *flag) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

fn spawn_parent() -> Result<Sender<Job>, ParentThreadError> {
    let (tx, rx) = channel::<Job>();
    let (ready_tx, ready_rx) = sync_channel(1);
    let own = tx.clone();
    std::thread::Builder::new()
        .name("process-parent".into())
        .spawn(move || {
            let home = match Home::open() {
                Ok(home) => {
                    let _ = ready_tx.send(Ok(()));
                    home
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            // `own` keeps the channel open: recv() fails never.
            while let Ok(job) = rx.recv() {
                job();
                if let Err(e) = home.go_back() {
                    log::error!(
                        "a parent thread cannot return to the shim's namespaces ({e}); retiring it"
                    );
                    loop {
                        std::thread::park();
                    }
                }
                IDLE.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(own.clone());
            }
        })
        .map_err(ParentThreadError::Spawn)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(tx),
        Ok(Err(e)) => Err(ParentThreadError::Spawn(e)),
        Err(_) => Err(ParentThreadError::Panicked),
    }
}

/// Runs `f` on a parent thread, and waits for it. `f` may move the thread
/// into other namespaces: it is moved back after.
pub(crate) fn run<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ParentThreadError> {
    let idle = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let parent = match idle {
        Some(parent) => parent,
        None => spawn_parent()?,
    };
    run_on(&parent, f)
}

fn run_on<T: Send + 'static>(
    parent: &Sender<Job>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ParentThreadError> {
    let (done_tx, done_rx) = sync_channel(1);
    // A panic is caught: the thread must live on.
    let job: Job = Box::new(move || {
        let _ = done_tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    parent.send(job).map_err(|_| ParentThreadError::Panicked)?;
    match done_rx.recv() {
        Ok(Ok(value)) => Ok(value),
        _ => Err(ParentThreadError::Panicked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};
    use std::time::Duration;

    /// A `sleep` whose parent-death signal is SIGKILL, started from the
    /// calling thread.
    fn orphanable_sleep() -> Child {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        // SAFETY: prctl only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    fn alive_after_its_starter_ended(start: impl FnOnce() -> Child + Send + 'static) -> bool {
        let mut child = std::thread::spawn(start).join().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let alive = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        alive
    }

    #[test]
    fn a_child_started_on_a_parent_thread_outlives_the_thread_that_asked() {
        // The failure this module exists for: the starting thread ends.
        assert!(!alive_after_its_starter_ended(orphanable_sleep));
        assert!(alive_after_its_starter_ended(
            || run(orphanable_sleep).unwrap()
        ));
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_thread_lives_on() {
        let r = run(|| -> i32 { panic!("job") });
        assert!(matches!(r, Err(ParentThreadError::Panicked)), "{r:?}");
        assert_eq!(run(|| 7).unwrap(), 7);
    }

    fn uts_ns(path: &str) -> std::path::PathBuf {
        std::fs::read_link(path).unwrap()
    }

    /// Root only (a new UTS namespace); CI runs as root and fails here if not.
    #[test]
    fn a_job_that_moved_its_thread_leaves_it_at_home() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root (CI runs as root)"
        );
        let shim = uts_ns("/proc/self/ns/uts");
        let parent = spawn_parent().unwrap();
        let moved = run_on(&parent, || {
            // SAFETY: moves only this thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWUTS) }, 0);
            uts_ns("/proc/thread-self/ns/uts")
        })
        .unwrap();
        assert_ne!(moved, shim, "the job ran in a new namespace");
        let next = run_on(&parent, || uts_ns("/proc/thread-self/ns/uts")).unwrap();
        assert_eq!(next, shim, "the same thread's next job");
    }
}
