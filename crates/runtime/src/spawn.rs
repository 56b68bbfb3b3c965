//! Creating a container and exec'ing into one, each in a helper process
//! of its own (spawn_helper.rs says why and how).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use serde::{Deserialize, Serialize};

use crate::cgroup_driver::CgroupDriver;
use crate::error::{Result, RuntimeError};
use crate::exec_security::{ExecSecurity, SecuredExecutor};
use crate::spawn_helper::{run_in_helper, Reply};

/// The three standard streams handed to a new process; `None` leaves the
/// stream on /dev/null (terminal processes get theirs from the console socket).
#[derive(Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Stdio {
    /// stdin, stdout and stderr, borrowed.
    pub fn fds(&self) -> [Option<&OwnedFd>; 3] {
        [&self.stdin, &self.stdout, &self.stderr].map(Option::as_ref)
    }

    fn from_fds([stdin, stdout, stderr]: [Option<OwnedFd>; 3]) -> Self {
        Stdio {
            stdin,
            stdout,
            stderr,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    /// libcontainer's state root; the container's state lives in root/id.
    pub state_root: PathBuf,
    pub console_socket: Option<PathBuf>,
    /// Passed to the helper as descriptors, not in the request.
    #[serde(skip)]
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
    /// Passed to the helper as descriptors, not in the request.
    #[serde(skip)]
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
        b = b.with_stdin(fd);
    }
    if let Some(fd) = stdio.stdout {
        b = b.with_stdout(fd);
    }
    if let Some(fd) = stdio.stderr {
        b = b.with_stderr(fd);
    }
    Ok(b)
}

// Runs in the helper.
fn create_here(req: CreateRequest) -> std::result::Result<i32, String> {
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
    let pid = container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| "container has no init pid".to_string())?;
    if let Err(e) = loopback_up(&req.bundle, pid) {
        // Failed as runc fails it: no half-made container is left.
        let mut container = container;
        if let Err(del) = container.delete(true) {
            return Err(format!("{e}; and deleting the container: {del}"));
        }
        return Err(e);
    }
    Ok(pid)
}

// Runs in the helper: `lo` up in the container's own network namespace.
fn loopback_up(bundle: &std::path::Path, pid: i32) -> std::result::Result<(), String> {
    let spec = libcontainer::oci_spec::runtime::Spec::load(bundle.join("config.json"))
        .map_err(|e| e.to_string())?;
    if !crate::loopback::creates_network_namespace(&spec) {
        return Ok(());
    }
    crate::loopback::bring_up_in(pid)
        .map_err(|e| format!("bringing up the loopback of the new network namespace: {e}"))
}

// Runs in the helper.
fn exec_here(req: ExecRequest, security: ExecSecurity) -> std::result::Result<i32, String> {
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

/// One request for a helper.
#[derive(Serialize, Deserialize)]
pub(crate) enum Job {
    Create(CreateRequest),
    /// An exec, and what our executor applies (see [`crate::exec_security`]).
    Exec(ExecRequest, Box<ExecSecurity>),
    /// Writes the helper's pid and its parent's, then each open descriptor
    /// and what it points at, to the stdout it was given, and replies with
    /// its pid: what the transport's own test checks.
    Describe,
}

impl Job {
    /// Runs in the helper, with the stdio the request passed.
    pub(crate) fn run(self, stdio: [Option<OwnedFd>; 3]) -> Reply {
        let stdio = Stdio::from_fds(stdio);
        match self {
            Job::Create(req) => create_here(CreateRequest { stdio, ..req }),
            Job::Exec(req, security) => exec_here(ExecRequest { stdio, ..req }, *security),
            Job::Describe => describe_here(stdio),
        }
    }
}

fn describe_here(stdio: Stdio) -> Reply {
    use std::io::Write;
    let out = stdio.stdout.ok_or("no stdout to describe to")?;
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    let pid = std::process::id();
    let mut text = format!("{pid} {ppid}\n");
    for entry in std::fs::read_dir("/proc/self/fd").map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let target = std::fs::read_link(&path).unwrap_or_default();
        let fd = path.file_name().unwrap_or_default().to_string_lossy();
        text += &format!("{fd} {}\n", target.display());
    }
    std::fs::File::from(out)
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(pid as i32)
}

/// Runs `job` in a helper started from a thread that outlives its children: the
/// process it creates is that thread's child (parent_thread.rs says why).
/// `stdio` is closed here once the helper has it.
fn in_helper(job: Job, stdio: Stdio, id: String, action: &'static str) -> Result<i32> {
    crate::parent_thread::run(move || run_in_helper(job, stdio.fds()))
        .map_err(|source| RuntimeError::HelperThread { action, source })?
        .map_err(|source| RuntimeError::Helper { action, source })?
        .map_err(|reason| RuntimeError::Spawn { id, action, reason })
}

/// Runs [`Job::Describe`] in a helper, handing it `stdout`: the
/// transport's own check (tests/spawn_helper.rs), nothing else uses it.
#[doc(hidden)]
pub fn describe_in_helper(stdout: OwnedFd) -> Result<i32> {
    let stdio = Stdio {
        stdout: Some(stdout),
        ..Stdio::default()
    };
    in_helper(Job::Describe, stdio, String::new(), "describe")
}

/// Creates the container (init process waiting for Start); returns its pid.
pub fn create(mut req: CreateRequest) -> Result<i32> {
    let stdio = std::mem::take(&mut req.stdio);
    let id = req.id.clone();
    in_helper(Job::Create(req), stdio, id, "create")
}

/// Runs an additional process in a running container; returns its pid.
pub(crate) fn exec(mut req: ExecRequest, security: ExecSecurity) -> Result<i32> {
    let stdio = std::mem::take(&mut req.stdio);
    let id = req.container_id.clone();
    in_helper(Job::Exec(req, Box::new(security)), stdio, id, "exec")
}
