//! The side effects behind the task service and the ARCH lifecycle, as
//! small traits: the container runtime (libcontainer and CRIU), the rootfs
//! mounts, and the event sink. The real implementations sit beside what
//! they wrap (runtime_impl.rs, mounts.rs, events.rs); the unit tests in
//! service/tests.rs use stubs, so the flows run without root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arch_runtime::oci_spec::runtime::LinuxResources;
use arch_runtime::{
    CgroupDriver, CgroupStats, CreateRequest, DumpOptions, ExecRequest, ProcessRef, RestoreRequest,
    Restored, Result, StreamedFile,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::types::mount::Mount;

use crate::any::{pack, Packable};
use crate::mountinfo::NoUpperdir;

/// Containers and processes, by container id.
pub trait ContainerRuntime: Send + Sync {
    /// libcontainer's state directory for this shim's namespace.
    fn state_root(&self) -> &Path;
    /// Records, in `bundle`, the cgroup and driver container `id` is made
    /// with: the dead-shim cleanup's fallback (see arch_runtime::orphan).
    fn record_cgroup(
        &self,
        id: &str,
        bundle: &Path,
        cgroups_path: Option<&Path>,
        driver: CgroupDriver,
    ) -> Result<()>;
    /// Creates the container; its init waits for [`Self::start`]. Returns its pid.
    fn create(&self, req: CreateRequest) -> Result<i32>;
    fn start(&self, id: &str) -> Result<()>;
    /// Runs another process in a running container; returns its pid.
    fn exec(&self, req: ExecRequest) -> Result<i32>;
    /// Signals the init, or every process of the container with `all`.
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()>;
    /// Signals one process the shim started, through its pidfd (ESRCH
    /// once it is gone, even if its pid was reused).
    fn signal(&self, target: &ProcessRef, signal: i32) -> nix::Result<()>;
    fn pause(&self, id: &str) -> Result<()>;
    fn resume(&self, id: &str) -> Result<()>;
    /// Ends a frozen container whose checkpoint is committed: SIGKILL to
    /// every task, then thawed (whatever status libcontainer records).
    fn end_frozen(&self, id: &str) -> Result<()>;
    /// Kills what is left and removes the cgroup and the state.
    fn delete(&self, id: &str) -> Result<()>;
    fn pids(&self, id: &str) -> Result<Vec<i32>>;
    fn stats(&self, id: &str) -> Result<CgroupStats>;
    fn update(&self, id: &str, resources: &LinuxResources) -> Result<()>;
    /// Calls `on_oom` each time the OOM killer acts in the container.
    fn watch_oom(&self, id: &str, on_oom: Box<dyn Fn() + Send>) -> Result<()>;
    /// CRIU-dumps the container into `opts.image_dir`.
    /// A streamed dump returns the streamer's records of what it stored.
    fn checkpoint(&self, id: &str, opts: &DumpOptions) -> Result<Vec<StreamedFile>>;
    /// Whether this host's CRIU can stream its images (`--stream`).
    fn criu_can_stream(&self) -> bool;
    /// CRIU-restores a checkpointed tree as the container `req.id`.
    fn restore(&self, req: RestoreRequest) -> Result<Restored>;
    /// The installed CRIU's version ("4.1.1"); an error if it cannot run.
    fn criu_version(&self) -> Result<String>;
}

/// The container's root filesystem mounts.
pub trait RootfsMounts: Send + Sync {
    /// Mounts `mounts` in order at `target`.
    fn mount(&self, target: &Path, mounts: &[Mount]) -> std::io::Result<()>;
    /// Unmounts everything at or below `target` (failures are logged).
    fn unmount(&self, target: &Path);
    /// Back to the pristine snapshot: unmount, empty the overlay's upper
    /// and work directories, mount again.
    fn reset(&self, target: &Path, mounts: &[Mount]) -> std::io::Result<()>;
    /// The upperdir of an overlay someone else mounted at `rootfs`.
    fn engine_upperdir(&self, rootfs: &Path) -> std::result::Result<PathBuf, NoUpperdir>;
}

/// containerd's event service.
pub trait EventSink: Send + Sync {
    /// Queues an event; events reach containerd in the order queued.
    fn publish(&self, topic: &'static str, event: Any);
    /// Waits (bounded) until every queued event was handed to containerd.
    fn flush(&self, limit: Duration);
}

impl dyn EventSink {
    pub fn send<E: Packable>(&self, topic: &'static str, event: E) {
        match pack(&event) {
            Ok(any) => self.publish(topic, any),
            Err(e) => log::error!("event {topic} not sent: cannot encode it: {e}"),
        }
    }
}
