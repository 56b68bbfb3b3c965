//! The streamer's socket in CRIU's images directory, and waits on it that
//! can be given up: CRIU may die before it connects, or keep the
//! connection open in a leaked copy.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Result, StreamError};

/// How often a wait looks at its stop flag.
const TICK_MS: i32 = 50;
/// How long the connection may stay open once the caller said CRIU exited.
pub const GRACE: Duration = Duration::from_secs(5);

pub struct Socket {
    pub listener: UnixListener,
    pub path: PathBuf,
}

impl Socket {
    /// Binds `dir/name`, 0600. A stale socket of an earlier run is
    /// replaced; any other file under the name is left alone (an error).
    pub fn bind(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let bind_err = |source| StreamError::Bind {
            path: path.display().to_string(),
            source,
        };
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            if m.file_type().is_socket() {
                std::fs::remove_file(&path).map_err(bind_err)?;
            }
        }
        let listener = UnixListener::bind(&path).map_err(bind_err)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        Ok(Socket { listener, path })
    }

    /// Waits for CRIU; `None` once `stop` is set and nobody came.
    pub fn accept(&self, stop: &AtomicBool) -> Result<Option<UnixStream>> {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).map_err(StreamError::Socket)?;
                    return Ok(Some(s));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stop.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    poll_in(self.listener.as_raw_fd(), TICK_MS).map_err(StreamError::Socket)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StreamError::Socket(e)),
            }
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Waits until the connection has something to read (a request or EOF).
/// Gives up `GRACE` after `stop` was first seen set, or when `abort` is set.
pub fn wait_readable(s: &UnixStream, stop: &AtomicBool, abort: &AtomicBool) -> Result<bool> {
    let mut stopped_at: Option<Instant> = None;
    loop {
        if abort.load(Ordering::SeqCst) {
            return Ok(false);
        }
        if poll_in(s.as_raw_fd(), TICK_MS).map_err(StreamError::Socket)? {
            return Ok(true);
        }
        if stop.load(Ordering::SeqCst) {
            let t = *stopped_at.get_or_insert_with(Instant::now);
            if t.elapsed() > GRACE {
                return Err(StreamError::Protocol(format!(
                    "CRIU's connection still open {}s after it exited",
                    GRACE.as_secs()
                )));
            }
        }
    }
}

fn poll_in(fd: i32, ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(n > 0)
}
