//! Ending a CRIU worker. Not only a fault action: the runtime uses it after
//! any failed CRIU request (see arch-runtime's notify.rs).
//!
//! rust-criu runs `criu swrk` as a child of the *thread* that makes the
//! request, and a thread makes one request at a time, so the `criu`
//! children of the calling thread are exactly its request's worker. A shim
//! may run several requests at once (a stop-checkpoint beside a Checkpoint
//! RPC, or several containers' in tests): matching every `criu` child of
//! the process would end the others' workers too.

/// SIGKILLs the `criu` processes that the calling thread started (from
/// `/proc/thread-self/children`). Returns how many were killed.
pub fn kill_criu_of_this_thread() -> usize {
    let Ok(children) = std::fs::read_to_string("/proc/thread-self/children") else {
        return 0;
    };
    let mut killed = 0;
    for pid in children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        // A child stays listed until it is reaped, so the pid is still
        // this thread's child when it reads as one: no reuse is possible.
        if is_criu(pid) {
            // SAFETY: kill(2) of our own child.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    killed
}

fn is_criu(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "criu")
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};
    use std::sync::mpsc;

    /// A process whose name is `criu` (a copy of sleep), started by a
    /// thread of its own; the thread runs `then` and waits for `done`.
    fn criu_on_a_thread(
        bin: std::path::PathBuf,
        then: impl FnOnce() -> usize + Send + 'static,
    ) -> (mpsc::Receiver<(Child, usize)>, mpsc::Sender<()>) {
        let (tx, rx) = mpsc::channel();
        let (go_tx, go) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let child = Command::new(&bin).arg("30").spawn().unwrap();
            // Wait until it runs as `criu` (exec done).
            let comm = format!("/proc/{}/comm", child.id());
            for _ in 0..200 {
                if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim_end() == "criu") {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = go.recv();
            let n = then();
            tx.send((child, n)).unwrap();
            // Stay alive: a thread's children move to another thread when
            // it exits.
            std::thread::sleep(std::time::Duration::from_millis(500));
        });
        (rx, go_tx)
    }

    #[test]
    fn only_the_calling_threads_criu_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("criu");
        std::fs::copy("/bin/sleep", &bin).unwrap();
        let (mine, go_mine) = criu_on_a_thread(bin.clone(), super::kill_criu_of_this_thread);
        let (other, go_other) = criu_on_a_thread(bin, || 0);
        go_other.send(()).unwrap();
        let (mut other, _) = other.recv().unwrap();
        go_mine.send(()).unwrap();
        let (mut mine, n) = mine.recv().unwrap();
        assert_eq!(n, 1, "the thread's own criu is killed");
        let status = mine.wait().unwrap();
        assert!(!status.success(), "killed: {status:?}");
        assert!(
            other.try_wait().unwrap().is_none(),
            "another thread's criu must keep running"
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
