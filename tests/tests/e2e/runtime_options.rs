//! Runtime options as ctr sends them (`--runtime-config-path FILE`:
//! `runtimeoptions.v1.Options`, the file in TOML with runc's key names).
//! CRI sends the runtime's `options` table the same way.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arch_e2e::{ctr, shim_pids, unique_id, wait_until, Container, Ctr, IMAGE, RUNTIME};

/// A runtime config file with `body`, readable by containerd and the shim.
fn config_file(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("arch-e2e-runtime-options");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// `ctr run --rm` of `true` with the runtime options in `config`; the
/// container record is removed whatever happened.
fn run_once_with(c: &Ctr, id: &str, config: &Path) -> arch_e2e::Run {
    let config = config.to_str().unwrap();
    let args = [
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--runtime-config-path",
        config,
        IMAGE,
        id,
        "true",
    ];
    let r = c.run(&args);
    let _ = c.run(&["container", "rm", id]);
    r
}

fn run_detached_with(c: &Ctr, id: &str, config: &Path, cmd: &[&str]) -> Container {
    let config = config.to_str().unwrap();
    let mut args = vec![
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--runtime-config-path",
        config,
        IMAGE,
        id,
    ];
    args.extend_from_slice(cmd);
    let r = c.run(&args);
    assert_eq!(r.code, 0, "ctr run -d {id}: {}", r.stderr);
    Container {
        ctr: c.clone(),
        id: id.to_string(),
    }
}

/// A cgroup for the test, made in the hierarchies a v1 host has (memory,
/// pids) or in the unified one; removed when dropped.
struct TestCgroup {
    name: String,
    dirs: Vec<PathBuf>,
}

impl TestCgroup {
    fn new(name: &str) -> Self {
        let root = Path::new("/sys/fs/cgroup");
        let dirs: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
            vec![root.join(name)]
        } else {
            ["memory", "pids"]
                .iter()
                .map(|h| root.join(h).join(name))
                .collect()
        };
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        TestCgroup {
            name: name.to_string(),
            dirs,
        }
    }

    fn procs(&self) -> Vec<i32> {
        let text = std::fs::read_to_string(self.dirs[0].join("cgroup.procs")).unwrap();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            wait_until(Duration::from_secs(10), || std::fs::remove_dir(d).is_ok());
        }
    }
}

fn ppid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // pid (comm) state ppid ...
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

#[test]
fn shim_runs_in_shim_cgroup() {
    let c = ctr();
    let id = unique_id("shimcg");
    let cg = TestCgroup::new(&format!("arch-e2e-{id}"));
    let config = config_file(&id, &format!("ShimCgroup = \"/{}\"\n", cg.name));
    let guard = run_detached_with(&c, &id, &config, &["sleep", "60"]);
    // The shim daemon (no other process of the shim stays: create and
    // exec run in helpers that are gone once they replied).
    let shims = shim_pids(&id);
    let daemon: Vec<i32> = shims
        .iter()
        .copied()
        .filter(|p| !shims.contains(&ppid(*p)))
        .collect();
    assert_eq!(daemon.len(), 1, "one shim daemon for {id}: {shims:?}");
    let shim = daemon[0];
    let own = std::fs::read_to_string(format!("/proc/{shim}/cgroup")).unwrap();
    for hierarchy in ["memory", "pids"] {
        if cg.dirs.len() > 1 {
            assert!(
                own.lines()
                    .any(|l| l.contains(hierarchy) && l.ends_with(&format!(":/{}", cg.name))),
                "shim {shim} not in {hierarchy}:/{}:\n{own}",
                cg.name
            );
        }
    }
    // The daemon was born in it, alone: the container's create helper
    // (born there too) is gone.
    assert_eq!(cg.procs(), [shim], "only the shim daemon");
    // The container is not: it has a cgroup of its own.
    let pid = c.task_pid(&id);
    assert!(
        !cg.procs().contains(&pid),
        "container {pid} in the shim cgroup"
    );
    drop(guard);
    assert!(
        wait_until(Duration::from_secs(10), || cg.procs().is_empty()),
        "the shim left its cgroup behind: {:?}",
        cg.procs()
    );
}

#[test]
fn missing_shim_cgroup_fails_the_start_with_its_name() {
    let c = ctr();
    let id = unique_id("nocg");
    let config = config_file(&id, "ShimCgroup = \"/arch-e2e-no-such-cgroup\"\n");
    let r = run_once_with(&c, &id, &config);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("arch-e2e-no-such-cgroup") && r.stderr.contains("no such cgroup"),
        "{}",
        r.stderr
    );
    assert!(shim_pids(&id).is_empty(), "a shim was left running");
}

/// What a non-root process sees writing to /dev/stdout (a reopen of the
/// shim's pipe through /proc/self/fd/1).
const REOPEN: &str = "echo reopened > /dev/stdout && stat -L -c owner=%u:%g /proc/self/fd/1";

#[test]
fn io_uid_gid_own_the_stdio_pipes() {
    let c = ctr();
    let id = unique_id("iouid");
    let config = config_file(&id, "IoUid = 1000\nIoGid = 1000\n");
    let r = c.run(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--runtime-config-path",
        config.to_str().unwrap(),
        "--user",
        "1000:1000",
        IMAGE,
        &id,
        "sh",
        "-c",
        REOPEN,
    ]);
    assert_eq!(r.code, 0, "stdout: {} stderr: {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("reopened"), "{}", r.stdout);
    assert!(r.stdout.contains("owner=1000:1000"), "{}", r.stdout);

    // Execs get the container's IoUid/IoGid too.
    let id = unique_id("iouid-exec");
    let _guard = run_detached_with(&c, &id, &config, &["sleep", "60"]);
    let r = c.run(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "--user",
        "1000:1000",
        &id,
        "sh",
        "-c",
        REOPEN,
    ]);
    assert_eq!(r.code, 0, "stdout: {} stderr: {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("owner=1000:1000"), "{}", r.stdout);
}

#[test]
fn without_io_uid_a_non_root_process_cannot_reopen_stdout() {
    // The control for the test above: the pipes are root's by default.
    let c = ctr();
    let id = unique_id("noiouid");
    let r = c.run_container(&id, &["--user", "1000:1000"], &["sh", "-c", REOPEN]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(!r.stdout.contains("reopened"), "{}", r.stdout);
}

#[test]
fn refused_options_fail_with_their_names() {
    let c = ctr();
    for (body, words) in [
        ("BinaryName = \"crun\"\n", ["BinaryName", "not supported"]),
        ("ShimCgroupp = \"/x\"\n", ["ShimCgroupp", "unknown key"]),
    ] {
        let id = unique_id("refused");
        let config = config_file(&id, body);
        let r = run_once_with(&c, &id, &config);
        assert_ne!(r.code, 0, "{body}: {}", r.stdout);
        for w in words {
            assert!(r.stderr.contains(w), "{body}: no {w:?} in {}", r.stderr);
        }
        assert!(shim_pids(&id).is_empty(), "{body}: a shim was left running");
    }
}
