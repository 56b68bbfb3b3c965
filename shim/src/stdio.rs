//! Stdio plumbing: shim-owned pipes (or a pty) between the container and
//! containerd's FIFOs. Owning the pipes keeps the container's descriptors
//! independent of containerd's FIFOs, so a process can be rewired later.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arch_runtime::Stdio;

use crate::stdin_feed::StdinFeed;

/// Where containerd wants a process's streams (FIFO paths; empty = none).
#[derive(Clone, Debug, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    /// Owner (uid, gid) of the pipes the shim makes: the runtime options'
    /// IoUid/IoGid, so a non-root process can reopen /dev/stdout.
    pub io_owner: Option<(u32, u32)>,
}

/// The shim's side of a process's streams, alive while the process is.
#[derive(Default)]
pub struct IoHandles {
    /// The copy into the stdin pipe (or the pty master); CloseIO ends it.
    stdin: Option<StdinFeed>,
    /// The pty master, for ResizePty.
    console: Option<Arc<File>>,
    /// Copy threads from the container to containerd, joined on exit.
    outputs: Vec<Output>,
}

/// A copy thread, and the channel its end closes.
struct Output {
    thread: JoinHandle<()>,
    /// Disconnected once the thread has returned (it holds the sender).
    ended: Receiver<()>,
}

fn pipe(owner: Option<(u32, u32)>) -> io::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let (r, w) = (File::from(r), File::from(w));
    if let Some((uid, gid)) = owner {
        // Both ends, as runc's shim does: one inode, but be explicit.
        for end in [&r, &w] {
            nix::unistd::fchown(
                end.as_raw_fd(),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| {
                io::Error::other(format!(
                    "chown of a stdio pipe to {uid}:{gid} (IoUid/IoGid): {e}"
                ))
            })?;
        }
    }
    Ok((r, w))
}

fn dev_null(write: bool) -> io::Result<OwnedFd> {
    Ok(OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")?
        .into())
}

/// Copies until EOF or error; both ends close when it returns.
fn copy_thread(
    name: &str,
    mut from: impl Read + Send + 'static,
    open_to: impl FnOnce() -> io::Result<File> + Send + 'static,
) -> io::Result<Output> {
    let name = name.to_string();
    let (alive, ended) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("copy-{name}"))
        .spawn(move || {
            let _alive = alive;
            let mut to = match open_to() {
                Ok(f) => f,
                Err(e) => {
                    log::warn!("{name}: cannot open destination: {e}");
                    // Drain so the process never blocks on a full pipe.
                    let _ = io::copy(&mut from, &mut io::sink());
                    return;
                }
            };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            let _ = io::copy(&mut from, &mut io::sink());
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // EIO on a pty master means the terminal's last user is gone.
                    Err(_) => break,
                }
            }
        })?;
    Ok(Output { thread, ended })
}

/// Opens containerd's FIFO for writing: at once if its reader is there (the
/// usual case: clients open their end before Create/Exec), else in the copy
/// thread when the reader comes. Opening at once matters on a loaded host:
/// a copy thread not yet scheduled when a short process exits would leave
/// the FIFO unopened, and a client that gives up on an unopened FIFO (ctr
/// cancels its I/O once the process is deleted) loses the output.
fn open_fifo_write(path: String) -> impl FnOnce() -> io::Result<File> {
    let now = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .and_then(|f| {
            // Writes block again, as a pipe's should.
            let flags = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
            let flags =
                nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
            nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
            Ok(f)
        });
    move || match now {
        Ok(f) => Ok(f),
        // ENXIO: no reader yet; wait for one.
        Err(_) => OpenOptions::new().write(true).open(path),
    }
}

/// Prepares pipes for a non-terminal process; returns the container's ends
/// and the shim's handles (copy threads start at once: they only block until
/// containerd's side of each FIFO is open).
pub fn setup_pipes(paths: &StdioPaths) -> io::Result<(Stdio, IoHandles)> {
    let mut io = IoHandles::default();
    let stdin = if paths.stdin.is_empty() {
        dev_null(false)?
    } else {
        let (r, w) = pipe(paths.io_owner)?;
        io.stdin = Some(StdinFeed::start(paths.stdin.clone(), w)?);
        r.into()
    };
    let mut output = |path: &String, name: &str| -> io::Result<OwnedFd> {
        Ok(if path.is_empty() {
            dev_null(true)?
        } else {
            let (r, w) = pipe(paths.io_owner)?;
            io.outputs
                .push(copy_thread(name, r, open_fifo_write(path.clone()))?);
            w.into()
        })
    };
    let stdout = output(&paths.stdout, "stdout")?;
    let stderr = output(&paths.stderr, "stderr")?;
    Ok((
        Stdio {
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
        },
        io,
    ))
}

/// Wires a received pty master to containerd's FIFOs.
pub fn attach_console(paths: &StdioPaths, master: File) -> io::Result<IoHandles> {
    let master = Arc::new(master);
    let mut io = IoHandles {
        console: Some(master.clone()),
        ..Default::default()
    };
    if !paths.stdin.is_empty() {
        io.stdin = Some(StdinFeed::start(paths.stdin.clone(), master.try_clone()?)?);
    }
    if !paths.stdout.is_empty() {
        let reader = master.try_clone()?;
        io.outputs.push(copy_thread(
            "console",
            reader,
            open_fifo_write(paths.stdout.clone()),
        )?);
    }
    Ok(io)
}

impl IoHandles {
    pub fn close_stdin(&self) {
        if let Some(feed) = &self.stdin {
            feed.close();
        }
    }

    pub fn resize(&self, width: u32, height: u32) -> io::Result<()> {
        let Some(console) = &self.console else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "process has no terminal",
            ));
        };
        let ws = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
        let rc = unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until the process's output has reached containerd, so a client
    /// that sees the exit has all the output. Bounded: a background child
    /// that inherited the pipe may keep it open forever.
    pub fn drain(&mut self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        for output in self.outputs.drain(..) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if let Err(RecvTimeoutError::Disconnected) = output.ended.recv_timeout(left) {
                let _ = output.thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn pipes_owned_as_asked() {
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let (r, w) = pipe(Some(me)).unwrap();
        for end in [&r, &w] {
            let m = end.metadata().unwrap();
            assert_eq!((m.uid(), m.gid()), me);
        }
        if me.0 == 0 {
            let (r, _w) = pipe(Some((4321, 4322))).unwrap();
            let m = r.metadata().unwrap();
            assert_eq!((m.uid(), m.gid()), (4321, 4322));
        }
        assert!(pipe(None).is_ok());
    }

    /// The drain returns as soon as the output is through (no polling
    /// interval), and after its limit while a writer holds the pipe open.
    #[test]
    fn drain_waits_for_the_output_and_no_longer_than_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let (r, mut w) = pipe(None).unwrap();
        let to = dest.clone();
        let mut io = IoHandles {
            outputs: vec![copy_thread("t", r, move || File::create(to)).unwrap()],
            ..Default::default()
        };
        w.write_all(b"last words").unwrap();
        drop(w);
        io.drain(Duration::from_secs(10));
        assert_eq!(std::fs::read(&dest).unwrap(), b"last words");

        let (r, held) = pipe(None).unwrap();
        let to = dir.path().join("held");
        let mut io = IoHandles {
            outputs: vec![copy_thread("h", r, move || File::create(to)).unwrap()],
            ..Default::default()
        };
        let started = std::time::Instant::now();
        io.drain(Duration::from_millis(200));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
        drop(held);
    }
}
