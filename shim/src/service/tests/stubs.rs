//! Stand-ins for the runtime, the mounts and containerd's event service:
//! they record what the service asked for and answer as scripted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arch_runtime::oci_spec::runtime::LinuxResources;
use arch_runtime::{
    CgroupStats, CreateRequest, DumpOptions, ExecRequest, ProcessRef, RestoreRequest, Restored,
    Result, RuntimeError, StreamedFile,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::types::mount::Mount;

use crate::mountinfo::NoUpperdir;
use crate::seams::{ContainerRuntime, EventSink, RootfsMounts};

/// Pids no process on the host has (above any pid_max), so nothing the
/// service does with them (reading /proc) reaches a real process.
pub const FIRST_PID: i32 = 4_500_000;

/// What the stub runtime was asked to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Create(String),
    Start(String),
    Exec(String),
    Kill(String, i32, bool),
    Signal(i32, i32),
    Delete(String),
    Pause(String),
    Resume(String),
    EndFrozen(String),
    /// A dump of a container; true: of its frozen tree (a stop-checkpoint).
    Checkpoint(String, bool),
    Restore(String),
}

#[derive(Default)]
pub struct Script {
    /// A dump fails with this CRIU-ish error.
    pub dump_fails: bool,
    /// A dump waits for a message on this channel before it returns.
    pub dump_gate: Option<Receiver<()>>,
    /// A start waits for a message on this channel before it returns.
    pub start_gate: Option<Receiver<()>>,
    /// A restore fails.
    pub restore_fails: bool,
    /// This many restores fail, then they succeed.
    pub restores_failing: usize,
    /// The next create returns this pid (a real child of the test).
    pub create_pid: Option<i32>,
    /// Signals really go through the process's pin (pidfd).
    pub real_signals: bool,
}

#[derive(Default)]
pub struct StubRuntime {
    pub calls: Mutex<Vec<Call>>,
    pub script: Mutex<Script>,
    next_pid: Mutex<i32>,
    pids: Mutex<HashMap<String, i32>>,
    state_root: PathBuf,
}

impl StubRuntime {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn call(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }

    fn new_pid(&self, id: &str) -> i32 {
        let mut next = self.next_pid.lock().unwrap();
        *next += 1;
        let pid = FIRST_PID + *next;
        self.pids.lock().unwrap().insert(id.to_string(), pid);
        pid
    }

    /// The pid the stub will give the next process.
    pub fn peek_pid(&self) -> i32 {
        FIRST_PID + *self.next_pid.lock().unwrap() + 1
    }
}

fn failed(id: &str, what: &str) -> RuntimeError {
    RuntimeError::Spawn {
        id: id.to_string(),
        action: "stub",
        reason: what.to_string(),
    }
}

impl ContainerRuntime for StubRuntime {
    fn state_root(&self) -> &Path {
        &self.state_root
    }
    fn record_cgroup(
        &self,
        _: &str,
        _: &std::path::Path,
        _: Option<&std::path::Path>,
        _: arch_runtime::CgroupDriver,
    ) -> Result<()> {
        Ok(())
    }
    fn create(&self, req: CreateRequest) -> Result<i32> {
        self.call(Call::Create(req.id.clone()));
        if let Some(pid) = self.script.lock().unwrap().create_pid.take() {
            return Ok(pid);
        }
        Ok(self.new_pid(&req.id))
    }
    fn start(&self, id: &str) -> Result<()> {
        self.call(Call::Start(id.to_string()));
        let gate = self.script.lock().unwrap().start_gate.take();
        if let Some(gate) = gate {
            let _ = gate.recv_timeout(Duration::from_secs(10));
        }
        Ok(())
    }
    fn exec(&self, req: ExecRequest) -> Result<i32> {
        self.call(Call::Exec(req.container_id.clone()));
        Ok(self.new_pid(&format!("exec-{}", req.container_id)))
    }
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        self.call(Call::Kill(id.to_string(), signal, all));
        Ok(())
    }
    fn signal(&self, target: &ProcessRef, signal: i32) -> nix::Result<()> {
        self.call(Call::Signal(target.pid(), signal));
        if self.script.lock().unwrap().real_signals {
            return target.signal(signal);
        }
        Ok(())
    }
    fn pause(&self, id: &str) -> Result<()> {
        self.call(Call::Pause(id.to_string()));
        Ok(())
    }
    fn resume(&self, id: &str) -> Result<()> {
        self.call(Call::Resume(id.to_string()));
        Ok(())
    }
    fn end_frozen(&self, id: &str) -> Result<()> {
        self.call(Call::EndFrozen(id.to_string()));
        Ok(())
    }
    fn delete(&self, id: &str) -> Result<()> {
        self.call(Call::Delete(id.to_string()));
        Ok(())
    }
    fn pids(&self, id: &str) -> Result<Vec<i32>> {
        Ok(self
            .pids
            .lock()
            .unwrap()
            .get(id)
            .copied()
            .into_iter()
            .collect())
    }
    fn stats(&self, id: &str) -> Result<CgroupStats> {
        Err(failed(id, "no stats in the stub"))
    }
    fn update(&self, _id: &str, _resources: &LinuxResources) -> Result<()> {
        Ok(())
    }
    fn watch_oom(&self, _id: &str, _on_oom: Box<dyn Fn() + Send>) -> Result<()> {
        Ok(())
    }
    fn criu_can_stream(&self) -> bool {
        false
    }
    fn checkpoint(&self, id: &str, opts: &DumpOptions) -> Result<Vec<StreamedFile>> {
        self.call(Call::Checkpoint(id.to_string(), opts.frozen));
        let gate = self.script.lock().unwrap().dump_gate.take();
        if let Some(gate) = gate {
            let _ = gate.recv_timeout(Duration::from_secs(10));
        }
        let dir = &opts.image_dir;
        std::fs::write(dir.join("pages-1.img"), b"memory").unwrap();
        std::fs::write(
            dir.join(arch_runtime::DESCRIPTORS),
            br#"["pipe:[1]","pipe:[2]","pipe:[3]"]"#,
        )
        .unwrap();
        if self.script.lock().unwrap().dump_fails {
            std::fs::write(dir.join("dump.log"), "Error (criu/x.c:1): stub says no\n").unwrap();
            return Err(failed(id, "criu dump"));
        }
        std::fs::write(dir.join("dump.log"), "ok\n").unwrap();
        Ok(Vec::new())
    }
    fn restore(&self, req: RestoreRequest) -> Result<Restored> {
        self.call(Call::Restore(req.id.clone()));
        let mut script = self.script.lock().unwrap();
        if script.restore_fails || script.restores_failing > 0 {
            script.restores_failing = script.restores_failing.saturating_sub(1);
            return Err(failed(&req.id, "criu restore"));
        }
        drop(script);
        Ok(Restored {
            pid: self.new_pid(&req.id),
            pty_master: None,
        })
    }
    fn criu_version(&self) -> Result<String> {
        Ok("4.1.1".into())
    }
}

/// Mounts that only make the target directory; resets are counted.
#[derive(Default)]
pub struct StubMounts {
    pub resets: Mutex<Vec<PathBuf>>,
}

impl RootfsMounts for StubMounts {
    fn mount(&self, target: &Path, _mounts: &[Mount]) -> std::io::Result<()> {
        std::fs::create_dir_all(target)
    }
    fn unmount(&self, _target: &Path) {}
    fn reset(&self, target: &Path, _mounts: &[Mount]) -> std::io::Result<()> {
        self.resets.lock().unwrap().push(target.to_path_buf());
        Ok(())
    }
    fn engine_upperdir(&self, _rootfs: &Path) -> std::result::Result<PathBuf, NoUpperdir> {
        Err(NoUpperdir::NotMounted)
    }
}

/// containerd's event service as a channel of topics.
pub struct EventLog {
    tx: Mutex<Sender<&'static str>>,
    pub rx: Mutex<Receiver<&'static str>>,
}

impl EventLog {
    pub fn new() -> Arc<Self> {
        let (tx, rx) = channel();
        Arc::new(EventLog {
            tx: Mutex::new(tx),
            rx: Mutex::new(rx),
        })
    }

    /// The next event's topic, if one comes within `limit`.
    pub fn next(&self, limit: Duration) -> Option<&'static str> {
        self.rx.lock().unwrap().recv_timeout(limit).ok()
    }

    /// Skips events until `topic`; false if it does not come within `limit`.
    pub fn expect(&self, topic: &str, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while let Some(t) = self.next(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if t == topic {
                return true;
            }
        }
        false
    }
}

impl EventSink for EventLog {
    fn publish(&self, topic: &'static str, _event: Any) {
        let _ = self.tx.lock().unwrap().send(topic);
    }
    fn flush(&self, _limit: Duration) {}
}

/// An overlay mount as containerd sends it, with its layer dirs in `dir`.
pub fn overlay(dir: &Path) -> Mount {
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    Mount {
        type_: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
            "lowerdir=/nonexistent".into(),
        ],
        ..Default::default()
    }
}
