//! Looking at a container's processes before dumping them, to refuse early
//! and clearly what CRIU cannot checkpoint.

use std::path::PathBuf;

/// Read access to processes; the host's /proc in production.
pub trait ProcessView {
    /// What each open descriptor of `pid` points to (readlink of /proc/pid/fd/*).
    fn fd_targets(&self, pid: i32) -> std::io::Result<Vec<String>>;
}

pub struct HostProcs;

impl ProcessView for HostProcs {
    fn fd_targets(&self, pid: i32) -> std::io::Result<Vec<String>> {
        let dir = PathBuf::from(format!("/proc/{pid}/fd"));
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            // A descriptor closed meanwhile is not an error.
            if let Ok(target) = std::fs::read_link(entry?.path()) {
                out.push(target.to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }
}

/// Descriptor kinds CRIU 4.x cannot dump, with the reason users see.
pub fn unsupported_reason(target: &str) -> Option<&'static str> {
    const UNSUPPORTED: [(&str, &str); 4] = [
        ("anon_inode:[io_uring]", "an io_uring instance"),
        ("anon_inode:[perf_event]", "a perf event"),
        ("anon_inode:bpf-prog", "a BPF program"),
        ("anon_inode:[userfaultfd]", "a userfaultfd"),
    ];
    UNSUPPORTED
        .iter()
        .find(|(prefix, _)| target.starts_with(prefix))
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_unsupported_descriptors() {
        assert_eq!(
            unsupported_reason("anon_inode:[io_uring]"),
            Some("an io_uring instance")
        );
        assert_eq!(unsupported_reason("pipe:[1234]"), None);
        assert_eq!(unsupported_reason("/dev/null"), None);
    }

    #[test]
    fn reads_our_own_descriptors() {
        let fds = HostProcs.fd_targets(std::process::id() as i32).unwrap();
        assert!(!fds.is_empty());
    }
}
