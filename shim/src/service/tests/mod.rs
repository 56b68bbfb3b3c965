//! The task service with a stub runtime, stub mounts and an event log:
//! the request flows — exits, stop-checkpoints, restores and their
//! fallbacks, records — without root, containers or CRIU.

mod create;
mod exits;
mod generations;
mod restore;
mod signals;
mod stop;
mod stubs;
mod teardown;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arch_checkpoint::ArchConfig;
use containerd_shim::api;
use containerd_shim::ExitSignal;

use super::{ServiceDeps, TaskService};
use stubs::{overlay, EventLog, StubMounts, StubRuntime};

pub const NS: &str = "ns1";
/// Long enough for any step here; short enough to fail a hung test fast.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub runtime: Arc<StubRuntime>,
    pub mounts: Arc<StubMounts>,
    pub events: Arc<EventLog>,
    pub service: Arc<TaskService>,
}

impl Rig {
    pub fn new() -> Self {
        Self::with_kill_deadline(Duration::from_secs(30))
    }

    pub fn with_kill_deadline(kill_deadline: Duration) -> Self {
        Self::with_config(|c| c.kill_deadline = kill_deadline)
    }

    /// A rig whose host configuration `set` adjusts.
    pub fn with_config(set: impl FnOnce(&mut ArchConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Arc::new(StubRuntime::default());
        let mounts = Arc::new(StubMounts::default());
        let events = EventLog::new();
        let mut config = ArchConfig {
            checkpoint_root: dir.path().join("checkpoint"),
            ..ArchConfig::default()
        };
        set(&mut config);
        let service = TaskService::new(ServiceDeps {
            namespace: NS.into(),
            runtime: runtime.clone(),
            mounts: mounts.clone(),
            events: events.clone(),
            arch_config: Ok(config),
            exit_signal: Arc::new(ExitSignal::default()),
        });
        Rig {
            dir,
            runtime,
            mounts,
            events,
            service,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("checkpoint")
    }

    /// A bundle whose process opts in to ARCH under `key` (None: plain).
    pub fn bundle(&self, id: &str, key: Option<&str>) -> PathBuf {
        let bundle = self.dir.path().join("bundles").join(id);
        std::fs::create_dir_all(&bundle).unwrap();
        let env = match key {
            Some(k) => format!(r#""ARCH_ENABLE=1","ARCH_KEY={k}""#),
            None => String::new(),
        };
        std::fs::write(
            bundle.join("config.json"),
            format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
                "process":{{"cwd":"/","args":["sh"],"env":[{env}],"user":{{"uid":0,"gid":0}}}}}}"#
            ),
        )
        .unwrap();
        bundle
    }

    /// Create: a fresh container's pid, or 0 for a staged restore.
    pub fn create(&self, id: &str, key: Option<&str>) -> u32 {
        let bundle = self.bundle(id, key);
        let layer = self.dir.path().join("layers").join(id);
        self.service
            .create(api::CreateTaskRequest {
                id: id.into(),
                bundle: bundle.display().to_string(),
                rootfs: vec![overlay(&layer)],
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("create {id}: {e}"))
            .pid
    }

    pub fn start(&self, id: &str) -> u32 {
        self.service
            .start(api::StartRequest {
                id: id.into(),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("start {id}: {e}"))
            .pid
    }

    pub fn kill(&self, id: &str, signal: i32) {
        self.service
            .kill(api::KillRequest {
                id: id.into(),
                signal: signal as u32,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("kill {id} {signal}: {e}"));
    }

    /// The reaper saw `pid` exit.
    pub fn exit(&self, pid: u32, code: i32) {
        self.service.reaped(pid as i32, code);
    }

    pub fn wait(&self, id: &str) -> u32 {
        self.service
            .wait(api::WaitRequest {
                id: id.into(),
                ..Default::default()
            })
            .unwrap()
            .exit_status
    }

    pub fn delete(&self, id: &str) {
        self.service
            .delete(api::DeleteRequest {
                id: id.into(),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("delete {id}: {e}"));
    }

    pub fn records(&self) -> Vec<arch_records::Record> {
        arch_records::read_all(&self.root()).unwrap().0
    }

    /// The namespace directory's entries (images and their sidecars).
    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join(NS))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "records")
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Runs a container under `key` to a committed stop-checkpoint and
    /// deletes it, leaving its image in the store.
    pub fn checkpointed(&self, id: &str, key: &str) {
        let pid = self.create(id, Some(key));
        self.start(id);
        self.kill(id, libc::SIGTERM);
        // CRIU's dump ends the tree; the exit waits for the commit.
        self.exit(pid, 137);
        assert_eq!(self.wait(id), 137);
        self.delete(id);
        assert_eq!(self.entries(), [key], "the image is committed");
    }
}
