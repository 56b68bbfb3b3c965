//! The shim daemon: the task service on its ttrpc socket, under both the
//! v3 (`containerd.task.v3.Task`, containerd 2.x) and the v2
//! (`containerd.task.v2.Task`, containerd 1.7) names. The messages are the
//! same; only the service name differs, and each containerd calls the one
//! the start reply announced (a 2.x containerd also falls back to v2).

use std::collections::HashMap;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use containerd_shim::protos::shim::shim_ttrpc::create_task;
use containerd_shim::protos::ttrpc::{MethodHandler, Server};
use containerd_shim::{Config, Shim, Task};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGPIPE, SIGTERM};
use signal_hook::iterator::Signals;

use crate::shim::ArchShim;

const V3: &str = "/containerd.task.v3.Task/";
const V2: &str = "/containerd.task.v2.Task/";

type Methods = HashMap<String, Box<dyn MethodHandler + Send + Sync>>;

/// The task service's methods under the v3 and the v2 service names.
pub fn task_methods(task: Arc<dyn Task + Send + Sync>) -> Methods {
    let mut methods = create_task(task.clone());
    let v2: Methods = create_task(task)
        .into_iter()
        .filter_map(|(path, handler)| Some((format!("{V2}{}", path.strip_prefix(V3)?), handler)))
        .collect();
    methods.extend(v2);
    methods
}

/// The started ttrpc server of `methods` on `listener`.
///
/// Two idle workers per connection, not ttrpc's three, and at most three
/// kept after a burst (ttrpc's counts are of idle workers, and its start
/// wants min < default < max): an idle shim's threads are much of its
/// private memory (bench: idle-memory). A worker that takes a request
/// (Wait blocks until the exit) below the minimum makes ttrpc start more,
/// so a request never waits for a worker.
fn task_server(
    listener: UnixListener,
    methods: Methods,
) -> containerd_shim::protos::ttrpc::Result<Server> {
    let mut server = Server::new()
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(3)
        .add_listener(listener.into_raw_fd())?
        .register_service(methods);
    server.start()?;
    Ok(server)
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// Binds the shim socket. Ok(None): a shim already serves it (containerd
/// retried a start), so this one has nothing to do.
fn listen(address: &str) -> anyhow::Result<Option<UnixListener>> {
    let path = Path::new(socket_path(address));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match UnixListener::bind(path) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            if path
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_socket())
            {
                std::fs::remove_file(path)?;
            }
            Ok(Some(UnixListener::bind(path)?))
        }
        Err(e) => Err(e.into()),
    }
}

/// Tells `start`, which copies our stdout until it closes, that the
/// socket is served.
fn signal_started() {
    // SAFETY: dup2 of our own standard descriptors.
    unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) };
}

/// Reaps every child (spawn helpers, and what they create, are ours as
/// subreaper) and hands the exits to the crate's monitor.
fn reap_on_sigchld(mut signals: Signals) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    for sig in signals.forever() {
        if sig != SIGCHLD {
            log::debug!("received signal {sig}");
            continue;
        }
        loop {
            let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    continue;
                }
            };
            // A hook the runtime runs is judged by its code (child_exits.rs).
            arch_runtime::child_exited(pid.as_raw(), code);
            if let Err(e) = containerd_shim::monitor::monitor_notify_by_pid(pid.as_raw(), code) {
                log::error!("reporting the exit of {pid}: {e}");
            }
        }
    }
}

/// Serves the task API on `-socket` until Shutdown lets the shim exit.
pub fn run(runtime_id: &str, args: &[String]) -> anyhow::Result<()> {
    let flags = containerd_shim::parse(args)?;
    anyhow::ensure!(
        !flags.namespace.is_empty(),
        "shim namespace cannot be empty"
    );
    anyhow::ensure!(!flags.socket.is_empty(), "shim socket cannot be empty");
    // Before any child: signals are taken, not defaulted, from here on.
    let signals = Signals::new([SIGTERM, SIGINT, SIGPIPE, SIGCHLD])?;
    // SAFETY: prctl on this process only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let mut config = Config::default();
    let mut shim = ArchShim::new(runtime_id, &flags, &mut config);
    containerd_shim::logger::init(
        flags.debug,
        &config.default_log_level,
        &flags.namespace,
        &flags.id,
    )?;
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| anyhow::anyhow!("TTRPC_ADDRESS is not set (containerd sets it)"))?;
    let task: Arc<dyn Task + Send + Sync> = Arc::new(shim.task_service(ttrpc_address));
    let Some(listener) = listen(&flags.socket)? else {
        signal_started();
        return Ok(());
    };
    let server = task_server(listener, task_methods(task))?;
    signal_started();
    log::info!("serving task API v3 and v2 on {}", flags.socket);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || reap_on_sigchld(signals))?;
    shim.wait();
    log::info!("shutting down");
    server.shutdown();
    let _ = std::fs::remove_file(socket_path(&flags.socket));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_api_names_served() {
        struct Nop;
        impl Task for Nop {}
        let methods = task_methods(Arc::new(Nop));
        for name in [
            "Create",
            "Start",
            "Delete",
            "State",
            "Checkpoint",
            "Shutdown",
        ] {
            assert!(methods.contains_key(&format!("{V3}{name}")), "v3 {name}");
            assert!(methods.contains_key(&format!("{V2}{name}")), "v2 {name}");
        }
        assert_eq!(methods.len() % 2, 0);
    }

    #[test]
    fn the_task_server_starts_and_answers() {
        struct Nop;
        impl Task for Nop {}
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let server = task_server(
            UnixListener::bind(&path).unwrap(),
            task_methods(Arc::new(Nop)),
        )
        .expect("ttrpc accepts the worker counts");
        UnixStream::connect(&path).expect("listening");
        server.shutdown();
    }

    #[test]
    fn socket_paths() {
        assert_eq!(socket_path("unix:///run/c/s/ab"), "/run/c/s/ab");
        assert_eq!(socket_path("/run/c/s/ab"), "/run/c/s/ab");
    }
}
