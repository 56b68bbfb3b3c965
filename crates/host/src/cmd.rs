//! Running a host tool (CRIU's CLI) with a deadline: `archctl check` and
//! the shim's soft-dirty probe ask the same binary the same way.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child_exits::ExitWatch;

/// How long a probe may take before it counts as failed.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// `name` in PATH, then in the sbin directories a root tool lives in
/// (containerd's environment often lacks them).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// A host tool that could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("starting {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error("{bin} timed out after {after:?}")]
    TimedOut { bin: String, after: Duration },
}

/// How a tool ended, with what it said.
#[derive(Debug)]
pub struct Ran {
    /// Its exit code, or 128 + the signal that ended it.
    pub code: i32,
    /// Its stdout, then its stderr.
    pub output: String,
}

impl Ran {
    pub fn succeeded(&self) -> bool {
        self.code == 0
    }
}

/// Runs `bin args` with [`CMD_TIMEOUT`].
pub fn run_cmd(bin: &Path, args: &[&str]) -> Result<Ran, CmdError> {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    run(cmd, Some(CMD_TIMEOUT))
}

/// Runs `cmd` (stdin from /dev/null) with an optional deadline. Its status
/// is known even when the shim's reaper takes it first (child_exits.rs).
pub fn run(mut cmd: Command, deadline: Option<Duration>) -> Result<Ran, CmdError> {
    let bin = cmd.get_program().to_string_lossy().into_owned();
    let watch = ExitWatch::open();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CmdError::Spawn {
            bin: bin.clone(),
            source,
        })?;
    // Read while it runs: a full pipe would stop it.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as _));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as _));
    let Some(code) = watch.wait_or_kill(&mut child, deadline.map(|d| Instant::now() + d)) else {
        return Err(CmdError::TimedOut {
            bin,
            after: deadline.unwrap_or_default(),
        });
    };
    let mut output = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    Ok(Ran { code, output })
}

/// Whether this host's CRIU can stream its images (`--stream`, CRIU 3.16
/// and later): its usage lists the option.
pub fn criu_can_stream() -> bool {
    let Some(criu) = find_in_path("criu") else {
        return false;
    };
    let mut cmd = Command::new(criu);
    cmd.arg("--help");
    run(cmd, Some(Duration::from_secs(10))).is_ok_and(|ran| ran.output.contains("--stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_reports_code_and_output() {
        let sh = find_in_path("sh").expect("a shell");
        let ran = run_cmd(&sh, &["-c", "echo hi; echo there >&2; exit 3"]).unwrap();
        assert_eq!(ran.code, 3);
        assert!(!ran.succeeded());
        assert_eq!(ran.output, "hi\nthere\n");
        let e = run_cmd(Path::new("/nonexistent"), &[]).unwrap_err();
        assert!(matches!(e, CmdError::Spawn { .. }), "{e}");
    }

    #[test]
    fn a_tool_past_its_deadline_is_killed_and_named() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        let started = Instant::now();
        let e = run(cmd, Some(Duration::from_millis(100))).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(e.to_string(), "sleep timed out after 100ms");
    }

    /// A quick exit is seen within a few ms: twenty runs of `true` took
    /// about 20 ms; polling every 20 ms they took 335 ms. The fastest run is
    /// judged, so a loaded machine's slow runs (CI's parallel tests) do not
    /// fail it while a poll would.
    #[test]
    fn a_quick_exit_is_seen_at_once() {
        let t = find_in_path("true").expect("true");
        let fastest = (0..20)
            .map(|_| {
                let started = Instant::now();
                assert!(run_cmd(&t, &[]).unwrap().succeeded());
                started.elapsed()
            })
            .min()
            .expect("twenty runs");
        eprintln!("fastest of 20 runs of true: {fastest:?}");
        assert!(fastest < Duration::from_millis(10), "{fastest:?}");
    }
}
