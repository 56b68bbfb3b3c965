use std::cell::RefCell;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};

use super::*;

fn sleeper() -> Child {
    Command::new("sleep").arg("30").spawn().unwrap()
}

/// A cgroup made of chosen children; records what the kill did to it.
struct Fake {
    pids: Vec<i32>,
    members: Vec<i32>,
    has_kill_file: bool,
    log: RefCell<Vec<String>>,
}

impl Fake {
    fn new(pids: Vec<i32>, members: Vec<i32>) -> Self {
        Fake {
            pids,
            members,
            has_kill_file: false,
            log: RefCell::default(),
        }
    }
}

impl Members for Fake {
    fn kill_file(&self) -> std::io::Result<bool> {
        self.log.borrow_mut().push("kill-file".into());
        Ok(self.has_kill_file)
    }
    fn freeze(&self, frozen: bool) -> Result<()> {
        self.log.borrow_mut().push(format!("frozen={frozen}"));
        Ok(())
    }
    fn pids(&self) -> Result<Vec<i32>> {
        self.log.borrow_mut().push("pids".into());
        Ok(self.pids.clone())
    }
    fn holds(&self, pid: i32) -> bool {
        self.members.contains(&pid)
    }
}

#[test]
fn every_member_is_signalled_inside_a_freeze() {
    let (mut a, mut b) = (sleeper(), sleeper());
    let pids = vec![a.id() as i32, b.id() as i32];
    let cg = Fake::new(pids.clone(), pids);
    signal_all(&cg, libc::SIGTERM).unwrap();
    assert_eq!(a.wait().unwrap().signal(), Some(libc::SIGTERM));
    assert_eq!(b.wait().unwrap().signal(), Some(libc::SIGTERM));
    assert_eq!(*cg.log.borrow(), ["frozen=true", "pids", "frozen=false"]);
}

/// A pid listed by the cgroup but whose holder is no longer in it (the
/// listed process was reaped and its pid given to a stranger) is left be.
#[test]
fn a_pid_that_left_the_cgroup_is_not_signalled() {
    let (mut member, mut stranger) = (sleeper(), sleeper());
    let cg = Fake::new(
        vec![member.id() as i32, stranger.id() as i32],
        vec![member.id() as i32],
    );
    signal_all(&cg, libc::SIGKILL).unwrap();
    assert_eq!(member.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(stranger.try_wait().unwrap().is_none(), "the stranger lives");
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn sigkill_uses_the_kill_file_where_there_is_one() {
    let mut child = sleeper();
    let pid = child.id() as i32;
    let mut cg = Fake::new(vec![pid], vec![pid]);
    cg.has_kill_file = true;
    signal_all(&cg, libc::SIGKILL).unwrap();
    assert_eq!(*cg.log.borrow(), ["kill-file"], "no pid was read");
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn other_signals_never_use_the_kill_file() {
    let mut child = sleeper();
    let pid = child.id() as i32;
    let mut cg = Fake::new(vec![pid], vec![pid]);
    cg.has_kill_file = true;
    signal_all(&cg, libc::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    assert!(!cg.log.borrow().contains(&"kill-file".to_string()));
}

#[test]
fn a_pid_already_gone_is_no_error() {
    let mut child = sleeper();
    let pid = child.id() as i32;
    child.kill().unwrap();
    child.wait().unwrap();
    signal_all(&Fake::new(vec![pid], vec![pid]), libc::SIGKILL).unwrap();
}

#[test]
fn membership_is_read_per_component_in_any_hierarchy() {
    let v1 = "12:pids:/arch-test/c1\n7:freezer:/arch-test/c1\n0::/\n";
    assert!(lists_cgroup(v1, Path::new("arch-test/c1")));
    assert!(!lists_cgroup(v1, Path::new("arch-test/c")));
    let v2 = "0::/system.slice/arch-c1.scope/sub\n";
    assert!(lists_cgroup(v2, Path::new("system.slice/arch-c1.scope")));
    assert!(!lists_cgroup(v2, Path::new("system.slice/arch-c2.scope")));
    assert!(!lists_cgroup("", Path::new("a")));
}
