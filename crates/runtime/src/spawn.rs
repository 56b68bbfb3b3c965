//! Process creation through the zygote (see the crate docs for why).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use serde::{Deserialize, Serialize};
use zygote::{WireFd, Zygote};

use crate::cgroup_driver::CgroupDriver;
use crate::error::{Result, RuntimeError};
use crate::exec_security::{ExecSecurity, SecuredExecutor};

/// Starts the zygote. Must be called while the process is single-threaded.
pub fn init_zygote() {
    Zygote::init();
    // containerd learns that the shim is ready when the shim's stdout pipe
    // closes; a zygote holding a copy would keep containerd waiting forever.
    Zygote::global().run(detach_stdio, ());
}

fn detach_stdio(_: ()) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
        }
    }
}

/// The three standard streams handed to a new process; `None` leaves the
/// stream on /dev/null (terminal processes get theirs from the console socket).
#[derive(Default, Serialize, Deserialize)]
pub struct Stdio {
    pub stdin: Option<WireFd<OwnedFd>>,
    pub stdout: Option<WireFd<OwnedFd>>,
    pub stderr: Option<WireFd<OwnedFd>>,
}

#[derive(Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    /// libcontainer's state root; the container's state lives in root/id.
    pub state_root: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub stdio: Stdio,
    /// Who manages the container's cgroup (libcontainer records it in the
    /// container's state: exec, stats and delete follow it).
    pub cgroup_driver: CgroupDriver,
}

#[derive(Serialize, Deserialize)]
pub struct ExecRequest {
    pub container_id: String,
    pub state_root: PathBuf,
    /// OCI process JSON, as containerd sent it in ExecProcessRequest.spec.
    pub process_json: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub stdio: Stdio,
}

fn builder(
    id: &str,
    root: &std::path::Path,
    console: Option<&PathBuf>,
    stdio: Stdio,
) -> std::result::Result<ContainerBuilder, String> {
    let mut b = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(root)
        .map_err(|e| e.to_string())?
        .with_console_socket(console);
    if let Some(fd) = stdio.stdin {
        b = b.with_stdin(fd.into_inner());
    }
    if let Some(fd) = stdio.stdout {
        b = b.with_stdout(fd.into_inner());
    }
    if let Some(fd) = stdio.stderr {
        b = b.with_stderr(fd.into_inner());
    }
    Ok(b)
}

// Runs inside the zygote.
fn zygote_create(req: CreateRequest) -> std::result::Result<i32, String> {
    let container = builder(
        &req.id,
        &req.state_root,
        req.console_socket.as_ref(),
        req.stdio,
    )?
    .validate_id()
    .map_err(|e| e.to_string())?
    .as_init(&req.bundle)
    .with_systemd(req.cgroup_driver.is_systemd())
    .with_detach(true)
    .as_sibling(true)
    .build()
    .map_err(|e| format!("{e:#}"))?;
    container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| "container has no init pid".to_string())
}

/// What the zygote needs for an exec: the request and what our executor
/// applies (see [`crate::exec_security`]).
#[derive(Serialize, Deserialize)]
struct ZygoteExec {
    req: ExecRequest,
    security: ExecSecurity,
}

// Runs inside the zygote.
fn zygote_exec(ZygoteExec { req, security }: ZygoteExec) -> std::result::Result<i32, String> {
    let mut b = builder(
        &req.container_id,
        &req.state_root,
        req.console_socket.as_ref(),
        req.stdio,
    )?;
    if security.is_needed() {
        b = b.with_executor(SecuredExecutor(security));
    }
    let pid = b
        .as_tenant()
        .with_process(Some(&req.process_json))
        .with_detach(true)
        .as_sibling(true)
        .build()
        .map_err(|e| format!("{e:#}"))?;
    Ok(pid.as_raw())
}

/// Runs `f` in a zygote of its own, spawned from the global one and ended
/// when `f` returns. The global zygote stays as the shim started it: a
/// zygote that built a container keeps the libcontainer code it ran
/// mapped (about 4 MiB of the shim's text, in its RSS) for as long as it
/// lives, and an idle container needs none of it. What `f` forks is the
/// shim's child all the same (`as_sibling`).
fn in_fresh_zygote<T>(
    op: impl FnOnce(&Zygote) -> std::result::Result<T, zygote::Error>,
) -> std::result::Result<T, zygote::Error> {
    // `spawn` panics if the global zygote cannot clone (no pid left, or
    // the zygote is gone): a failed request, not a dead ttrpc worker.
    let worker = std::panic::catch_unwind(|| Zygote::global().spawn()).map_err(|_| {
        zygote::Error::from(std::io::Error::other("the zygote could not start a worker"))
    })?;
    op(&worker)
    // Dropping `worker` kills and reaps it.
}

/// Creates the container (init process waiting for Start); returns its pid.
pub fn create(req: CreateRequest) -> Result<i32> {
    let id = req.id.clone();
    in_fresh_zygote(|z| z.try_run(zygote_create, req))
        .map_err(|source| RuntimeError::Zygote {
            action: "create container",
            source,
        })?
        .map_err(|reason| RuntimeError::Spawn {
            id,
            action: "create",
            reason,
        })
}

/// Runs an additional process in a running container; returns its pid.
pub(crate) fn exec(req: ExecRequest, security: ExecSecurity) -> Result<i32> {
    let id = req.container_id.clone();
    in_fresh_zygote(|z| z.try_run(zygote_exec, ZygoteExec { req, security }))
        .map_err(|source| RuntimeError::Zygote {
            action: "exec",
            source,
        })?
        .map_err(|reason| RuntimeError::Spawn {
            id,
            action: "exec",
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid_and_parent(_: ()) -> (u32, i32) {
        // SAFETY: getppid has no preconditions.
        (std::process::id(), unsafe { libc::getppid() })
    }

    #[test]
    fn a_worker_zygote_runs_the_request_as_our_child_and_is_gone_after() {
        let me = std::process::id();
        let (worker, parent) = in_fresh_zygote(|z| z.try_run(pid_and_parent, ())).unwrap();
        let (global, _) = Zygote::global().run(pid_and_parent, ());
        assert_ne!(worker, me);
        assert_ne!(worker, global, "not the global zygote");
        assert_eq!(parent as u32, me, "a sibling of the zygote: our child");
        assert!(
            !std::path::Path::new(&format!("/proc/{worker}")).exists(),
            "the worker is killed and reaped when the request returns"
        );
        let (again, _) = in_fresh_zygote(|z| z.try_run(pid_and_parent, ())).unwrap();
        assert_ne!(again, worker, "a new worker per request");
    }
}
