//! CRIU's pipes: larger buffers mean fewer wake-ups per MiB of pages.

use std::os::fd::{AsRawFd, OwnedFd};

/// 1 MiB; CRIU's own streamer notes trouble above 4 MiB. Best effort: an
/// unprivileged limit (`pipe-max-size`) only costs speed.
const PIPE_BYTES: libc::c_int = 1 << 20;

pub fn enlarge(fd: &OwnedFd) {
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
}

/// Read and write buffers of the per-file workers.
pub const CHUNK: usize = 1 << 20;
