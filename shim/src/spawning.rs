//! New processes with their streams: pipes made before the process exists,
//! or a terminal whose master the process hands over once it does.

use std::path::{Path, PathBuf};

use arch_runtime::{CgroupDriver, CreateRequest, Stdio};

use crate::error::{io_err, Result, ShimError};
use crate::seams::ContainerRuntime;
use crate::stdio::{self, ConsoleSocket, IoHandles, StdioPaths};
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
    let path = socket.path.clone();
    let master = socket
        .receive_master()
        .map_err(io_err("waiting for the process's terminal"))?;
    let pid = spawn(Some(path.clone()), Stdio::default()).inspect_err(|_| {
        // Nobody else will connect: end the accept thread, then the socket.
        socket_abandoned(&path);
        let _ = std::fs::remove_file(&path);
    })?;
    let master = master
        .recv_timeout(timeouts::CONSOLE)
        .map_err(|_| ShimError::Internal("timed out waiting for the process's terminal".into()))?
        .map_err(io_err("receiving the process's terminal"))?;
    let io = stdio::attach_console(paths, master).map_err(io_err("attaching terminal"))?;
    Ok((pid, io))
}

/// Wakes a console accept thread whose process was never created, so it
/// does not wait for ever (the listener stays open until accept returns).
fn socket_abandoned(path: &Path) {
    let _ = std::os::unix::net::UnixStream::connect(path);
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
