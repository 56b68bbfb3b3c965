//! The threads the shim starts container processes from, which outlive them.
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
//!
//! An idle thread with no child left is free to end, and does at the next
//! job's end or request, but for one kept ready ([`prune`]): a burst of N
//! parallel execs would otherwise leave N threads (a stack and a few KiB
//! of RSS each) for the shim's life. One that still has a child stays,
//! whatever the count: its exit would signal that child.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, sync_channel, Sender};
use std::sync::Mutex;

use crate::namespaces::Home;

/// No parent thread could run the job.
#[derive(Debug, thiserror::Error)]
pub enum ParentThreadError {
    #[error("starting a parent thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the parent thread's job panicked")]
    Panicked,
}

type Job = Box<dyn FnOnce() + Send>;

enum Order {
    Run(Job),
    End,
}

/// A parent thread: its id (to read its children) and its orders.
struct Parent {
    tid: libc::pid_t,
    orders: Sender<Order>,
}

/// Parent threads waiting for a job. The shim has one ([`SHIM`]); tests
/// make their own so that other tests' jobs do not change their counts.
struct Pool {
    idle: Mutex<Vec<Parent>>,
}

static SHIM: Pool = Pool::new();

impl Pool {
    const fn new() -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Parent>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on one of the pool's threads, started if none is idle.
    fn run<T: Send + 'static>(
        &'static self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ParentThreadError> {
        let idle = {
            let mut idle = self.idle();
            prune(&mut idle);
            idle.pop()
        };
        let parent = match idle {
            Some(parent) => parent,
            None => self.spawn_parent()?,
        };
        run_on(&parent, f)
    }

    fn spawn_parent(&'static self) -> Result<Parent, ParentThreadError> {
        let (tx, rx) = channel::<Order>();
        let (ready_tx, ready_rx) = sync_channel(1);
        let own = tx.clone();
        std::thread::Builder::new()
            .name("process-parent".into())
            .spawn(move || {
                let home = match Home::of_this_thread() {
                    Ok(home) => {
                        let _ = ready_tx.send(Ok(gettid()));
                        home
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let me = Parent {
                    tid: gettid(),
                    orders: own,
                };
                // `me` keeps the channel open: recv() fails never.
                while let Ok(Order::Run(job)) = rx.recv() {
                    job();
                    if let Err(e) = home.enter() {
                        log::error!(
                            "a parent thread cannot return to the shim's namespaces \
                             ({e}); retiring it"
                        );
                        loop {
                            std::thread::park();
                        }
                    }
                    let mut idle = self.idle();
                    idle.push(me.clone());
                    prune(&mut idle);
                }
            })
            .map_err(ParentThreadError::Spawn)?;
        match ready_rx.recv() {
            Ok(Ok(tid)) => Ok(Parent { tid, orders: tx }),
            Ok(Err(e)) => Err(ParentThreadError::Spawn(e)),
            Err(_) => Err(ParentThreadError::Panicked),
        }
    }
}

impl Clone for Parent {
    fn clone(&self) -> Parent {
        Parent {
            tid: self.tid,
            orders: self.orders.clone(),
        }
    }
}

/// Ends the idle threads that have no child, but for one when no idle
/// thread has a child (the next request finds a thread ready). A thread
/// with a child stays: its exit would signal that child. An idle thread
/// gains no child, so what is read here holds until it runs a job.
fn prune(idle: &mut Vec<Parent>) {
    let (mut keep, mut free): (Vec<_>, Vec<_>) = idle.drain(..).partition(|p| has_children(p.tid));
    if keep.is_empty() {
        keep.extend(free.pop());
    }
    for parent in free {
        let _ = parent.orders.send(Order::End);
    }
    *idle = keep;
}

/// Whether the shim's thread `tid` has a child (a zombie counts). When
/// the kernel cannot say (no CONFIG_PROC_CHILDREN), assume it has.
fn has_children(tid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/children"))
        .map_or(true, |c| !c.trim().is_empty())
}

fn gettid() -> libc::pid_t {
    // SAFETY: no arguments, no memory.
    unsafe { libc::gettid() }
}

/// Runs `f` on a parent thread, and waits for it. `f` may move the thread
/// into other namespaces: it is moved back after.
pub(crate) fn run<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ParentThreadError> {
    SHIM.run(f)
}

fn run_on<T: Send + 'static>(
    parent: &Parent,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ParentThreadError> {
    let (done_tx, done_rx) = sync_channel(1);
    // A panic is caught: the thread must live on.
    let job: Job = Box::new(move || {
        let _ = done_tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    parent
        .orders
        .send(Order::Run(job))
        .map_err(|_| ParentThreadError::Panicked)?;
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

    /// A pool of the test's own, which no other test's jobs change.
    fn own_pool() -> &'static Pool {
        Box::leak(Box::new(Pool::new()))
    }

    fn thread_alive(tid: libc::pid_t) -> bool {
        std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
    }

    /// Runs `n` jobs at once on `pool` (a barrier holds each until all
    /// have a thread), each doing `job`; returns their threads' ids.
    fn parallel_jobs<T: Send + 'static>(
        pool: &'static Pool,
        n: usize,
        job: fn() -> T,
    ) -> Vec<(libc::pid_t, T)> {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let askers: Vec<_> = (0..n)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    pool.run(move || {
                        barrier.wait();
                        (gettid(), job())
                    })
                    .unwrap()
                })
            })
            .collect();
        askers.into_iter().map(|a| a.join().unwrap()).collect()
    }

    fn alive_after(tids: &[libc::pid_t], settle: Duration) -> usize {
        std::thread::sleep(settle);
        tids.iter().filter(|t| thread_alive(**t)).count()
    }

    fn tids_of<T>(ran: &[(libc::pid_t, T)]) -> Vec<libc::pid_t> {
        ran.iter().map(|(t, _)| *t).collect()
    }

    #[test]
    fn after_a_burst_one_idle_thread_without_children_stays() {
        let pool = own_pool();
        let tids = tids_of(&parallel_jobs(pool, 3, || ()));
        let distinct: std::collections::HashSet<_> = tids.iter().collect();
        assert_eq!(distinct.len(), 3, "three threads ran at once");
        assert_eq!(alive_after(&tids, Duration::from_millis(300)), 1);
        assert_eq!(pool.idle().len(), 1);
        // The one kept still works.
        assert_eq!(pool.run(|| 7).unwrap(), 7);
    }

    fn sleep(seconds: &str) -> Child {
        Command::new("sleep").arg(seconds).spawn().unwrap()
    }

    #[test]
    fn a_thread_whose_child_lives_stays_and_ends_once_the_child_is_gone() {
        let pool = own_pool();
        let ran = parallel_jobs(pool, 3, || sleep("30"));
        let tids = tids_of(&ran);
        assert_eq!(alive_after(&tids, Duration::from_millis(300)), 3);
        for (_, mut child) in ran {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Children gone (reaped): the next request prunes the idle ones.
        pool.run(|| ()).unwrap();
        assert_eq!(alive_after(&tids, Duration::from_millis(300)), 1);
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
        let parent = own_pool().spawn_parent().unwrap();
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
