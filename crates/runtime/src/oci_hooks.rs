//! The spec's `prestart` and `createRuntime` hooks, run again for a
//! restored tree at CRIU's setup-namespaces notify, as runc's restore does.
//!
//! libcontainer runs a fresh container's hooks; a restore has no such
//! step, and without it whatever a hook wires into the container's
//! namespaces is missing from the restored one. Docker's bridge networks
//! are the common case: the network namespace is the runtime's own and
//! dockerd moves the container's veth into it from a prestart hook
//! (`libnetwork-setkey`), so a restored tree had a namespace with only its
//! loopback (or the old veth's ghost) and answered nobody. CRIU sends
//! setup-namespaces with the restored root's pid once the tree's
//! namespaces exist and before it restores any file or socket, so a
//! listener bound to the address a hook sets binds as it did.
//!
//! A hook runs as runc runs it: its `path`, `args` (the first is its
//! argv[0]), only its `env`, the container's OCI state on its stdin,
//! `timeout` honoured. It runs in the shim's own network, IPC and UTS
//! namespaces and, on cgroup v1, its cgroups, though CRIU's thread is in
//! the container's (the restore moved that thread). A hook that fails
//! fails the restore, and the container starts fresh.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libcontainer::oci_spec::runtime::{Hook, Spec};

use arch_host::child_exits::ExitWatch;

/// A hook of the spec that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hook {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `code`: its exit code, or 128 + the signal that ended it.
    #[error("hook {path} exited with {code}: {stderr}")]
    Failed {
        path: PathBuf,
        code: i32,
        stderr: String,
    },
    #[error("hook {path} did not finish within {seconds} s")]
    TimedOut { path: PathBuf, seconds: i64 },
}

/// What a restore runs at setup-namespaces: the spec's hooks and the
/// state they are told.
pub(crate) struct RestoreHooks {
    hooks: Vec<Hook>,
    id: String,
    bundle: PathBuf,
    oci_version: String,
    annotations: serde_json::Value,
}

impl RestoreHooks {
    /// The spec's prestart then createRuntime hooks (runc's order), or
    /// None when it has neither.
    pub(crate) fn of(spec: &Spec, id: &str, bundle: &Path) -> Option<RestoreHooks> {
        let hooks = spec.hooks().as_ref()?;
        #[allow(deprecated)] // prestart: still what Docker uses
        let prestart = hooks.prestart().iter().flatten();
        let hooks: Vec<Hook> = prestart
            .chain(hooks.create_runtime().iter().flatten())
            .cloned()
            .collect();
        (!hooks.is_empty()).then(|| RestoreHooks {
            hooks,
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            oci_version: spec.version().clone(),
            annotations: serde_json::to_value(spec.annotations()).unwrap_or_default(),
        })
    }

    /// The OCI state of the container being restored, its init `pid`.
    fn state(&self, pid: i32) -> Vec<u8> {
        let mut state = serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": "creating",
            "pid": pid,
            "bundle": self.bundle,
        });
        if self.annotations.is_object() {
            state["annotations"] = self.annotations.clone();
        }
        serde_json::to_vec(&state).unwrap_or_default()
    }

    /// Runs every hook in order for the restored root `pid`; the first
    /// failure ends it. `home_tasks` are the cgroup v1 `tasks` files the
    /// calling thread was moved out of (cgroup_v1::ThreadCgroup).
    pub(crate) fn run(&self, pid: i32, home_tasks: &[PathBuf]) -> Result<(), HookError> {
        let state = self.state(pid);
        let home = std::sync::Arc::new(Home::of_this_process(home_tasks));
        self.hooks
            .iter()
            .try_for_each(|h| run_hook(h, &state, &home))
    }
}

/// Where a hook runs: the shim's namespaces (those the calling thread
/// left) and cgroups, prepared before the fork.
struct Home {
    namespaces: crate::namespaces::Home,
    tasks: Vec<CString>,
}

impl Home {
    fn of_this_process(home_tasks: &[PathBuf]) -> Home {
        let namespaces = crate::namespaces::Home::left_by_this_thread();
        let tasks = home_tasks
            .iter()
            .filter_map(|p| CString::new(p.as_os_str().as_encoded_bytes()).ok())
            .collect();
        Home { namespaces, tasks }
    }

    /// In the forked child, before exec: raw syscalls only.
    fn enter(&self) -> std::io::Result<()> {
        self.namespaces.enter()?;
        for tasks in &self.tasks {
            // Best effort: a hook left in the container's cgroup still runs.
            // SAFETY: a NUL-terminated path; "0" moves the calling task.
            unsafe {
                let fd = libc::open(tasks.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    libc::write(fd, c"0".as_ptr().cast(), 1);
                    libc::close(fd);
                }
            }
        }
        Ok(())
    }
}

fn run_hook(hook: &Hook, state: &[u8], home: &std::sync::Arc<Home>) -> Result<(), HookError> {
    let path = hook.path().clone();
    let spawn_err = |source| HookError::Spawn {
        path: path.clone(),
        source,
    };
    let mut cmd = Command::new(&path);
    if let Some((argv0, rest)) = hook.args().as_deref().and_then(|a| a.split_first()) {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let home = std::sync::Arc::clone(home);
    // SAFETY: enter() makes raw syscalls only, on data prepared before.
    unsafe {
        cmd.pre_exec(move || home.enter());
    }
    // Opened before the spawn: the shim's reaper may take the exit first.
    let watch = ExitWatch::open();
    let mut child = cmd.spawn().map_err(spawn_err)?;
    // A hook that does not read its state gets EPIPE: not an error (runc
    // ignores it too).
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state);
    }
    // Read on a thread of its own: a hook that says much must not block.
    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut said = String::new();
            let _ = (&mut err).take(4096).read_to_string(&mut said);
            let _ = std::io::copy(&mut err, &mut std::io::sink());
            said
        })
    });
    let timeout = hook.timeout().filter(|s| *s > 0);
    let deadline = timeout.map(|s| Instant::now() + Duration::from_secs(s as u64));
    let Some(code) = watch.wait_or_kill(&mut child, deadline) else {
        return Err(HookError::TimedOut {
            path,
            seconds: timeout.unwrap_or_default(),
        });
    };
    if code == 0 {
        return Ok(());
    }
    let said = stderr
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    Err(HookError::Failed {
        path,
        code,
        stderr: said.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(hooks: &str) -> Spec {
        let json = format!(
            r#"{{"ociVersion":"1.2.0","root":{{"path":"rootfs"}},"annotations":{{"a":"b"}},"hooks":{hooks}}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    fn script(dir: &Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path.display().to_string()
    }

    #[test]
    fn no_hooks_nothing_to_run() {
        assert!(RestoreHooks::of(&spec_with("{}"), "c", Path::new("/b")).is_none());
        let poststop = r#"{"poststop":[{"path":"/bin/true"}]}"#;
        assert!(RestoreHooks::of(&spec_with(poststop), "c", Path::new("/b")).is_none());
    }

    #[test]
    fn prestart_then_create_runtime_each_told_the_restored_state() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let record = |tag: &str| {
            script(
                dir.path(),
                tag,
                &format!("echo \"{tag} $1 $FOO $(cat)\" >> {}", out.display()),
            )
        };
        let (pre, create) = (record("pre"), record("create"));
        let hooks = format!(
            r#"{{"prestart":[{{"path":"{pre}","args":["setkey","one"],"env":["FOO=bar"]}}],
                "createRuntime":[{{"path":"{create}","args":["rt","two"]}}]}}"#
        );
        let spec = spec_with(&hooks);
        let run = RestoreHooks::of(&spec, "ctr-1", Path::new("/bundle")).unwrap();
        run.run(4242, &[]).unwrap();
        let lines: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        // (A script's $0 is its path whatever argv[0] is: args[0] is not seen.)
        assert!(lines[0].starts_with("pre one bar {"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("create two  {"),
            "only its own env: {}",
            lines[1]
        );
        let json = &lines[0][lines[0].find('{').unwrap()..];
        let state: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(state["pid"], 4242);
        assert_eq!(state["id"], "ctr-1");
        assert_eq!(state["bundle"], "/bundle");
        assert_eq!(state["status"], "creating");
        assert_eq!(state["annotations"]["a"], "b");
    }

    #[test]
    fn a_failing_hook_stops_the_rest_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let bad = script(dir.path(), "bad", "echo no network >&2; exit 3");
        let marker = dir.path().join("ran");
        let after = script(dir.path(), "after", &format!("touch {}", marker.display()));
        let hooks = format!(
            r#"{{"prestart":[{{"path":"{bad}"}}],"createRuntime":[{{"path":"{after}"}}]}}"#
        );
        let run = RestoreHooks::of(&spec_with(&hooks), "c", Path::new("/b")).unwrap();
        let err = run.run(1, &[]).unwrap_err();
        assert!(
            matches!(&err, HookError::Failed { stderr, .. } if stderr == "no network"),
            "{err}"
        );
        assert!(!marker.exists(), "the next hook did not run");
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let slow = script(dir.path(), "slow", "exec sleep 30");
        let hooks = format!(r#"{{"prestart":[{{"path":"{slow}","timeout":1}}]}}"#);
        let run = RestoreHooks::of(&spec_with(&hooks), "c", Path::new("/b")).unwrap();
        let started = Instant::now();
        let err = run.run(1, &[]).unwrap_err();
        assert!(
            matches!(err, HookError::TimedOut { seconds: 1, .. }),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_hook_is_a_spawn_error() {
        let hooks = r#"{"prestart":[{"path":"/nonexistent/hook"}]}"#;
        let run = RestoreHooks::of(&spec_with(hooks), "c", Path::new("/b")).unwrap();
        assert!(matches!(run.run(1, &[]), Err(HookError::Spawn { .. })));
    }
}
