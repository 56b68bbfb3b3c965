//! The shim process's lifecycle: `delete` (clean up after a dead shim)
//! and the task service the daemon serves (serve.rs); `start` is start/.

use std::path::PathBuf;

use arch_host::paths::state_root;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arch_runtime::{ContainerHandle, Runtime, RuntimeError};
use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Error, ExitSignal, Flags, Shim, StartOpts};

use crate::events::EventSender;
use crate::mounts::HostMounts;
use crate::runtime_impl::Libcontainer;
use crate::seams::RootfsMounts;
use crate::service::{timestamp, watch_reaper, ServiceDeps, TaskService};
use crate::task::ArchTask;
use crate::timeouts;

pub struct ArchShim {
    namespace: String,
    id: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

impl Shim for ArchShim {
    type T = ArchTask;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        ArchShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    /// Never called: `start` is the start module's (BootstrapParams,
    /// runtime options, the task API version per containerd).
    fn start_shim(&mut self, _opts: StartOpts) -> containerd_shim::Result<String> {
        Err(Error::Other("start is handled by the start module".into()))
    }

    /// Called by containerd when the shim died: kill what is left of the
    /// container and remove its cgroups, state and rootfs mount.
    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // containerd gives this action 5 s (io.containerd.timeout.shim.cleanup)
        // and then kills it: the kill and the temporaries come first.
        // CRIU first: a worker left of a dump still holds the tasks seized.
        let strays = arch_runtime::kill_stray_criu(&self.bundle);
        if !strays.is_empty() {
            log::warn!("{}: killed CRIU left by the dead shim: {strays:?}", self.id);
        }
        let runtime = Runtime::new(state_root(&self.namespace));
        let killed = kill_orphan(&runtime, &self.id, &self.bundle);
        HostMounts.unmount(&self.bundle.join("rootfs"));
        // A checkpoint this shim was writing when it died is no use to anyone.
        if let Ok(cfg) = arch_checkpoint::ArchConfig::from_process_env() {
            let mut store = arch_image::ImageStore::new(&cfg.checkpoint_root);
            if cfg.mode == arch_checkpoint::Mode::NetworkFs {
                store = store.with_lease(cfg.claim_lease);
            }
            if let Err(e) = store.cleanup_stale_temps(timeouts::STALE_TEMP_AGE) {
                log::warn!("cleaning checkpoint temporaries: {e}");
            }
        }
        let removed = killed.and_then(|handle| match handle {
            Some(handle) => delete_retrying(handle),
            None => Ok(()),
        });
        removed.map_err(|e| Error::Other(e.to_string()))?;
        Ok(DeleteResponse {
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(timestamp(SystemTime::now())).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    /// The publisher goes unused: it asks every event for its protobuf
    /// descriptor (see any.rs); ours dials containerd itself.
    fn create_task_service(&self, _publisher: RemotePublisher) -> Self::T {
        self.task_service(std::env::var("TTRPC_ADDRESS").unwrap_or_default())
    }
}

impl ArchShim {
    /// The task service, publishing its events to containerd's ttrpc
    /// `events_address`.
    pub fn task_service(&self, events_address: String) -> ArchTask {
        let events = EventSender::spawn(events_address, self.namespace.clone());
        let service = TaskService::new(ServiceDeps {
            namespace: self.namespace.clone(),
            runtime: Arc::new(Libcontainer(Runtime::new(state_root(&self.namespace)))),
            mounts: Arc::new(HostMounts),
            events: Arc::new(events),
            arch_config: arch_checkpoint::ArchConfig::from_process_env(),
            exit_signal: self.exit.clone(),
        });
        if let Err(e) = watch_reaper(&service) {
            // Without exits no task could ever be reported stopped.
            log::error!("cannot watch process exits: {e}");
            std::process::exit(1);
        }
        ArchTask(service)
    }
}

/// Kills what is left of a dead shim's container; returns it for removal
/// when it could be loaded. Its libcontainer state may be torn (the shim
/// died while libcontainer rewrote it): then the cgroup recorded at Create
/// is killed and removed instead, and the state with it.
fn kill_orphan(
    runtime: &Runtime,
    id: &str,
    bundle: &std::path::Path,
) -> Result<Option<ContainerHandle>, RuntimeError> {
    match runtime.load(id) {
        Ok(mut handle) => {
            let _ = handle.kill(libc::SIGKILL, true);
            Ok(Some(handle))
        }
        Err(RuntimeError::NotFound(_)) => Ok(None),
        Err(e) => {
            log::warn!("{id}: {e}: killing the cgroup recorded at Create");
            arch_runtime::kill_recorded_cgroup(id, bundle, timeouts::DELETE_RETRY)?;
            runtime.remove_state(id).map(|()| None)
        }
    }
}

/// Removes a killed container; SIGKILL is asynchronous, and a cgroup with
/// dying tasks cannot be removed yet.
fn delete_retrying(mut handle: ContainerHandle) -> Result<(), RuntimeError> {
    let deadline = Instant::now() + timeouts::DELETE_RETRY;
    let mut deleted = handle.delete();
    while deleted.is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let _ = handle.kill(libc::SIGKILL, true);
        deleted = handle.delete();
    }
    deleted
}
