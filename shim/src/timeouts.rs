//! Every time limit the shim applies, in one place, with why it is what it is.

use std::time::Duration;

/// How long Create (or an exec's Start) waits for the new process to hand
/// over its pty master on the console socket.
pub const CONSOLE: Duration = Duration::from_secs(10);

/// How long an exit waits for the process's output to reach containerd: a
/// background child that inherited the pipe may keep it open forever.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(3);

/// An unmatched exit older than this belongs to a process the shim never
/// made (libcontainer's intermediate processes), and its pid may be reused.
pub const EARLY_EXIT_TTL: Duration = Duration::from_secs(30);

/// A checkpoint temporary this old has no live writer on any host (a dump
/// plus its commit takes seconds to a few minutes).
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// How long the `delete` action retries removing a container whose
/// SIGKILLed processes are still leaving its cgroup: containerd kills the
/// action after 5 s (io.containerd.timeout.shim.cleanup).
pub const DELETE_RETRY: Duration = Duration::from_secs(3);

/// How long Delete and Shutdown wait for a checkpoint that is still
/// writing its image (its exit was reported once the kill deadline passed):
/// long enough for a large image on a slow disk, shorter than
/// STALE_TEMP_AGE so the temporary it writes is never judged abandoned.
pub const COMMIT_WAIT: Duration = Duration::from_secs(300);

/// How long Shutdown waits for queued events (TaskDelete) to reach containerd.
pub const EVENTS_FLUSH: Duration = Duration::from_secs(5);
