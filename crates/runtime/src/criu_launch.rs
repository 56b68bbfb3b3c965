//! CRIU never outlives the shim. rust-criu spawns `criu swrk <fd>` itself,
//! and CRIU keeps its own copy of the shim's end of the RPC socket, so a
//! shim that dies mid-request (crash, OOM kill, SIGKILL) leaves CRIU
//! waiting for ever: reparented to PID 1, still holding the container's
//! tasks seized. Their exits are then reported to CRIU (their tracer),
//! which never waits, so the container's init hangs in its pid namespace's
//! teardown (`zap_pid_ns_processes`) for good.
//!
//! So rust-criu is pointed at the shim's own binary (`/proc/self/exe`),
//! which, run as `/proc/self/exe swrk <fd>`, asks for SIGKILL when its
//! parent thread dies (`PR_SET_PDEATHSIG`, kept across the exec) and execs
//! the real `criu` with the same arguments. The kernel then ends CRIU with
//! the shim, CRIU's tracees are released, and the pid namespace can die.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// What rust-criu runs when the launcher is on: resolved by the kernel in
/// the child, where it is still the shim's binary.
const SELF_EXE: &str = "/proc/self/exe";
/// The same binary under another name, which asks the launcher for CRIU
/// with `--track-mem`: rust-criu has no setter for the RPC's `track_mem`,
/// and CRIU keeps command-line options in swrk mode unless the request
/// sets them.
const TRACK_MEM_EXE: &str = "/proc/thread-self/exe";
const SWRK: &str = "swrk";

static LAUNCHER: AtomicBool = AtomicBool::new(false);

/// Call first thing in `main` of a binary that makes CRIU requests: run as
/// CRIU's launcher, this never returns (it becomes CRIU); otherwise it
/// makes every later CRIU request go through the launcher.
pub fn criu_launcher_main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if is_launch(&args) {
        launch(&args[1..]);
    }
    LAUNCHER.store(true, Ordering::SeqCst);
}

/// Whether `args` (argv) is rust-criu starting CRIU through the launcher.
fn is_launch(args: &[OsString]) -> bool {
    args.len() == 3 && (args[0] == SELF_EXE || args[0] == TRACK_MEM_EXE) && args[1] == SWRK
}

fn launch(criu_args: &[OsString]) -> ! {
    // SAFETY: prctl on this process only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        eprintln!(
            "criu launcher: PR_SET_PDEATHSIG: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
    // The parent may have died before the request above: then it is not
    // the binary we are (we were reparented) and CRIU must not start.
    let ppid = std::os::unix::process::parent_id();
    let parent = std::fs::read_link(format!("/proc/{ppid}/exe")).ok();
    if parent.is_none() || parent != std::fs::read_link(SELF_EXE).ok() {
        eprintln!("criu launcher: the shim is gone");
        std::process::exit(1);
    }
    let track_mem = std::env::args_os()
        .next()
        .is_some_and(|a| a == TRACK_MEM_EXE);
    let err = std::process::Command::new("criu")
        .arg0("criu")
        .args(track_mem.then_some("--track-mem"))
        .args(criu_args)
        .exec();
    eprintln!("criu launcher: exec criu: {err}");
    std::process::exit(1);
}

/// A rust-criu client that starts CRIU through the launcher when the
/// binary enabled it ([`criu_launcher_main`]), else `criu` from PATH.
pub(crate) fn new_criu() -> Result<rust_criu::Criu, rust_criu::CriuError> {
    if LAUNCHER.load(Ordering::SeqCst) {
        rust_criu::Criu::new_with_criu_path(SELF_EXE.to_string())
    } else {
        rust_criu::Criu::new()
    }
}

/// As [`new_criu`], for a dump after a pre-dump: CRIU tracks memory
/// (`--track-mem`). Without the launcher (unit tests) plain CRIU, which
/// then dumps every page: correct, only not incremental.
pub(crate) fn new_criu_tracking_mem() -> Result<rust_criu::Criu, rust_criu::CriuError> {
    if LAUNCHER.load(Ordering::SeqCst) {
        rust_criu::Criu::new_with_criu_path(TRACK_MEM_EXE.to_string())
    } else {
        log::warn!("CRIU without the launcher: the dump after a pre-dump takes every page");
        rust_criu::Criu::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_rust_criu_through_the_launcher_is_a_launch() {
        assert!(is_launch(&argv(&["/proc/self/exe", "swrk", "7"])));
        assert!(is_launch(&argv(&["/proc/thread-self/exe", "swrk", "7"])));
        for not in [
            &["containerd-shim-arch-v1", "swrk", "7"][..],
            &["/proc/self/exe", "swrk"],
            &["/proc/self/exe", "-namespace", "x"],
            &["/usr/bin/containerd-shim-arch-v1", "-id", "swrk", "start"],
        ] {
            assert!(!is_launch(&argv(not)), "{not:?}");
        }
    }
}
