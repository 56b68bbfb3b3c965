//! Running a host tool (CRIU's CLI) with a deadline: `archctl check` and
//! the shim's soft-dirty probe ask the same binary the same way.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Run with a deadline; Ok((success, stdout+stderr)) or Err(reason).
pub fn run_cmd(bin: &Path, args: &[&str]) -> Result<(bool, String), String> {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > CMD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {}s", CMD_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
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
}
