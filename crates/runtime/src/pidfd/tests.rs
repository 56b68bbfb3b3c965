use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};

use super::*;

fn sleeper() -> Child {
    Command::new("sleep").arg("30").spawn().unwrap()
}

#[test]
fn a_live_child_is_signalled_through_its_pidfd() {
    let mut child = sleeper();
    let p = ProcessRef::pin(child.id() as i32);
    assert!(p.pinned(), "this kernel has pidfds");
    p.signal(0).unwrap();
    p.signal(libc::SIGKILL).unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn a_reaped_child_is_never_signalled() {
    let mut child = sleeper();
    let p = ProcessRef::pin(child.id() as i32);
    child.kill().unwrap();
    child.wait().unwrap(); // reaped: its pid is free for anyone
    assert_eq!(p.signal(libc::SIGKILL), Err(Errno::ESRCH));
}

#[test]
fn a_process_that_is_not_a_child_is_never_signalled() {
    let p = ProcessRef::pin(1);
    assert!(!p.pinned());
    assert_eq!(p.signal(0), Err(Errno::ESRCH));
    assert_eq!(ProcessRef::gone(42).signal(0), Err(Errno::ESRCH));
}

/// The attack itself: the pid of a reaped process is given to a newcomer
/// (steered there with ns_last_pid, which needs root), and a signal meant
/// for the old process must not reach it. kill(2) by pid would kill it.
#[test]
fn a_reused_pid_is_never_signalled() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root (ns_last_pid): only the reaped case is checked");
        return;
    }
    for _ in 0..50 {
        let mut old = sleeper();
        let pid = old.id() as i32;
        let p = ProcessRef::pin(pid);
        old.kill().unwrap();
        old.wait().unwrap();
        // Other processes on the host fork too: try again if one of them
        // took the pid first.
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut newcomer = sleeper();
        if newcomer.id() as i32 != pid {
            newcomer.kill().unwrap();
            newcomer.wait().unwrap();
            continue;
        }
        assert_eq!(p.signal(libc::SIGKILL), Err(Errno::ESRCH));
        assert!(
            newcomer.try_wait().unwrap().is_none(),
            "the newcomer was killed"
        );
        newcomer.kill().unwrap();
        newcomer.wait().unwrap();
        return;
    }
    panic!("could not get a pid reused in 50 tries");
}
