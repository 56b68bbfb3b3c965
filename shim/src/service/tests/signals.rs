//! Kill reaches the process the shim registered, never a later one that
//! got its pid after it was reaped.

use std::process::{Child, Command};

use containerd_shim::api;

use super::Rig;
use crate::error::ShimError;

fn sleeper() -> Child {
    Command::new("sleep").arg("30").spawn().unwrap()
}

/// Reaps `old` and starts a newcomer with its pid (steered with
/// ns_last_pid; other processes fork too, so it may take a few tries).
fn reuse(mut old: Child) -> Option<Child> {
    let pid = old.id();
    old.kill().unwrap();
    old.wait().unwrap();
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut c = sleeper();
        if c.id() == pid {
            return Some(c);
        }
        c.kill().unwrap();
        c.wait().unwrap();
    }
    None
}

#[test]
fn a_kill_after_the_pid_was_reaped_and_reused_reaches_nobody() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root (ns_last_pid)");
        return;
    }
    let r = Rig::new();
    let init = sleeper();
    let pid = init.id() as i32;
    {
        let mut s = r.runtime.script.lock().unwrap();
        s.create_pid = Some(pid);
        s.real_signals = true;
    }
    assert_eq!(r.create("c", None), pid as u32);
    r.start("c");
    // The init exits and is reaped; its exit is not yet reported (the
    // output still drains), and a newcomer gets its pid.
    let Some(mut newcomer) = reuse(init) else {
        panic!("could not get pid {pid} reused");
    };
    let err = r
        .service
        .kill(api::KillRequest {
            id: "c".into(),
            signal: libc::SIGKILL as u32,
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, ShimError::NotFound(_)), "{err:?}");
    let alive = newcomer.try_wait().unwrap().is_none();
    newcomer.kill().unwrap();
    newcomer.wait().unwrap();
    assert!(alive, "the newcomer with the reused pid was killed");
}
