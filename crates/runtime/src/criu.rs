//! Small things every CRIU request needs.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;

use crate::error::{Result, RuntimeError};

/// The installed CRIU's version, e.g. "4.1.1" (CRIU answers over its RPC,
/// which also proves it can run). Asked once per CRIU binary: the round
/// trip (two execs) cost every checkpoint and every restore about 5 ms,
/// and an upgraded CRIU is another file, so it is asked again.
pub fn criu_version() -> Result<String> {
    static KNOWN: VersionCache = VersionCache(Mutex::new(None));
    KNOWN.get(binary_id(), || {
        let mut criu = crate::criu_launch::new_criu().map_err(RuntimeError::CriuUnavailable)?;
        let v = criu
            .get_criu_version()
            .map_err(RuntimeError::CriuUnavailable)?;
        Ok(format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100))
    })
}

/// Which file `criu` is: device, inode, modification time.
type BinaryId = (u64, u64, i64, i64);

/// The version of the last CRIU binary asked.
struct VersionCache(Mutex<Option<(BinaryId, String)>>);

impl VersionCache {
    /// The version of the binary `id`: remembered, or asked (every time
    /// when the binary cannot be told).
    fn get(&self, id: Option<BinaryId>, ask: impl FnOnce() -> Result<String>) -> Result<String> {
        if let (Some(id), Some((known, v))) = (id, self.0.lock().unwrap().as_ref()) {
            if id == *known {
                return Ok(v.clone());
            }
        }
        let v = ask()?;
        if let Some(id) = id {
            *self.0.lock().unwrap() = Some((id, v.clone()));
        }
        Ok(v)
    }
}

fn binary_id() -> Option<BinaryId> {
    let m = std::fs::metadata(arch_host::cmd::find_in_path("criu")?).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))
}

/// CRIU's cgroup mode from containerd's CheckpointOptions spelling.
pub(crate) fn cg_mode(mode: &str) -> Result<rust_criu::CgMode> {
    Ok(match mode {
        "" | "soft" => rust_criu::CgMode::SOFT,
        "full" => rust_criu::CgMode::FULL,
        "strict" => rust_criu::CgMode::STRICT,
        "ignore" => rust_criu::CgMode::IGNORE,
        other => {
            return Err(RuntimeError::InvalidSpec(format!(
                "unknown cgroups mode {other:?}"
            )))
        }
    })
}

/// CRIU inherits the descriptors it passes on (inherit_fd), so they must
/// survive its exec; everywhere else they stay close-on-exec.
pub(crate) fn set_cloexec(fd: &OwnedFd, on: bool) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(flags))
        .map(|_| ())
        .map_err(|e| RuntimeError::io("setting FD_CLOEXEC around CRIU")(e.into()))
}

/// CRIU's command line (`criu pre-dump`, `criu dump --stream`) for the
/// runs rust-criu's RPC cannot make: it dies with the thread that starts
/// it (`PR_SET_PDEATHSIG`, as every CRIU the shim runs), carries the
/// shim's bundle for a dead shim's cleanup (stray_criu.rs) and inherits
/// `keep` (directories it gets as `/proc/self/fd/N`), which stay
/// close-on-exec in the shim so no other child inherits them.
pub(crate) fn criu_cli(criu: &std::path::Path, args: &[String], keep: Vec<RawFd>) -> Command {
    let mut cmd = Command::new(criu);
    cmd.args(args);
    crate::stray_criu::mark(&mut cmd);
    // SAFETY: prctl and fcntl on the child's own descriptors only,
    // async-signal-safe between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in &keep {
                if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_criu_command_line_is_marked_as_the_shims() {
        let cmd = super::criu_cli("criu".as_ref(), &["dump".into()], Vec::new());
        assert!(cmd
            .get_envs()
            .any(|(k, v)| k == crate::stray_criu::BUNDLE_ENV && v.is_some()));
    }

    #[test]
    fn containerds_cgroup_modes_map_to_criu() {
        assert!(super::cg_mode("").is_ok());
        assert!(super::cg_mode("strict").is_ok());
        assert!(super::cg_mode("bogus").is_err());
    }

    #[test]
    fn a_version_is_asked_once_per_binary() {
        use std::cell::Cell;
        let cache = super::VersionCache(std::sync::Mutex::new(None));
        let asked = Cell::new(0);
        let ask = |v: &'static str| {
            let asked = &asked;
            move || {
                asked.set(asked.get() + 1);
                Ok(v.to_string())
            }
        };
        let old = Some((1, 10, 100, 0));
        assert_eq!(cache.get(old, ask("4.1.1")).unwrap(), "4.1.1");
        assert_eq!(cache.get(old, ask("never")).unwrap(), "4.1.1");
        assert_eq!(asked.get(), 1);
        // Upgraded: another inode or time.
        let new = Some((1, 11, 200, 0));
        assert_eq!(cache.get(new, ask("4.2.1")).unwrap(), "4.2.1");
        assert_eq!(asked.get(), 2);
        // A binary that cannot be told is asked every time.
        cache.get(None, ask("4.2.1")).unwrap();
        cache.get(None, ask("4.2.1")).unwrap();
        assert_eq!(asked.get(), 4);
    }
}
