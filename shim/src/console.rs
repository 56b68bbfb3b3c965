//! The console socket over which a new process with a terminal hands its
//! pty master to the shim. The accept runs on a thread of its own, so the
//! caller can create the process meanwhile; that thread always ends: when
//! the master arrives, when the caller gives up ([`PendingMaster`]
//! dropped: the process could not be created, or never sent it), or at
//! its deadline. A Create that fails never leaves it waiting for ever.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A console socket that receives the pty master from the container's init.
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: UnixListener,
    seq: u64,
}

static CONSOLE_SEQ: AtomicU64 = AtomicU64::new(0);

impl ConsoleSocket {
    pub fn new() -> io::Result<Self> {
        Self::new_in(&arch_host::paths::console_dir())
    }

    /// A console socket in `dir`.
    pub fn new_in(dir: &std::path::Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let seq = CONSOLE_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{seq}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(Self {
            path,
            listener,
            seq,
        })
    }

    /// Waits for the pty master on a thread, for at most `limit`, so the
    /// caller can create the process meanwhile.
    pub fn receive_master(self, limit: Duration) -> io::Result<PendingMaster> {
        let (tx, rx) = mpsc::channel();
        let (cancelled, cancel) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let deadline = Instant::now() + limit;
        std::thread::Builder::new()
            // Named after the socket, so a test can find it.
            .name(format!("console-{}", self.seq))
            .spawn(move || {
                let res = accept_master(&self.listener, &cancelled, deadline);
                let _ = std::fs::remove_file(&self.path);
                let _ = tx.send(res);
            })?;
        Ok(PendingMaster {
            rx,
            _cancel: cancel,
        })
    }
}

/// The pty master on its way; dropping it ends the accept thread.
pub struct PendingMaster {
    rx: mpsc::Receiver<io::Result<File>>,
    /// The write end of a pipe the thread polls: closed on drop.
    _cancel: OwnedFd,
}

impl PendingMaster {
    /// The master, once the process sent it (at most `limit` from now).
    pub fn wait(&self, limit: Duration) -> io::Result<File> {
        self.rx.recv_timeout(limit).map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out waiting for the process's terminal",
            )
        })?
    }
}

/// Accepts one connection and receives a descriptor on it, unless
/// `cancelled` becomes readable (its write end was closed) or `deadline`
/// passes.
fn accept_master(
    listener: &UnixListener,
    cancelled: &OwnedFd,
    deadline: Instant,
) -> io::Result<File> {
    listener.set_nonblocking(true)?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no terminal came"));
        }
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: cancelled.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: two valid pollfds for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            return Err(io::Error::other("the process will not send a terminal"));
        }
        if fds[0].revents == 0 {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                let left = deadline.saturating_duration_since(Instant::now());
                stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                return recv_fd(stream.as_raw_fd());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

fn recv_fd(sock: RawFd) -> io::Result<File> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { File::from_raw_fd(fd) });
            }
        }
    }
    Err(io::Error::other("console socket: no descriptor received"))
}

/// Whether a thread of this process is named `name`.
#[cfg(test)]
pub fn thread_alive(name: &str) -> bool {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten().any(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
            })
        })
        .unwrap_or(false)
}
