//! containerd's stdin FIFO → a process's stdin (a pipe, or the pty master).
//!
//! CloseIO means "the client has written everything", not "drop what is in
//! flight": `ctr run` sends it as soon as its own stdin ends, racing its last
//! write into the FIFO. Dropping the process's stdin on CloseIO therefore lost
//! input now and then (`wc -l` counted 0 lines). Instead CloseIO wakes the
//! copy thread, which drains what the FIFO still holds, and what the client
//! still writes while it writes (a pause of [`LINGER`] ends it; the writer
//! leaving ends it at once), and only then closes the process's stdin.
//! Stopping at the first empty read lost the tail of a 54 KB input when
//! CloseIO arrived between ctr's two 32 KiB writes (e2e, containerd 1.7).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

/// After CloseIO, how long the FIFO may stay empty before the process's
/// stdin is closed, while the client's writer is still open.
const LINGER: std::time::Duration = std::time::Duration::from_millis(250);

/// The shim's handle on one process's stdin copy.
#[derive(Default)]
pub struct StdinFeed {
    /// Write end of the wake-up pipe; dropping it is CloseIO. Dropping the
    /// feed (the process is gone) closes it too, so the thread never outlives
    /// the process waiting on a client that keeps the FIFO open.
    close: Mutex<Option<OwnedFd>>,
}

impl StdinFeed {
    /// Starts copying `fifo_path` into `sink` on a thread of its own.
    pub fn start(fifo_path: String, sink: File) -> io::Result<Self> {
        let (wake, close) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        std::thread::Builder::new()
            .name("copy-stdin".into())
            .spawn(move || {
                // Non-blocking open: a FIFO opens for reading at once, and
                // poll reports nothing until a writer has come.
                match OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo_path)
                {
                    Ok(fifo) => feed(fifo, wake, sink),
                    Err(e) => log::warn!("stdin fifo {fifo_path}: {e}"),
                }
                // `sink` drops here: the process sees EOF.
            })?;
        Ok(Self {
            close: Mutex::new(Some(close)),
        })
    }

    /// CloseIO: deliver what the client already wrote, then EOF.
    pub fn close(&self) {
        self.close.lock().unwrap().take();
    }
}

/// Copies until the writer leaves (EOF) or, once woken by CloseIO, until the
/// FIFO is empty.
fn feed(mut fifo: File, wake: OwnedFd, mut sink: impl Write) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut closing = false;
    loop {
        if !closing {
            match wait_readable(&fifo, &wake) {
                Ok(Ready {
                    fifo: ready,
                    closed,
                }) => {
                    closing = closed;
                    if !ready && !closing {
                        continue;
                    }
                }
                Err(e) => {
                    log::warn!("stdin poll: {e}");
                    return;
                }
            }
        }
        match fifo.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if sink.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Closing: a client still writing gets LINGER per pause.
                if closing && !fifo_ready_within(&fifo, LINGER) {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Whether the FIFO has data, or its writer left, within `limit`.
fn fifo_ready_within(fifo: &File, limit: std::time::Duration) -> bool {
    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
    let mut fds = [pollin(fifo.as_raw_fd())];
    matches!(poll_retrying(&mut fds, ms), Ok(n) if n > 0)
}

struct Ready {
    fifo: bool,
    closed: bool,
}

fn wait_readable(fifo: &File, wake: &OwnedFd) -> io::Result<Ready> {
    let mut fds = [pollin(fifo.as_raw_fd()), pollin(wake.as_fd().as_raw_fd())];
    poll_retrying(&mut fds, -1)?;
    Ok(Ready {
        fifo: fds[0].revents != 0,
        closed: fds[1].revents != 0,
    })
}

fn pollin(fd: std::os::fd::RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// poll(2), started again when a signal interrupts it (with the whole
/// timeout: a signal only makes a pause look longer, never cuts input).
fn poll_retrying(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    loop {
        // SAFETY: `fds` is a valid slice of pollfd for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fifo(dir: &tempfile::TempDir) -> String {
        let p = dir.path().join("stdin");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn read_all(mut r: File) -> Vec<u8> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn close_io_racing_the_last_write_still_delivers_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(&dir);
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let feed = StdinFeed::start(path.clone(), File::from(w)).unwrap();
        // The client's writer stays open, as ctr's does while it sends CloseIO.
        let mut client = OpenOptions::new().write(true).open(&path).unwrap();
        client.write_all(b"one\ntwo\nthree\n").unwrap();
        feed.close();
        assert_eq!(read_all(File::from(r)), b"one\ntwo\nthree\n");
        drop(client);
    }

    #[test]
    fn close_io_between_two_writes_still_delivers_the_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(&dir);
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let feed = StdinFeed::start(path.clone(), File::from(w)).unwrap();
        let mut client = OpenOptions::new().write(true).open(&path).unwrap();
        client.write_all(b"first\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        feed.close();
        // The copier has drained the FIFO and seen CloseIO; the client's
        // second write comes a moment later, then it leaves.
        std::thread::sleep(Duration::from_millis(50));
        client.write_all(b"second\n").unwrap();
        drop(client);
        assert_eq!(read_all(File::from(r)), b"first\nsecond\n");
    }

    #[test]
    fn writer_leaving_is_eof() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(&dir);
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let _feed = StdinFeed::start(path.clone(), File::from(w)).unwrap();
        let mut client = OpenOptions::new().write(true).open(&path).unwrap();
        client.write_all(b"data").unwrap();
        drop(client);
        assert_eq!(read_all(File::from(r)), b"data");
    }

    #[test]
    fn close_io_with_an_idle_open_writer_is_eof() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(&dir);
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let feed = StdinFeed::start(path.clone(), File::from(w)).unwrap();
        let _client = OpenOptions::new().write(true).open(&path).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        feed.close();
        assert_eq!(read_all(File::from(r)), b"");
    }

    #[test]
    fn close_io_before_any_writer_is_eof() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(&dir);
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let feed = StdinFeed::start(path, File::from(w)).unwrap();
        drop(feed);
        assert_eq!(read_all(File::from(r)), b"");
    }
}
