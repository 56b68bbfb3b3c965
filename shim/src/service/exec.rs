//! Exec: an extra process in a running container, added by Exec and
//! started by Start.

use arch_runtime::oci_spec::runtime::Process as OciProcess;
use arch_runtime::ExecRequest;
use containerd_shim::api::{self, Status};
use containerd_shim::protos::events::task::{TaskExecAdded, TaskExecStarted};
use containerd_shim::protos::topics;

use super::TaskService;
use crate::container::Container;
use crate::error::{io_err, Result, ShimError};
use crate::process::Process;
use crate::spawning::spawn_with_stdio;
use crate::stdio::StdioPaths;

impl TaskService {
    pub fn exec(&self, req: api::ExecProcessRequest) -> Result<()> {
        if req.exec_id.is_empty() || req.exec_id.contains('/') || req.exec_id.starts_with('.') {
            return Err(ShimError::InvalidArgument(format!(
                "invalid exec id {:?}",
                req.exec_id
            )));
        }
        let mut spec: OciProcess = serde_json::from_slice(&req.spec.value).map_err(|e| {
            ShimError::InvalidArgument(format!("exec {}: invalid process spec: {e}", req.exec_id))
        })?;
        // The request decides whether the exec gets a terminal, as runc's
        // shim has it: clients (docker exec -t, CRI) set only the request.
        spec.set_terminal(Some(req.terminal));
        let c = self.container(&req.id)?;
        if c.init().state().status == Status::STOPPED {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is stopped",
                req.id
            )));
        }
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            // The container's IoUid/IoGid (runtime options at Create).
            io_owner: c.init().stdio.io_owner,
        };
        let process = c.add_exec(Process::new(&req.exec_id, stdio))?;
        let path = c.exec_spec_path(&process.exec_id);
        let json = serde_json::to_vec(&spec).map_err(|e| ShimError::Internal(e.to_string()))?;
        if let Err(e) = std::fs::write(&path, json) {
            c.remove_exec(&process.exec_id);
            return Err(io_err(format!("writing {}", path.display()))(e));
        }
        self.events.send(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id,
                exec_id: req.exec_id,
                ..Default::default()
            },
        );
        Ok(())
    }

    pub(super) fn start_exec(&self, c: &Container, exec_id: &str) -> Result<i32> {
        let process = c.process(exec_id)?;
        let spec_path = c.exec_spec_path(exec_id);
        let spawned = spawn_with_stdio(&process.stdio, |console_socket, stdio| {
            Ok(self.runtime.exec(ExecRequest {
                container_id: c.id().to_string(),
                state_root: self.runtime.state_root().to_path_buf(),
                process_json: spec_path.clone(),
                console_socket,
                stdio,
            })?)
        });
        let (pid, io) = match spawned {
            Ok(v) => v,
            Err(e) => {
                // Nothing runs: the exec is over, its streams closed, so the
                // client waiting on it gets its answer (and can delete it).
                process.close_io();
                process.set_exited(255);
                return Err(e);
            }
        };
        process.set_io(io);
        process.set_status(Status::RUNNING);
        self.register(c.id(), &process, pid);
        self.events.send(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            TaskExecStarted {
                container_id: c.id().to_string(),
                exec_id: exec_id.to_string(),
                pid: pid as u32,
                ..Default::default()
            },
        );
        Ok(pid)
    }
}
