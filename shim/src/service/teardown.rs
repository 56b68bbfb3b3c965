//! Delete of a process or container, and Shutdown of the shim.

use containerd_shim::api::{self, Status};
use containerd_shim::protos::events::task::TaskDelete;
use containerd_shim::protos::topics;

use super::{exited_at, TaskService};
use crate::error::{Result, ShimError};
use crate::timeouts;

impl TaskService {
    pub fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        let c = self.container(&req.id)?;
        let process = c.process(&req.exec_id)?;
        let (pid, status, exit) = {
            let st = process.state();
            (st.pid, st.status, st.exit.clone())
        };
        if matches!(status, Status::RUNNING | Status::PAUSED) {
            return Err(ShimError::FailedPrecondition(format!(
                "cannot delete process {} of {}: it is still running",
                if req.exec_id.is_empty() {
                    &req.id
                } else {
                    &req.exec_id
                },
                req.id
            )));
        }
        if req.exec_id.is_empty() {
            // The exit may have been reported while an image is still being
            // written (a periodic commit when the workload ended, a stop
            // commit past the kill deadline); removing the cgroup and the
            // rootfs, then the shim, now would cut it short and lose it.
            if let Some(state) = c.arch() {
                state.periodic.stop();
            }
            self.arch
                .await_commits(Some(&req.id), timeouts::COMMIT_WAIT);
        }
        self.exits.lock().unwrap().forget(pid);
        process.close_io();
        let exit_status = exit.as_ref().map_or(0, |e| e.code);
        if !req.exec_id.is_empty() {
            c.remove_exec(&req.exec_id);
        } else {
            self.containers.lock().unwrap().remove(&req.id);
            match self.runtime.delete(&req.id) {
                Ok(()) | Err(arch_runtime::RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            if c.rootfs().shim_mounted() {
                self.mounts.unmount(&c.rootfs().target);
            }
            arch_faults::disarm(&req.id);
            self.events.send(
                topics::TASK_DELETE_EVENT_TOPIC,
                TaskDelete {
                    container_id: req.id.clone(),
                    pid: pid as u32,
                    exit_status,
                    exited_at: exited_at(&exit),
                    id: req.id.clone(),
                    ..Default::default()
                },
            );
        }
        Ok(api::DeleteResponse {
            pid: pid as u32,
            exit_status,
            exited_at: exited_at(&exit),
            ..Default::default()
        })
    }

    pub fn shutdown(&self, _req: api::ShutdownRequest) -> Result<()> {
        if self.containers.lock().unwrap().is_empty() {
            // Only after a Delete that gave up waiting: the shim's exit
            // would kill the commit mid-write.
            self.arch.await_commits(None, timeouts::COMMIT_WAIT);
            self.events.flush(timeouts::EVENTS_FLUSH);
            self.exit_signal.signal();
        }
        Ok(())
    }
}
