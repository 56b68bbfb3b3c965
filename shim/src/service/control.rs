//! Requests on a running task: signals, state, waiting, resources,
//! terminals, and the Checkpoint RPC.

use arch_runtime::oci_spec::runtime::LinuxResources;
use containerd_shim::api::{self, Status};
use containerd_shim::protos::events::task::{TaskCheckpointed, TaskPaused, TaskResumed};
use containerd_shim::protos::topics;
use containerd_shim::protos::types::task::ProcessInfo;

use super::{exited_at, timestamp, TaskService};
use crate::any::pack;
use crate::error::{Result, ShimError};
use crate::lifecycle::StopAction;
use crate::stats::to_metrics;

impl TaskService {
    pub fn kill(&self, req: api::KillRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        let process = c.process(&req.exec_id)?;
        let signal = req.signal as i32;
        if req.exec_id.is_empty() {
            match self.arch.on_signal(&c, signal, req.all)? {
                StopAction::Checkpointing => return Ok(()),
                // Stragglers of an ended container still get a kill-all.
                StopAction::AlreadyExited if !req.all => return Ok(()),
                StopAction::AlreadyExited | StopAction::Deliver => {}
            }
            if req.all {
                return Ok(self.runtime.kill(&req.id, signal, true)?);
            }
        }
        let (pid, stopped) = {
            let st = process.state();
            (st.pid, st.status == Status::STOPPED)
        };
        let target = match process.target() {
            Some(t) if !stopped && pid > 0 => t,
            _ => return Err(ShimError::NotFound("process already finished".into())),
        };
        match self.runtime.signal(&target, signal) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => {
                Err(ShimError::NotFound("process already finished".into()))
            }
            Err(nix::errno::Errno::EINVAL) => Err(ShimError::InvalidArgument(format!(
                "invalid signal {signal}"
            ))),
            Err(e) => Err(ShimError::Internal(format!("kill {pid}: {e}"))),
        }
    }

    pub fn state(&self, req: api::StateRequest) -> Result<api::StateResponse> {
        let c = self.container(&req.id)?;
        let process = c.process(&req.exec_id)?;
        let st = process.state();
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle().display().to_string(),
            pid: st.pid as u32,
            status: st.status.into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: st.exit.as_ref().map_or(0, |e| e.code),
            exited_at: exited_at(&st.exit),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    pub fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse> {
        let exit = self.process(&req.id, &req.exec_id)?.wait();
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    pub fn pids(&self, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let processes = self
            .runtime
            .pids(&req.id)?
            .into_iter()
            .map(|pid| ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    pub fn pause(&self, req: api::PauseRequest) -> Result<()> {
        let init = self.process(&req.id, "")?;
        self.runtime.pause(&req.id)?;
        init.set_status(Status::PAUSED);
        self.events.send(
            topics::TASK_PAUSED_EVENT_TOPIC,
            TaskPaused {
                container_id: req.id,
                ..Default::default()
            },
        );
        Ok(())
    }

    pub fn resume(&self, req: api::ResumeRequest) -> Result<()> {
        let init = self.process(&req.id, "")?;
        self.runtime.resume(&req.id)?;
        init.set_status(Status::RUNNING);
        self.events.send(
            topics::TASK_RESUMED_EVENT_TOPIC,
            TaskResumed {
                container_id: req.id,
                ..Default::default()
            },
        );
        Ok(())
    }

    pub fn resize_pty(&self, req: api::ResizePtyRequest) -> Result<()> {
        let process = self.process(&req.id, &req.exec_id)?;
        process
            .with_io(|io| io.resize(req.width, req.height))
            .unwrap_or_else(|| Err(std::io::Error::other("process has no io")))
            .map_err(|e| ShimError::FailedPrecondition(format!("resize pty: {e}")))
    }

    pub fn close_io(&self, req: api::CloseIORequest) -> Result<()> {
        let process = self.process(&req.id, &req.exec_id)?;
        if req.stdin {
            process.with_io(|io| io.close_stdin());
        }
        Ok(())
    }

    pub fn update(&self, req: api::UpdateTaskRequest) -> Result<()> {
        let resources: LinuxResources = serde_json::from_slice(&req.resources.value)
            .map_err(|e| ShimError::InvalidArgument(format!("invalid resources: {e}")))?;
        self.container(&req.id)?;
        Ok(self.runtime.update(&req.id, &resources)?)
    }

    pub fn stats(&self, req: api::StatsRequest) -> Result<api::StatsResponse> {
        self.container(&req.id)?;
        let stats = self.runtime.stats(&req.id)?;
        let any = pack(&to_metrics(&stats)).map_err(|e| ShimError::Internal(e.to_string()))?;
        Ok(api::StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    pub fn connect(&self, req: api::ConnectRequest) -> Result<api::ConnectResponse> {
        let task_pid = self.process(&req.id, "").map(|p| p.pid()).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: task_pid as u32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    /// containerd's Checkpoint RPC; see lifecycle/checkpoint_rpc.rs.
    pub fn checkpoint(&self, req: api::CheckpointTaskRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        let image_dir = self.arch.checkpoint(&c, &req)?;
        self.events.send(
            topics::TASK_CHECKPOINTED_EVENT_TOPIC,
            TaskCheckpointed {
                container_id: req.id,
                checkpoint: image_dir.display().to_string(),
                ..Default::default()
            },
        );
        Ok(())
    }
}
