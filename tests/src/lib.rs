//! Support for the end-to-end tests: drives `ctr` against the private
//! containerd that `hack/test.sh` starts (see hack/containerd-test.sh).
//!
//! The tests never skip: without the rig they fail, saying how to run them.

pub mod canary;
pub mod cri;
pub mod docker;
pub mod leaks;
pub mod shim_client;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const RUNTIME: &str = "io.containerd.arch.v1";
pub const IMAGE: &str = "localhost/arch-test/busybox:latest";

/// A `ctr` bound to the test containerd and namespace.
#[derive(Clone, Debug)]
pub struct Ctr {
    pub address: String,
    pub namespace: String,
}

pub fn ctr() -> Ctr {
    let address = std::env::var("ARCH_E2E_ADDRESS").unwrap_or_else(|_| {
        panic!("ARCH_E2E_ADDRESS is not set: run the end-to-end tests with `make test` (hack/test.sh), which starts containerd")
    });
    assert!(
        Path::new(&address).exists(),
        "containerd socket {address} does not exist"
    );
    let namespace = std::env::var("ARCH_E2E_NAMESPACE").unwrap_or_else(|_| "arch-test".into());
    Ctr { address, namespace }
}

/// A container id unique within this test run.
pub fn unique_id(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// The systemd slice the tests' containers go to when
/// `ARCH_E2E_SYSTEMD_SLICE` is set (the systemd cgroup driver run).
pub fn systemd_slice() -> Option<String> {
    std::env::var("ARCH_E2E_SYSTEMD_SLICE")
        .ok()
        .filter(|s| !s.is_empty())
}

/// `ctr run` arguments with `--cgroup slice:arch-test:ID` added when the
/// tests run under the systemd driver (ctr sends no runtime options to a
/// non-runc runtime: the cgroupsPath's form selects the driver).
fn with_cgroup_arg(args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let Some(slice) = systemd_slice() else {
        return out;
    };
    if args.first() != Some(&"run") || args.contains(&"--cgroup") {
        return out;
    }
    if let Some(id) = args
        .iter()
        .position(|a| *a == IMAGE)
        .and_then(|i| args.get(i + 1))
    {
        out.splice(
            1..1,
            ["--cgroup".to_string(), format!("{slice}:arch-test:{id}")],
        );
    }
    out
}

/// The container's cgroup v2 directory: `/sys/fs/cgroup/arch-test/ID`
/// (ctr's cgroupsPath), or its systemd scope under the driver run.
pub fn cgroup_v2_dir(id: &str) -> std::path::PathBuf {
    let root = Path::new("/sys/fs/cgroup");
    match systemd_slice() {
        Some(slice) => root
            .join(slice_dir(&slice))
            .join(format!("arch-test-{id}.scope")),
        None => root.join("arch-test").join(id),
    }
}

/// `a-b.slice` is `a.slice/a-b.slice` in the cgroup tree.
fn slice_dir(slice: &str) -> std::path::PathBuf {
    let mut dir = std::path::PathBuf::new();
    let mut acc = String::new();
    for part in slice.trim_end_matches(".slice").split('-') {
        dir.push(format!("{acc}{part}.slice"));
        acc = format!("{acc}{part}-");
    }
    dir
}

impl Ctr {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.args(["--address", &self.address, "--namespace", &self.namespace]);
        c.args(with_cgroup_arg(args));
        c.stdin(Stdio::null());
        c
    }

    /// Runs `ctr args…` with a deadline, so a hung shim fails the test.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_input(args, None)
    }

    /// `run`, but a call past the CLI deadline is killed and gives None.
    pub fn run_or_time_out(&self, args: &[&str]) -> Option<Run> {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ctr");
        finish_or_kill(child, cli_deadline())
    }

    pub fn run_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Run {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn ctr");
        if let Some(data) = input {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(data).unwrap();
        }
        finish_within(child, cli_deadline(), &format!("ctr {args:?}"))
    }

    /// `ctr run --rm` of the test image under ARCH.
    pub fn run_container(&self, id: &str, extra: &[&str], cmd: &[&str]) -> Run {
        let mut args = vec!["run", "--rm", "--runtime", RUNTIME];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, id]);
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// Starts a detached container and returns a guard that removes it.
    pub fn start_detached(&self, id: &str, cmd: &[&str]) -> Container {
        let mut args = vec!["run", "-d", "--runtime", RUNTIME, IMAGE, id];
        args.extend_from_slice(cmd);
        let r = self.run(&args);
        assert_eq!(r.code, 0, "ctr run -d {id} failed: {}", r.stderr);
        Container {
            ctr: self.clone(),
            id: id.to_string(),
        }
    }

    /// The task's status column from `ctr task ls` (None if no task).
    /// `ctr run MODE` (`-d` or `--rm`) of the test image as an ARCH
    /// container: `ARCH_ENABLE=1`, and `ARCH_KEY=key` when given.
    pub fn run_arch(&self, mode: &str, id: &str, key: Option<&str>, cmd: &[&str]) -> Run {
        self.run_arch_with(mode, id, key, &[], cmd)
    }

    /// `run_arch` with extra `ctr run` flags (e.g. `--annotation`).
    pub fn run_arch_with(
        &self,
        mode: &str,
        id: &str,
        key: Option<&str>,
        extra: &[&str],
        cmd: &[&str],
    ) -> Run {
        let mut args = vec!["run", mode, "--runtime", RUNTIME, "--env", "ARCH_ENABLE=1"];
        let key_env = key.map(|k| format!("ARCH_KEY={k}"));
        if let Some(k) = &key_env {
            args.extend(["--env", k.as_str()]);
        }
        args.extend_from_slice(extra);
        args.extend([IMAGE, id]);
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// Starts a detached ARCH container running `sh -c cmd`; the guard
    /// removes it.
    pub fn start_arch(&self, id: &str, key: Option<&str>, cmd: &str) -> Container {
        let r = self.run_arch("-d", id, key, &["sh", "-c", cmd]);
        assert_eq!(r.code, 0, "ctr run -d {id} failed: {}", r.stderr);
        Container {
            ctr: self.clone(),
            id: id.to_string(),
        }
    }

    /// A file of container `id`'s rootfs (`rel` below it), read from the
    /// host. Workloads rewrite their files (truncate, then write): a read
    /// between the two is empty, so an empty read is retried (5 s).
    pub fn rootfs_file(&self, id: &str, rel: &str) -> String {
        let path = self.bundle(id).join("rootfs").join(rel);
        let mut value = String::new();
        wait_until(Duration::from_secs(5), || {
            value = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .to_string();
            !value.is_empty()
        });
        value
    }

    /// A file inside running container `id`, read with `cat` in an exec
    /// (what the process sees, not the rootfs: /tmp may be a tmpfs). An empty
    /// read - the workload between truncate and write - is retried for 10 s.
    pub fn exec_file(&self, id: &str, path: &str) -> String {
        let mut value = String::new();
        wait_until(Duration::from_secs(10), || {
            let exec_id = unique_id("rd");
            let r = self.run(&["task", "exec", "--exec-id", &exec_id, id, "cat", path]);
            value = r.stdout.trim().to_string();
            !value.is_empty()
        });
        value
    }

    /// What `script` prints inside running container `id`: its output
    /// goes to a new file of the rootfs, read from the host (ctr's copy of
    /// a short exec's output can lose it when the exit arrives first). ""
    /// when it printed nothing (after [`Self::rootfs_file`]'s retries).
    pub fn exec_output(&self, id: &str, script: &str) -> String {
        let out = format!("exec-out-{}", unique_id("o"));
        let cmd = format!("({script}) > /{out}");
        let exec_id = unique_id("x");
        self.run(&["task", "exec", "--exec-id", &exec_id, id, "sh", "-c", &cmd]);
        self.rootfs_file(id, &out)
    }

    pub fn task_status(&self, id: &str) -> Option<String> {
        let r = self.run(&["task", "ls"]);
        r.stdout.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.get(2).unwrap_or(&"").to_string())
        })
    }

    pub fn task_pid(&self, id: &str) -> i32 {
        let r = self.run(&["task", "ls"]);
        r.stdout
            .lines()
            .find_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.first() == Some(&id)).then(|| cols[1].parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no task {id}"))
    }

    pub fn wait_status(&self, id: &str, want: &str) {
        let ok = wait_until(Duration::from_secs(20), || {
            self.task_status(id).as_deref() == Some(want)
        });
        assert!(
            ok,
            "task {id} never reached {want}; now {:?}",
            self.task_status(id)
        );
    }
}

/// How long one CLI call may take before the test fails as hung.
pub const CLI_DEADLINE: Duration = Duration::from_secs(60);

/// [`CLI_DEADLINE`] times [`time_scale`]: a restore's Create of a GiB
/// image under emulation (the VM) takes longer than a minute.
pub fn cli_deadline() -> Duration {
    CLI_DEADLINE * time_scale()
}

/// Waits for a spawned CLI with piped output; kills it and fails the test
/// after `limit`, so a hung shim or daemon fails instead of hanging CI.
pub fn finish_within(child: std::process::Child, limit: Duration, what: &str) -> Run {
    finish_or_kill(child, limit).unwrap_or_else(|| panic!("{what} did not finish within {limit:?}"))
}

/// Waits for a spawned CLI with piped output; kills it after `limit` and
/// returns None, for a caller that retries as a client would.
pub fn finish_or_kill(child: std::process::Child, limit: Duration) -> Option<Run> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => Some(out.expect("CLI output").into()),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            None
        }
    }
}

/// A detached container, force-removed when dropped.
pub struct Container {
    pub ctr: Ctr,
    pub id: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.ctr.run(&["task", "kill", "-s", "SIGKILL", &self.id]);
        wait_until(Duration::from_secs(10), || {
            self.ctr
                .task_status(&self.id)
                .is_none_or(|s| s == "STOPPED")
        });
        let _ = self.ctr.run(&["task", "rm", "-f", &self.id]);
        let _ = self.ctr.run(&["container", "rm", &self.id]);
    }
}

/// `ARCH_E2E_TIME_SCALE` (default 1): how many times longer the waits for
/// a state may take on a slow machine (the VM suite emulates its CPU).
pub fn time_scale() -> u32 {
    std::env::var("ARCH_E2E_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// Polls `f` until it holds or `limit` (times [`time_scale`]) passed.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit * time_scale();
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Pids of running shim processes serving container `id`.
pub fn shim_pids(id: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let is_shim = args
            .first()
            .is_some_and(|a| a.ends_with("containerd-shim-arch-v1"));
        let serves = args.windows(2).any(|w| w[0] == "-id" && w[1] == id);
        if is_shim && serves {
            pids.push(pid);
        }
    }
    pids
}

/// Children of `pid` that are zombies.
pub fn zombie_children(pid: i32) -> Vec<i32> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state ppid …
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1) == Some(&pid.to_string().as_str()) && fields.first() == Some(&"Z") {
            zombies.push(child);
        }
    }
    zombies
}

/// Mount points whose path contains `needle`.
pub fn mounts_containing(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.contains(needle))
        .collect()
}

/// The operation records the shims wrote for `key` under `root`.
pub fn records_for(root: &Path, key: &str) -> Vec<arch_records::Record> {
    let (records, _) = arch_records::read_all(root).expect("records readable");
    records.into_iter().filter(|r| r.key == key).collect()
}

/// Asserts a restore of `key` was recorded with `outcome`.
pub fn assert_restore_recorded(root: &Path, key: &str, outcome: arch_records::Outcome) {
    let recs = records_for(root, key);
    assert!(
        recs.iter()
            .any(|r| r.op == arch_records::Operation::Restore && r.outcome == outcome),
        "restore of {key} recorded as {outcome:?}: {recs:?}"
    );
}

/// The checkpoint root hack/test.sh gave containerd (and so the shims).
pub fn checkpoint_root() -> std::path::PathBuf {
    std::env::var("ARCH_E2E_CHECKPOINT_ROOT")
        .map(std::path::PathBuf::from)
        .expect("ARCH_E2E_CHECKPOINT_ROOT is not set: run through `make test` (hack/test.sh)")
}

/// Names in the suite's `{root}/{ns}/` that belong to `key`: the image and
/// its sidecars.
pub fn image_entries(ns: &str, key: &str) -> Vec<String> {
    entries_in(&checkpoint_root(), ns, key)
}

/// Names in `{root}/{ns}/` that belong to `key`.
pub fn entries_in(root: &Path, ns: &str, key: &str) -> Vec<String> {
    std::fs::read_dir(root.join(ns))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n == key || n.starts_with(&format!("{key}@")))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the workspace's `archctl` (built by hack/test.sh) against `root`.
pub fn archctl(root: &Path, args: &[&str]) -> Run {
    archctl_with_env(root, &[], args)
}

/// [`archctl`] with more environment (e.g. `ARCH_ENCRYPTION_KEY_FILE`).
pub fn archctl_with_env(root: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let bin = std::env::var("ARCH_E2E_ARCHCTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/archctl"));
    assert!(
        bin.exists(),
        "{} not built (cargo build --workspace --bins)",
        bin.display()
    );
    Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run archctl")
        .into()
}

/// The host's `setpriv` (util-linux) and the libraries it links, bound
/// into a busybox container: busybox cannot set a parent-death signal.
pub fn host_setpriv_mounts() -> Vec<String> {
    let binds = [
        ("/usr/bin/setpriv", "/usr/bin/setpriv"),
        ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"),
        ("/usr/lib64", "/lib64"),
    ];
    let mut args = Vec::new();
    for (src, dst) in binds {
        assert!(
            Path::new(src).exists(),
            "{src} missing (util-linux, x86_64)"
        );
        args.push("--mount".to_string());
        args.push(format!("type=bind,src={src},dst={dst},options=rbind:ro"));
    }
    args
}

/// `pid`'s parent process (its `PPid`), if `pid` exists.
pub fn parent_pid(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// True if `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Pids whose environment carries `ARCH_KEY=key`: the workload's processes.
pub fn workload_pids(key: &str) -> Vec<i32> {
    let needle = format!("ARCH_KEY={key}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|p| pid_alive(*p))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .map(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Runs `f` over `items` on `threads` threads.
pub fn parallel<T: Send + Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Rewrites an image's manifest.json so `rel` matches its new content: the
/// image passes validation and the bad content reaches the later steps.
pub fn reseal(dir: &Path, rel: &str) {
    use sha2::{Digest, Sha256};
    let data = std::fs::read(dir.join(rel)).unwrap();
    resign(dir, |m| {
        for f in m["files"].as_array_mut().unwrap() {
            if f["path"] == rel {
                f["size"] = data.len().into();
                f["sha256"] = hex::encode(Sha256::digest(&data)).into();
            }
        }
        let total: u64 = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["size"].as_u64().unwrap())
            .sum();
        m["total_size"] = total.into();
    });
}

/// Applies `edit` to an image's manifest.json and signs it again with the
/// shims' key, so the change reaches the steps after the signature check
/// (as it would for a holder of the key).
pub fn resign(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut m);
    let bytes = serde_json::to_vec_pretty(&m).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let sig = dir.join(arch_image::SIGNATURE);
    if sig.exists() {
        std::fs::write(&sig, signing_key().sign(&bytes)).unwrap();
    }
}

/// Replaces the CRIU image `name` of a streamed image in `dir` with
/// `content` (stored as its entry's codec says), updates its entry's stored
/// and original digests and signs again: the damage then reaches CRIU.
pub fn restream(dir: &Path, name: &str, content: &[u8]) {
    use sha2::{Digest, Sha256};
    let path = dir.join("manifest.json");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let entry = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            let p = f["path"].as_str().unwrap();
            p == format!("criu/{name}") || p == format!("criu/{name}.zst")
        })
        .unwrap_or_else(|| panic!("{name} is not in {}", path.display()))
        .clone();
    let rel = entry["path"].as_str().unwrap().to_string();
    let stored = match entry["stream"]["codec"].as_str() {
        Some("zstd") => zstd::encode_all(content, 1).unwrap(),
        _ => content.to_vec(),
    };
    std::fs::write(dir.join(&rel), &stored).unwrap();
    let mut m = m;
    for f in m["files"].as_array_mut().unwrap() {
        if f["path"] == rel.as_str() && !f["stream"].is_null() {
            f["stream"]["original_size"] = content.len().into();
            f["stream"]["original_sha256"] = hex::encode(Sha256::digest(content)).into();
        }
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    reseal(dir, &rel);
}

/// The key the test shims sign with: `ARCH_SIGNING_KEY_FILE` as given to
/// containerd, else the host key basic mode makes (made here if need be).
pub fn signing_key_path() -> std::path::PathBuf {
    let path = std::env::var("ARCH_SIGNING_KEY_FILE")
        .unwrap_or_else(|_| arch_checkpoint::DEFAULT_HOST_KEY.to_string());
    let cfg = arch_checkpoint::ArchConfig::default();
    arch_checkpoint::load_trust(&cfg, Path::new(&path)).expect("the test signing key");
    path.into()
}

/// The shims' signing key (see [`signing_key_path`]).
pub fn signing_key() -> arch_image::SigningKey {
    arch_image::SigningKey::from_file(&signing_key_path()).expect("the test signing key")
}

/// A tiny private (0700) tmpfs mounted over `dir` until dropped: a disk
/// that fills up. A `dir` it had to create is removed again, so what runs
/// next finds the host as it was (the shims create the root 0700).
pub struct Tmpfs {
    dir: std::path::PathBuf,
    created: bool,
}

impl Tmpfs {
    pub fn mount(dir: std::path::PathBuf, size: &str) -> Self {
        use std::os::unix::fs::DirBuilderExt;
        let created = !dir.exists();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs on {}", dir.display());
        Tmpfs { dir, created }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        if self.created {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
