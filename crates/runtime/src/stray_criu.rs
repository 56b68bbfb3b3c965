//! CRIU workers a dead shim left behind. The CRIU the shim starts dies
//! with it (`PR_SET_PDEATHSIG`), but the children CRIU forks while it
//! works (same name, no such request) are reparented to PID 1. One was
//! found stopped for good in CI after its shim was SIGKILLed mid-dump.
//!
//! So every CRIU the shim starts, over RPC (`criu swrk`, through the
//! launcher) or by its command line (a streamed dump, a pre-dump), carries
//! the shim's bundle in its environment ([`mark`]), and so does every
//! process it forks. The delete action containerd runs for a dead shim
//! ends each `criu` that carries that bundle.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pidfd::{pidfd_open, pidfd_send_signal};

/// The variable that names the bundle a CRIU works for.
pub(crate) const BUNDLE_ENV: &str = "ARCH_CRIU_BUNDLE";

/// Marks `cmd`, a CRIU about to start, as this shim's. The shim runs in its
/// bundle: containerd starts it there, and the delete action takes its
/// bundle from the same place.
pub(crate) fn mark(cmd: &mut Command) {
    match std::env::current_dir() {
        Ok(bundle) => {
            cmd.env(BUNDLE_ENV, bundle);
        }
        Err(e) => log::warn!("CRIU left unmarked: no working directory: {e}"),
    }
}

/// SIGKILLs the CRIU processes working on the container of `bundle`; their
/// pids. Each is pinned with a pidfd before it is checked, so a pid reused
/// meanwhile is never signalled.
pub fn kill_stray_criu(bundle: &Path) -> Vec<i32> {
    let proc_root = Path::new("/proc");
    // Marked with the kernel's spelling of the path (a working directory).
    let bundle = std::fs::canonicalize(bundle).unwrap_or_else(|_| bundle.to_path_buf());
    let mut killed = Vec::new();
    for pid in pids(proc_root) {
        if !is_criu_of(proc_root, pid, &bundle) {
            continue;
        }
        // Checked again once pinned: the pid may have changed hands.
        let Ok(pidfd) = pidfd_open(pid) else {
            continue;
        };
        if is_criu_of(proc_root, pid, &bundle) && pidfd_send_signal(&pidfd, libc::SIGKILL).is_ok() {
            killed.push(pid);
        }
    }
    killed
}

fn pids(proc_root: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether `pid` is a `criu` marked with `bundle`.
fn is_criu_of(proc_root: &Path, pid: i32, bundle: &Path) -> bool {
    let dir = proc_root.join(pid.to_string());
    let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
    if comm.trim_end() != "criu" {
        return false;
    }
    let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
    marked_bundle(&environ).is_some_and(|marked| marked == bundle)
}

/// The bundle an `environ` (NUL-separated `NAME=value`) is marked with.
fn marked_bundle(environ: &[u8]) -> Option<PathBuf> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let value = entry
            .strip_prefix(BUNDLE_ENV.as_bytes())?
            .strip_prefix(b"=")?;
        Some(PathBuf::from(OsStr::from_bytes(value)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Stdio;

    fn fake(proc_root: &Path, pid: i32, comm: &str, env: &[&str]) {
        let dir = proc_root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        let mut environ = Vec::new();
        for e in env {
            environ.extend_from_slice(e.as_bytes());
            environ.push(0);
        }
        std::fs::write(dir.join("environ"), environ).unwrap();
    }

    #[test]
    fn only_a_criu_marked_with_the_bundle_is_its() {
        let p = tempfile::tempdir().unwrap();
        let bundle = Path::new("/run/ctd/ns/c1");
        fake(
            p.path(),
            10,
            "criu",
            &["A=1", "ARCH_CRIU_BUNDLE=/run/ctd/ns/c1"],
        );
        fake(p.path(), 11, "criu", &["ARCH_CRIU_BUNDLE=/run/ctd/ns/c10"]);
        fake(
            p.path(),
            12,
            "criu",
            &["ARCH_CRIU_BUNDLE=/run/ctd/ns/c1/rootfs"],
        );
        fake(p.path(), 13, "sh", &["ARCH_CRIU_BUNDLE=/run/ctd/ns/c1"]);
        fake(p.path(), 14, "criu", &["XARCH_CRIU_BUNDLE=/run/ctd/ns/c1"]);
        fake(p.path(), 15, "criu", &[]);
        let mine: Vec<i32> = pids(p.path())
            .into_iter()
            .filter(|pid| is_criu_of(p.path(), *pid, bundle))
            .collect();
        assert_eq!(mine, [10]);
    }

    #[test]
    fn a_marked_command_names_the_working_directory() {
        let mut cmd = Command::new("criu");
        mark(&mut cmd);
        let marked: Vec<_> = cmd
            .get_envs()
            .filter(|(k, _)| *k == BUNDLE_ENV)
            .map(|(_, v)| v.map(PathBuf::from))
            .collect();
        assert_eq!(marked, [Some(std::env::current_dir().unwrap())]);
    }

    /// Real processes named `criu` (copies of sh, waiting on their stdin),
    /// as CRIU and a child it forked would be: the one marked with the
    /// bundle is killed, one marked with another bundle is not.
    #[test]
    fn a_stray_criu_of_the_bundle_is_killed() {
        let tmp = tempfile::tempdir().unwrap();
        let criu = tmp.path().join("criu");
        std::fs::copy("/bin/sh", &criu).unwrap();
        let bundle = tmp.path().join("bundle");
        let other = tmp.path().join("other");
        for b in [&bundle, &other] {
            std::fs::create_dir(b).unwrap();
        }
        let start = |b: &Path| {
            let mut cmd = Command::new(&criu);
            cmd.args(["-c", "read x"])
                .current_dir(b)
                .stdin(Stdio::piped());
            // Marked as the shim marks CRIU: from the working directory.
            cmd.env(BUNDLE_ENV, b);
            cmd.spawn().unwrap()
        };
        let (mut mine, mut theirs) = (start(&bundle), start(&other));
        let seen = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            is_criu_of(Path::new("/proc"), mine.id() as i32, &bundle)
        });
        assert!(seen, "the fake criu never showed its environment");
        assert_eq!(kill_stray_criu(&bundle), [mine.id() as i32]);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(mine.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(
            theirs.try_wait().unwrap().is_none(),
            "another bundle's criu"
        );
        theirs.stdin.take().unwrap().write_all(b"\n").unwrap();
        theirs.wait().unwrap();
    }
}
