//! OOM kills on cgroup v2: `memory.events` counts them (`oom_kill N`), and
//! the kernel raises a file-modified event on every change. Watching it
//! with inotify sees a kill at once, even when the container exits and its
//! cgroup goes right after (a polled read could miss it).

use std::path::{Path, PathBuf};

/// The `oom_kill` count of a `memory.events` text.
pub(crate) fn oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

fn read_count(events: &Path) -> Option<u64> {
    oom_kills(&std::fs::read_to_string(events).ok()?)
}

/// An inotify descriptor watching `path` for modification.
fn watch_modify(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: plain syscalls; the descriptor is owned by the File below.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    // SAFETY: c_path is a valid C string for the call's duration.
    if unsafe { libc::inotify_add_watch(fd, c_path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Calls `on_oom` for each new OOM kill counted in `events`; returns when
/// the cgroup is removed (the watch ends with IN_IGNORED, reads fail).
pub(crate) fn watch(events: PathBuf, on_oom: impl Fn()) -> std::io::Result<()> {
    use std::io::Read;
    let mut inotify = watch_modify(&events)?;
    let mut seen = read_count(&events).unwrap_or(0);
    let mut buf = [0u8; 4096];
    loop {
        let n = inotify.read(&mut buf)?;
        if let Some(count) = read_count(&events) {
            if count > seen {
                seen = count;
                on_oom();
            }
        }
        if n == 0 || ignored(&buf[..n]) {
            return Ok(());
        }
    }
}

/// Whether a batch of inotify events holds IN_IGNORED (the watch is gone).
fn ignored(mut events: &[u8]) -> bool {
    let header = std::mem::size_of::<libc::inotify_event>();
    while events.len() >= header {
        // SAFETY: at least one header's bytes; read_unaligned copes with
        // the buffer's alignment.
        let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(events.as_ptr().cast()) };
        if ev.mask & libc::IN_IGNORED != 0 {
            return true;
        }
        events = &events[(header + ev.len as usize).min(events.len())..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_oom_kills_only() {
        let text = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kills(text), Some(2));
        assert_eq!(oom_kills("low 0\n"), None);
    }

    #[test]
    fn a_modified_file_wakes_the_watch() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "oom 0\noom_kill 0\n").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = events.clone();
        std::thread::spawn(move || {
            let _ = watch(path, move || tx.send(()).unwrap());
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::write(&events, "oom 1\noom_kill 1\n").unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("the kill is seen");
    }
}
