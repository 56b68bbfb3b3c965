//! Kill reaches the process the shim registered, never a later one that
//! got its pid after it was reaped.

use std::process::{Child, Command};

use arch_runtime::pid_reuse::Newcomer;
use containerd_shim::api;

use super::Rig;
use crate::error::ShimError;

fn sleeper() -> Child {
    Command::new("sleep").arg("30").spawn().unwrap()
}

#[test]
fn a_kill_after_the_pid_was_reaped_and_reused_reaches_nobody() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root (clone3 set_tid)");
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
    let newcomer = Newcomer::replacing(init);
    let err = r
        .service
        .kill(api::KillRequest {
            id: "c".into(),
            signal: libc::SIGKILL as u32,
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, ShimError::NotFound(_)), "{err:?}");
    assert!(
        newcomer.alive(),
        "the newcomer with the reused pid was killed"
    );
}
