//! Running a host tool (CRIU's CLI) with a deadline: `archctl check` and
//! the shim's soft-dirty probe ask the same binary the same way.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a probe may take before it counts as failed.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a finished process goes unnoticed.
const POLL: Duration = Duration::from_millis(20);

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

/// Run with a deadline; Ok((success, stdout+stderr)) or Err(reason). A
/// child reaped by someone else (the shim's SIGCHLD reaper waits for every
/// child) has no status to give: then it counts as failed, and callers that
/// can tell success from the output do so ([`run`]).
pub fn run_cmd(bin: &Path, args: &[&str]) -> Result<(bool, String), String> {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    let (status, out) = run(cmd, Some(CMD_TIMEOUT))?;
    Ok((status == Some(true), out))
}

/// Runs `cmd` (stdin from /dev/null) with an optional deadline and returns
/// whether it succeeded, None if its status was taken by another reaper
/// (ECHILD), and its stdout+stderr.
pub fn run(mut cmd: Command, deadline: Option<Duration>) -> Result<(Option<bool>, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Read while it runs: a full pipe would stop it. Each reader says when
    // its pipe closed: that is the process exiting, so the wait below wakes
    // then instead of at its next poll (a poll every 20 ms added 10 ms on
    // average to every CRIU dump, whose end a checkpoint waits for).
    let (closed_tx, closed) = mpsc::channel::<()>();
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        let closed_tx = closed_tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = closed_tx.send(());
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    drop(closed_tx);
    let start = Instant::now();
    let mut open_pipes = 2;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s.success()),
            Ok(None) if deadline.is_some_and(|d| start.elapsed() > d) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "timed out after {}s",
                    deadline.unwrap_or_default().as_secs()
                ));
            }
            Ok(None) if open_pipes > 0 => {
                // A descendant may hold the pipes past the exit: then this
                // still polls, every 20 ms.
                if closed.recv_timeout(POLL).is_ok() {
                    open_pipes -= 1;
                }
            }
            Ok(None) => {
                // Output closed: the exit is a moment away, or the process
                // closed its output and runs on (then back off to POLL).
                std::thread::sleep(pause);
                pause = (pause * 2).min(POLL);
            }
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => break None,
            Err(e) => return Err(e.to_string()),
        }
    };
    let mut text = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    text.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    Ok((status, text))
}

/// Whether this host's CRIU can stream its images (`--stream`, CRIU 3.16
/// and later): its usage lists the option.
pub fn criu_can_stream() -> bool {
    let Some(criu) = find_in_path("criu") else {
        return false;
    };
    let mut cmd = Command::new(criu);
    cmd.arg("--help");
    run(cmd, Some(Duration::from_secs(10))).is_ok_and(|(_, out)| out.contains("--stream"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_and_reports_status_and_output() {
        let sh = super::find_in_path("sh").expect("a shell");
        let (ok, out) = super::run_cmd(&sh, &["-c", "echo hi; exit 3"]).unwrap();
        assert!(!ok);
        assert_eq!(out.trim(), "hi");
        assert!(super::run_cmd(std::path::Path::new("/nonexistent"), &[]).is_err());
    }

    /// The wait wakes when the output closes, not at the next poll: twenty
    /// runs of `true` took 17–21 ms so, 335 ms polling every 20 ms.
    #[test]
    fn a_quick_exit_is_seen_at_once() {
        let t = super::find_in_path("true").expect("true");
        let started = std::time::Instant::now();
        for _ in 0..20 {
            assert!(super::run_cmd(&t, &[]).unwrap().0);
        }
        let took = started.elapsed();
        eprintln!("20 runs of true: {took:?}");
        assert!(took < super::POLL * 10, "{took:?}");
    }
}
