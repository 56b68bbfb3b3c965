//! New processes with their streams: pipes made before the process exists,
//! or a terminal whose master the process hands over once it does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arch_runtime::{CgroupDriver, CreateRequest, Stdio};

use crate::console::ConsoleSocket;
use crate::error::{io_err, Result};
use crate::seams::ContainerRuntime;
use crate::stdio::{self, IoHandles, StdioPaths};
use crate::timeouts;

/// Sets up the streams of a process about to be created by `spawn` (given
/// a console socket for a terminal, or the container's ends of the pipes),
/// and finishes wiring them once it exists.
pub fn spawn_with_stdio(
    paths: &StdioPaths,
    spawn: impl FnOnce(Option<PathBuf>, Stdio) -> Result<i32>,
) -> Result<(i32, IoHandles)> {
    if !paths.terminal {
        let (fds, io) = stdio::setup_pipes(paths).map_err(io_err("setting up stdio pipes"))?;
        return Ok((spawn(None, fds)?, io));
    }
    let socket = ConsoleSocket::new().map_err(io_err("creating console socket"))?;
    spawn_with_console(socket, timeouts::CONSOLE, paths, spawn)
}

/// A process with a terminal: its init sends the pty master over `socket`
/// within `limit`. Whatever fails, the accept thread ends with this call
/// (the pending master is dropped on every return).
fn spawn_with_console(
    socket: ConsoleSocket,
    limit: Duration,
    paths: &StdioPaths,
    spawn: impl FnOnce(Option<PathBuf>, Stdio) -> Result<i32>,
) -> Result<(i32, IoHandles)> {
    let path = socket.path.clone();
    // The thread's own deadline is a backstop: the spawn's time plus ours.
    let master = socket
        .receive_master(limit * 3)
        .map_err(io_err("waiting for the process's terminal"))?;
    let pid = spawn(Some(path), Stdio::default())?;
    let master = master
        .wait(limit)
        .map_err(io_err("receiving the process's terminal"))?;
    let io = stdio::attach_console(paths, master).map_err(io_err("attaching terminal"))?;
    Ok((pid, io))
}

/// A fresh container (init waiting for Start) with the given streams.
pub fn create_container(
    runtime: &dyn ContainerRuntime,
    id: &str,
    bundle: &Path,
    cgroup_driver: CgroupDriver,
    console_socket: Option<PathBuf>,
    stdio: Stdio,
) -> Result<i32> {
    Ok(runtime.create(CreateRequest {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        state_root: runtime.state_root().to_path_buf(),
        console_socket,
        stdio,
        cgroup_driver,
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::thread_alive;
    use crate::error::ShimError;

    fn terminal() -> StdioPaths {
        StdioPaths {
            terminal: true,
            ..Default::default()
        }
    }

    /// Runs `spawn` with a terminal; the name of the accept thread.
    fn accept_thread_of(spawn: impl FnOnce(Option<PathBuf>, Stdio) -> Result<i32>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let socket = ConsoleSocket::new_in(dir.path()).unwrap();
        let name = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let seen = name.clone();
        let res = spawn_with_console(socket, Duration::from_millis(300), &terminal(), |p, s| {
            // The socket's sequence number names the thread.
            let p = p.expect("a console socket");
            let seq = p
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .rsplit('-')
                .next()
                .unwrap();
            *seen.lock().unwrap() = format!("console-{seq}");
            let name = seen.lock().unwrap().clone();
            assert!(
                (0..100).any(|_| {
                    std::thread::sleep(Duration::from_millis(10));
                    thread_alive(&name)
                }),
                "the accept thread runs"
            );
            spawn(Some(p), s)
        });
        assert!(res.is_err(), "no terminal was sent");
        let n = name.lock().unwrap().clone();
        n
    }

    fn ends(name: &str) -> bool {
        (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !thread_alive(name)
        })
    }

    #[test]
    fn a_failed_spawn_ends_the_accept_thread() {
        let name = accept_thread_of(|_, _| Err(ShimError::Internal("no process".into())));
        assert!(ends(&name), "{name} still waits for a terminal");
    }

    #[test]
    fn a_process_that_never_sends_its_terminal_ends_the_accept_thread() {
        let name = accept_thread_of(|_, _| Ok(4_500_000));
        assert!(ends(&name), "{name} still waits for a terminal");
    }
}
