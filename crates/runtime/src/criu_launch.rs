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

/// What rust-criu runs when the launcher is on: paths the kernel resolves,
/// in the child, to the shim's own binary. Which one rust-criu ran tells
/// the launcher which options to give CRIU on its command line: rust-criu
/// has no setter for the RPC's `track_mem` or `network_lock`, and CRIU
/// keeps command-line options in swrk mode unless the request sets them.
const VARIANTS: [(&str, Extra); 4] = [
    ("/proc/self/exe", Extra::NONE),
    ("/proc/thread-self/exe", Extra::TRACK_MEM),
    ("/proc/self/root/proc/self/exe", Extra::NO_NETWORK_LOCK),
    ("/proc/thread-self/root/proc/self/exe", Extra::BOTH),
];
const SELF_EXE: &str = VARIANTS[0].0;
const SWRK: &str = "swrk";

/// CRIU options a request needs beyond what rust-criu can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Extra {
    /// `--track-mem`: a dump after pre-dumps takes only changed pages.
    pub track_mem: bool,
    /// `--network-lock skip`: see [`crate::dump::needs_network_lock`].
    pub skip_network_lock: bool,
}

impl Extra {
    const NONE: Extra = Extra::new(false, false);
    const TRACK_MEM: Extra = Extra::new(true, false);
    const NO_NETWORK_LOCK: Extra = Extra::new(false, true);
    const BOTH: Extra = Extra::new(true, true);

    const fn new(track_mem: bool, skip_network_lock: bool) -> Extra {
        Extra {
            track_mem,
            skip_network_lock,
        }
    }

    /// The options as CRIU's command line spells them.
    pub(crate) fn args(self) -> Vec<&'static str> {
        let mut args = Vec::new();
        if self.track_mem {
            args.push("--track-mem");
        }
        if self.skip_network_lock {
            args.extend(["--network-lock", "skip"]);
        }
        args
    }
}

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
    args.len() == 3 && args[1] == SWRK && extra_of(&args[0]).is_some()
}

/// The options the path rust-criu ran stands for.
fn extra_of(argv0: &OsString) -> Option<Extra> {
    VARIANTS
        .iter()
        .find(|(path, _)| argv0 == path)
        .map(|(_, extra)| *extra)
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
    let extra = std::env::args_os()
        .next()
        .and_then(|a| extra_of(&a))
        .unwrap_or_default();
    let err = criu_command(extra, criu_args).exec();
    eprintln!("criu launcher: exec criu: {err}");
    std::process::exit(1);
}

/// The CRIU the launcher becomes: `extra` and rust-criu's arguments, marked
/// as this shim's (stray_criu.rs).
fn criu_command(extra: Extra, criu_args: &[OsString]) -> std::process::Command {
    let mut cmd = std::process::Command::new("criu");
    cmd.arg0("criu").args(extra.args()).args(criu_args);
    crate::stray_criu::mark(&mut cmd);
    cmd
}

/// A rust-criu client that starts CRIU through the launcher when the
/// binary enabled it ([`criu_launcher_main`]), else `criu` from PATH.
pub(crate) fn new_criu() -> Result<rust_criu::Criu, rust_criu::CriuError> {
    new_criu_with(Extra::NONE)
}

/// As [`new_criu`], with CRIU given `extra`. Without the launcher (unit
/// tests) plain CRIU: a dump after a pre-dump then takes every page and
/// the network is locked, which is correct, only slower.
pub(crate) fn new_criu_with(extra: Extra) -> Result<rust_criu::Criu, rust_criu::CriuError> {
    if !LAUNCHER.load(Ordering::SeqCst) {
        if extra != Extra::NONE {
            log::warn!("CRIU without the launcher: not adding {:?}", extra.args());
        }
        return rust_criu::Criu::new();
    }
    let (path, _) = VARIANTS
        .iter()
        .find(|(_, e)| *e == extra)
        .expect("every combination of extras has a path");
    rust_criu::Criu::new_with_criu_path(path.to_string())
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
        assert!(is_launch(&argv(&[
            "/proc/self/root/proc/self/exe",
            "swrk",
            "7"
        ])));
        for not in [
            &["containerd-shim-arch-v1", "swrk", "7"][..],
            &["/proc/self/exe", "swrk"],
            &["/proc/self/exe", "-namespace", "x"],
            &["/usr/bin/containerd-shim-arch-v1", "-id", "swrk", "start"],
        ] {
            assert!(!is_launch(&argv(not)), "{not:?}");
        }
    }

    #[test]
    fn every_combination_of_extras_has_its_own_path() {
        for track_mem in [false, true] {
            for skip_network_lock in [false, true] {
                let extra = Extra {
                    track_mem,
                    skip_network_lock,
                };
                let paths: Vec<_> = VARIANTS.iter().filter(|(_, e)| *e == extra).collect();
                assert_eq!(paths.len(), 1, "{extra:?}");
                assert_eq!(extra_of(&OsString::from(paths[0].0)), Some(extra));
            }
        }
        assert_eq!(
            Extra::BOTH.args(),
            ["--track-mem", "--network-lock", "skip"]
        );
    }

    #[test]
    fn the_launched_criu_is_marked_as_the_shims() {
        let cmd = criu_command(Extra::TRACK_MEM, &argv(&["swrk", "7"]));
        assert_eq!(
            cmd.get_args().collect::<Vec<_>>(),
            ["--track-mem", "swrk", "7"]
        );
        assert!(cmd
            .get_envs()
            .any(|(k, v)| k == crate::stray_criu::BUNDLE_ENV && v.is_some()));
    }

    #[test]
    fn every_launcher_path_is_this_binary() {
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        for (path, _) in VARIANTS {
            // Resolved here in the test's process, as in CRIU's launcher.
            assert_eq!(std::fs::canonicalize(path).unwrap(), me, "{path}");
        }
    }
}
