//! The real [`ContainerRuntime`]: arch-runtime (libcontainer in spawn helpers,
//! CRIU through rust-criu).

use std::path::Path;

use arch_runtime::oci_spec::runtime::LinuxResources;
use arch_runtime::{
    CgroupDriver, CgroupStats, CreateRequest, DumpOptions, ExecRequest, ProcessRef, RestoreRequest,
    Restored, Result, Runtime, StreamedFile,
};
use nix::sys::signal::Signal;

use crate::seams::ContainerRuntime;

pub struct Libcontainer(pub Runtime);

impl ContainerRuntime for Libcontainer {
    fn state_root(&self) -> &Path {
        self.0.state_root()
    }
    fn record_cgroup(
        &self,
        id: &str,
        bundle: &Path,
        cgroups_path: Option<&Path>,
        driver: CgroupDriver,
    ) -> Result<()> {
        arch_runtime::record_cgroup(bundle, id, cgroups_path, driver)
    }
    fn create(&self, req: CreateRequest) -> Result<i32> {
        self.0.create(req)
    }
    fn start(&self, id: &str) -> Result<()> {
        self.0.load(id)?.start()
    }
    fn exec(&self, req: ExecRequest) -> Result<i32> {
        self.0.exec(req)
    }
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        self.0.load(id)?.kill(signal, all)
    }
    fn signal(&self, target: &ProcessRef, signal: i32) -> nix::Result<()> {
        Signal::try_from(signal)?;
        target.signal(signal)
    }
    fn pause(&self, id: &str) -> Result<()> {
        self.0.load(id)?.pause()
    }
    fn resume(&self, id: &str) -> Result<()> {
        self.0.load(id)?.resume()
    }
    fn end_frozen(&self, id: &str) -> Result<()> {
        self.0.load(id)?.end_frozen()
    }
    fn delete(&self, id: &str) -> Result<()> {
        self.0.load(id)?.delete()
    }
    fn pids(&self, id: &str) -> Result<Vec<i32>> {
        self.0.load(id)?.cgroup()?.pids()
    }
    fn stats(&self, id: &str) -> Result<CgroupStats> {
        self.0.load(id)?.cgroup()?.stats()
    }
    fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        self.0.load(id)?.cgroup()?.update(resources)
    }
    fn watch_oom(&self, id: &str, on_oom: Box<dyn Fn() + Send>) -> Result<()> {
        self.0.load(id)?.cgroup()?.watch_oom(on_oom)
    }
    fn checkpoint(&self, id: &str, opts: &DumpOptions) -> Result<Vec<StreamedFile>> {
        self.0.load(id)?.checkpoint(opts)
    }
    fn criu_can_stream(&self) -> bool {
        // Asked once per shim: CRIU is not replaced under a running shim.
        static CAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *CAN.get_or_init(arch_runtime::criu_can_stream)
    }
    fn restore(&self, req: RestoreRequest) -> Result<Restored> {
        self.0.restore(req)
    }
    fn criu_version(&self) -> Result<String> {
        arch_runtime::criu_version()
    }
}
