use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};

use super::*;
use crate::pid_reuse::Newcomer;

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
/// (with clone3's set_tid, which needs root), and a signal meant for the
/// old process must not reach it. kill(2) by pid would kill it.
#[test]
fn a_reused_pid_is_never_signalled() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root (clone3 set_tid): only the reaped case is checked");
        return;
    }
    let old = sleeper();
    let p = ProcessRef::pin(old.id() as i32);
    let newcomer = Newcomer::replacing(old);
    assert_eq!(p.signal(libc::SIGKILL), Err(Errno::ESRCH));
    assert!(newcomer.alive(), "the newcomer was killed");
}
