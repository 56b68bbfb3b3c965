//! The Task service: containerd's task API as a thin layer over the
//! container registry, the runtime seam and the ARCH lifecycle. Each RPC
//! lives with its kind: create.rs (Create, Start), checkpoint_restore.rs
//! (Create from containerd's checkpoint), exec.rs, control.rs (signals,
//! state, resources, Checkpoint), teardown.rs (Delete, Shutdown).

mod checkpoint_restore;
mod control;
mod create;
mod exec;
mod runtime_options;
mod teardown;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use arch_checkpoint::{ArchConfig, CheckpointError};
use arch_runtime::oci_spec::runtime::Spec;
use containerd_shim::monitor::{ExitEvent, Subject, Topic};
use containerd_shim::protos::events::task::TaskExit;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics;
use containerd_shim::ExitSignal;

use crate::container::Container;
use crate::error::{io_err, Result, ShimError};
use crate::exit_hold::ExitHold;
use crate::exits::{ExitIndex, Owner};
use crate::lifecycle::Arch;
use crate::process::{ExitInfo, Process};
use crate::seams::{ContainerRuntime, EventSink, RootfsMounts};

pub use checkpoint_restore::CheckpointRestore;

/// What a task service is built from.
pub struct ServiceDeps {
    pub namespace: String,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub mounts: Arc<dyn RootfsMounts>,
    pub events: Arc<dyn EventSink>,
    /// The host's ARCH configuration; an error fails ARCH containers only.
    pub arch_config: std::result::Result<ArchConfig, CheckpointError>,
    /// Signalled when the shim may exit (Shutdown with no container left).
    pub exit_signal: Arc<ExitSignal>,
}

pub struct TaskService {
    runtime: Arc<dyn ContainerRuntime>,
    mounts: Arc<dyn RootfsMounts>,
    events: Arc<dyn EventSink>,
    arch: Arch,
    exit_signal: Arc<ExitSignal>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    exits: Mutex<ExitIndex>,
    exit_hold: ExitHold,
}

impl TaskService {
    pub fn new(deps: ServiceDeps) -> Arc<Self> {
        let arch = Arch::new(
            &deps.namespace,
            deps.arch_config,
            deps.runtime.clone(),
            deps.mounts.clone(),
        );
        Arc::new(TaskService {
            runtime: deps.runtime,
            mounts: deps.mounts,
            events: deps.events,
            arch,
            exit_signal: deps.exit_signal,
            containers: Mutex::new(HashMap::new()),
            exits: Mutex::new(ExitIndex::default()),
            exit_hold: ExitHold::default(),
        })
    }

    /// The container `id`, or NotFound.
    fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.containers
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("container {id} not found")))
    }

    fn process(&self, id: &str, exec_id: &str) -> Result<Arc<Process>> {
        self.container(id)?.process(exec_id)
    }

    /// A process of `container_id` got its pid: match its exit from now on
    /// (or at once, if the reaper saw it exit already).
    fn register(&self, container_id: &str, process: &Arc<Process>, pid: i32) {
        process.set_created(pid);
        // Pinned now, so a later Kill reaches this process or nobody. If the
        // reaper collected it already, the pin finds nothing, or a newcomer
        // that is not the shim's child (see ProcessRef::pin), or the early
        // exit below turns it to `gone`.
        process.pin(arch_runtime::ProcessRef::pin(pid));
        let owner = Owner {
            container_id: container_id.to_string(),
            process: process.clone(),
        };
        let early = self.exits.lock().unwrap().register(pid, owner);
        if let Some((owner, code)) = early {
            // Reaped already: whatever holds the pid now is someone else.
            process.pin(arch_runtime::ProcessRef::gone(pid));
            self.process_exited(owner, pid, code);
        }
    }

    /// The reaper saw `pid` exit with `code`.
    pub(crate) fn reaped(self: &Arc<Self>, pid: i32, code: i32) {
        let owner = self.exits.lock().unwrap().exited(pid, code);
        let Some(owner) = owner else { return };
        // Draining output may take a moment; never hold up the reaper.
        let service = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("exit-{pid}"))
            .spawn(move || service.process_exited(owner, pid, code));
        if let Err(e) = spawned {
            log::error!("no thread to report the exit of {pid}: {e}");
        }
    }

    fn process_exited(&self, owner: Owner, pid: i32, code: i32) {
        let Some((owner, pid, code)) = self.exit_hold.keep((owner, pid, code)) else {
            return;
        };
        let is_init = owner.process.exec_id.is_empty();
        if is_init {
            if let Ok(c) = self.container(&owner.container_id) {
                self.arch.await_stop(&c);
            }
        }
        if !owner.process.set_exited(code) {
            return;
        }
        let exit = owner.process.state().exit.clone();
        let id = if is_init {
            owner.container_id.clone()
        } else {
            owner.process.exec_id.clone()
        };
        log::info!(
            "process {id} (pid {pid}) of {} exited with {code}",
            owner.container_id
        );
        self.events.send(
            topics::TASK_EXIT_EVENT_TOPIC,
            TaskExit {
                container_id: owner.container_id,
                id,
                pid: pid as u32,
                exit_status: code as u32,
                exited_at: exited_at(&exit),
                ..Default::default()
            },
        );
    }
}

/// Feeds the containerd-shim crate's reaper into `service` (subscribe
/// before any process exists, so no exit is missed).
pub fn watch_reaper(service: &Arc<TaskService>) -> std::io::Result<()> {
    let subscription = containerd_shim::monitor::monitor_subscribe(Topic::All)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let weak: Weak<TaskService> = Arc::downgrade(service);
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            for ExitEvent { subject, exit_code } in subscription.rx.iter() {
                let Subject::Pid(pid) = subject else { continue };
                let Some(service) = weak.upgrade() else {
                    return;
                };
                service.reaped(pid, exit_code);
            }
        })
        .map(|_| ())
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

fn exited_at(exit: &Option<ExitInfo>) -> MessageField<Timestamp> {
    exit.as_ref().map(|e| timestamp(e.at)).into()
}

/// Reads the bundle's config.json, so a bad spec fails Create with a clear
/// message before anything is mounted or forked.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    if !path.exists() {
        return Err(ShimError::InvalidArgument(format!(
            "bundle {}: config.json not found",
            bundle.display()
        )));
    }
    let bytes = std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
    // serde_json directly: its errors say which field and where.
    let spec: Spec = serde_json::from_slice(&bytes).map_err(|e| {
        ShimError::InvalidArgument(format!(
            "bundle {}: invalid config.json: {e}",
            bundle.display()
        ))
    })?;
    if spec.process().is_none() {
        return Err(ShimError::InvalidArgument(format!(
            "bundle {}: config.json has no process",
            bundle.display()
        )));
    }
    Ok(spec)
}
