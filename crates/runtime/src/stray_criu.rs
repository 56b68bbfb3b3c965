//! CRIU workers a dead shim left behind. The CRIU the shim starts dies
//! with it (`PR_SET_PDEATHSIG`), but the children CRIU forks while it
//! dumps (same command line, no such request) are reparented to PID 1. One
//! was found stopped for good in CI after its shim was SIGKILLed mid-dump.
//! So the delete action containerd runs for a dead shim ends every `criu`
//! whose `--root` lies in the container's bundle: the streamed dump's
//! command line names it. (A CRIU over RPC, `criu swrk N`, names nothing;
//! its children are not found this way.)

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::pidfd::{pidfd_open, pidfd_send_signal};

/// SIGKILLs the CRIU processes working on the container of `bundle`; their
/// pids. Each is pinned with a pidfd before it is checked, so a pid reused
/// meanwhile is never signalled.
pub fn kill_stray_criu(bundle: &Path) -> Vec<i32> {
    let proc_root = Path::new("/proc");
    let mut killed = Vec::new();
    for pid in pids(proc_root) {
        if !is_criu_of(proc_root, pid, bundle) {
            continue;
        }
        // Checked again once pinned: the pid may have changed hands.
        let Ok(pidfd) = pidfd_open(pid) else {
            continue;
        };
        if is_criu_of(proc_root, pid, bundle) && pidfd_send_signal(&pidfd, libc::SIGKILL).is_ok() {
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

/// Whether `pid` is a `criu` whose `--root` is under `bundle`.
fn is_criu_of(proc_root: &Path, pid: i32, bundle: &Path) -> bool {
    let dir = proc_root.join(pid.to_string());
    let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
    if comm.trim_end() != "criu" {
        return false;
    }
    let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == b"--root" && Path::new(OsStr::from_bytes(w[1])).starts_with(bundle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn fake(proc_root: &Path, pid: i32, comm: &str, args: &[&str]) {
        let dir = proc_root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        let mut cmdline = Vec::new();
        for a in args {
            cmdline.extend_from_slice(a.as_bytes());
            cmdline.push(0);
        }
        std::fs::write(dir.join("cmdline"), cmdline).unwrap();
    }

    #[test]
    fn only_a_criu_rooted_in_the_bundle_is_its() {
        let p = tempfile::tempdir().unwrap();
        let bundle = Path::new("/run/ctd/ns/c1");
        fake(
            p.path(),
            10,
            "criu",
            &["criu", "dump", "--root", "/run/ctd/ns/c1/rootfs"],
        );
        fake(
            p.path(),
            11,
            "criu",
            &["criu", "dump", "--root", "/run/ctd/ns/c10/rootfs"],
        );
        fake(
            p.path(),
            12,
            "sh",
            &["sh", "--root", "/run/ctd/ns/c1/rootfs"],
        );
        fake(p.path(), 13, "criu", &["criu", "swrk", "3"]);
        let mine: Vec<i32> = pids(p.path())
            .into_iter()
            .filter(|pid| is_criu_of(p.path(), *pid, bundle))
            .collect();
        assert_eq!(mine, [10]);
    }

    /// A real process named `criu` (a copy of sh, waiting on its stdin)
    /// with `--root` in a bundle is killed; the same for another bundle
    /// is not.
    #[test]
    fn a_stray_criu_of_the_bundle_is_killed() {
        let tmp = tempfile::tempdir().unwrap();
        let criu = tmp.path().join("criu");
        std::fs::copy("/bin/sh", &criu).unwrap();
        let bundle = tmp.path().join("bundle");
        let other = tmp.path().join("other");
        let start = |b: &Path| {
            Command::new(&criu)
                .args(["-c", "read x", "--root"])
                .arg(b.join("rootfs"))
                .stdin(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (mut mine, mut theirs) = (start(&bundle), start(&other));
        let seen = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            is_criu_of(Path::new("/proc"), mine.id() as i32, &bundle)
        });
        assert!(seen, "the fake criu never showed its command line");
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
