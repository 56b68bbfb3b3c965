//! ttrpc glue: each Task method delegates to TaskService.

use std::sync::Arc;

use containerd_shim::api::{self, Empty};
use containerd_shim::{Task, TtrpcContext, TtrpcResult};

use crate::service::TaskService;

pub struct ArchTask(pub Arc<TaskService>);

fn empty(r: crate::error::Result<()>) -> TtrpcResult<Empty> {
    r.map(|_| Empty::new()).map_err(Into::into)
}

impl Task for ArchTask {
    fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        log::info!(
            "create {} bundle={} terminal={}",
            req.id,
            req.bundle,
            req.terminal
        );
        Ok(self.0.create(req)?)
    }
    fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        Ok(self.0.start(req)?)
    }
    fn delete(
        &self,
        _: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        Ok(self.0.delete(req)?)
    }
    fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        Ok(self.0.state(req)?)
    }
    fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        empty(self.0.kill(req))
    }
    fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        empty(self.0.exec(req))
    }
    fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        Ok(self.0.wait(req)?)
    }
    fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        Ok(self.0.pids(req)?)
    }
    fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        empty(self.0.pause(req))
    }
    fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        empty(self.0.resume(req))
    }
    fn resize_pty(&self, _: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<Empty> {
        empty(self.0.resize_pty(req))
    }
    fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        empty(self.0.close_io(req))
    }
    fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        empty(self.0.update(req))
    }
    fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        Ok(self.0.stats(req)?)
    }
    fn connect(
        &self,
        _: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        Ok(self.0.connect(req)?)
    }
    fn shutdown(&self, _: &TtrpcContext, req: api::ShutdownRequest) -> TtrpcResult<Empty> {
        empty(self.0.shutdown(req))
    }
    fn checkpoint(&self, _: &TtrpcContext, req: api::CheckpointTaskRequest) -> TtrpcResult<Empty> {
        log::info!("checkpoint {} path={}", req.id, req.path);
        empty(self.0.checkpoint(req))
    }
}
