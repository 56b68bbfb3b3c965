//! runc-v2 parity (issue 17): what `io.containerd.runc.v2` does with the
//! same request, checked through the client that found the difference.

use std::path::PathBuf;
use std::time::Duration;

use arch_e2e::shim_client::{api, ctx, Any};
use arch_e2e::{ctr, unique_id, wait_until, Container, Ctr, RUNTIME};

/// A profile that allows everything but sethostname, as critest's
/// "should block sethostname" profile does.
const NO_SETHOSTNAME: &str = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
  "syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#;

/// Prints the seccomp mode, the effective capabilities and whether
/// sethostname was refused, as one line.
const PROBE: &str = "s=$(grep '^Seccomp:' /proc/self/status | cut -f2); \
    e=$(grep '^CapEff:' /proc/self/status | cut -f2); \
    if hostname arch-probe 2>/dev/null; then h=allowed; else h=refused; fi; \
    echo \"seccomp=$s capeff=$e sethostname=$h uid=$(id -u)\"";

fn profile_file(id: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{id}-seccomp.json"));
    std::fs::write(&path, NO_SETHOSTNAME).unwrap();
    path
}

/// A `sleep 600` container with CAP_SYS_ADMIN (without a filter,
/// sethostname would succeed) and the `extra` ctr flags.
fn run_sys_admin(c: &Ctr, id: &str, extra: &[&str]) -> Container {
    let mut args = vec![
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--cap-add",
        "CAP_SYS_ADMIN",
    ];
    args.extend_from_slice(extra);
    args.extend([arch_e2e::IMAGE, id, "sleep", "600"]);
    let r = c.run(&args);
    assert_eq!(r.code, 0, "ctr run: {}", r.stderr);
    guard(c, id)
}

fn run_with_profile(c: &Ctr, id: &str, extra: &[&str]) -> Container {
    let profile = profile_file(id);
    let mut args = vec!["--seccomp", "--seccomp-profile", profile.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_sys_admin(c, id, &args)
}

/// Removes the container when the test ends, however it ends.
fn guard(c: &Ctr, id: &str) -> Container {
    Container {
        ctr: c.clone(),
        id: id.to_string(),
    }
}

/// Runs PROBE as an exec and reads what it found. The probe writes to a
/// file in the container, read from the host: ctr's own copy of a short
/// exec's output can lose it when the exit arrives first (seen under load).
fn exec_probe(c: &Ctr, id: &str, exec_id: &str, extra: &[&str]) -> String {
    let out = format!("/tmp/probe-{exec_id}");
    let script = format!("({PROBE}) > {out}");
    let mut args = vec!["task", "exec", "--exec-id", exec_id];
    args.extend_from_slice(extra);
    args.extend([id, "sh", "-c", &script]);
    let r = c.run(&args);
    assert_eq!(r.code, 0, "exec: {}", r.stderr);
    std::fs::read_to_string(
        c.bundle(id)
            .join("rootfs")
            .join(out.trim_start_matches('/')),
    )
    .unwrap_or_default()
    .trim()
    .to_string()
}

fn init_status_field(c: &Ctr, id: &str, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.task_pid(id))).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn exec_gets_the_containers_seccomp_filter_with_and_without_no_new_privileges() {
    let c = ctr();
    for (name, extra) in [("nnp", &[][..]), ("privs", &["--allow-new-privs"][..])] {
        let id = unique_id(&format!("seccomp-{name}"));
        let _ct = run_with_profile(&c, &id, extra);
        assert_eq!(init_status_field(&c, &id, "Seccomp:"), "2", "{name}: init");
        let root = exec_probe(&c, &id, "root", &[]);
        assert!(
            root.starts_with("seccomp=2 ") && root.contains("sethostname=refused"),
            "{name}: exec as root: {root}"
        );
        // The exec's capabilities are its own, not what was held for the
        // filter: the same as the init's.
        let init_caps = init_status_field(&c, &id, "CapEff:");
        assert!(
            root.contains(&format!("capeff={init_caps}")),
            "{name}: {root} vs init {init_caps}"
        );
        let user = exec_probe(&c, &id, "user", &["--user", "1000"]);
        assert_eq!(
            user, "seccomp=2 capeff=0000000000000000 sethostname=refused uid=1000",
            "{name}: exec as a user"
        );
    }
}

#[test]
fn exec_without_a_profile_runs_unfiltered_as_under_runc() {
    let c = ctr();
    let id = unique_id("noseccomp");
    let _ct = run_sys_admin(&c, &id, &[]);
    let out = exec_probe(&c, &id, "p", &[]);
    assert!(
        out.starts_with("seccomp=0 ") && out.contains("sethostname=allowed"),
        "{out}"
    );
}

/// A bundle-less container for `ctr run --config`: containerd's default
/// spec (`ctr oci spec`) edited by `edit`, over a rootfs of static busybox.
struct ConfigRun {
    rootfs: tempfile::TempDir,
    config: PathBuf,
}

fn config_run(c: &Ctr, id: &str, edit: impl FnOnce(&mut serde_json::Value)) -> ConfigRun {
    let rootfs = tempfile::tempdir().unwrap();
    for dir in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir(rootfs.path().join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.path().join("bin/busybox")).unwrap();
    let r = c.run(&["oci", "spec"]);
    assert_eq!(r.code, 0, "ctr oci spec: {}", r.stderr);
    let mut spec: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    spec["process"]["args"] = serde_json::json!(["/bin/busybox", "sleep", "600"]);
    spec["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    spec["root"] = serde_json::json!({"path": rootfs.path(), "readonly": false});
    // As ctr itself would name it: one cgroup per container.
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}/{id}", c.namespace));
    edit(&mut spec);
    let config = rootfs.path().with_extension("config.json");
    std::fs::write(&config, spec.to_string()).unwrap();
    ConfigRun { rootfs, config }
}

impl ConfigRun {
    fn start(&self, c: &Ctr, id: &str) -> Container {
        let config = self.config.to_str().unwrap();
        let r = c.run(&["run", "-d", "--runtime", RUNTIME, "--config", config, id]);
        assert_eq!(r.code, 0, "ctr run --config: {}", r.stderr);
        assert!(self.rootfs.path().exists());
        guard(c, id)
    }
}

impl Drop for ConfigRun {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

#[test]
fn a_spec_without_capabilities_gives_the_init_none_as_runc_does() {
    let c = ctr();
    let id = unique_id("nocaps");
    let run = config_run(&c, &id, |s| {
        s["process"].as_object_mut().unwrap().remove("capabilities");
    });
    let _ct = run.start(&c, &id);
    c.wait_status(&id, "RUNNING");
    for field in ["CapPrm:", "CapEff:", "CapBnd:"] {
        assert_eq!(
            init_status_field(&c, &id, field),
            "0000000000000000",
            "{field}"
        );
    }
}

#[test]
fn recursive_rootfs_propagation_is_accepted_and_applied() {
    let c = ctr();
    // rslave makes the root a slave of the host's mount, which shows as
    // `master:` only where the host's is shared; either way not `shared:`.
    for mode in ["rshared", "rslave"] {
        let id = unique_id(mode);
        let run = config_run(&c, &id, |s| {
            s["linux"]["rootfsPropagation"] = serde_json::json!(mode);
        });
        let _ct = run.start(&c, &id);
        c.wait_status(&id, "RUNNING");
        let mountinfo =
            std::fs::read_to_string(format!("/proc/{}/mountinfo", c.task_pid(&id))).unwrap();
        let root = mountinfo
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/"))
            .expect("a root mount");
        assert_eq!(
            root.contains("shared:"),
            mode == "rshared",
            "{mode}: root mount {root}"
        );
    }
}

#[test]
fn checkpoint_of_a_paused_task_leaves_it_paused() {
    let c = ctr();
    let id = unique_id("pausedck");
    let _ct = c.start_detached(&id, &["sh", "-c", "while true; do sleep 0.1; done"]);
    assert_eq!(c.run(&["task", "pause", &id]).code, 0);
    c.wait_status(&id, "PAUSED");
    let images = tempfile::tempdir().unwrap();
    let req = api::CheckpointTaskRequest {
        id: id.clone(),
        path: images.path().display().to_string(),
        // runc's CheckpointOptions with every field at its default:
        // leave running.
        options: Some(Any {
            type_url: "containerd.runc.v1.CheckpointOptions".into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    c.shim(&id).checkpoint(ctx(), &req).expect("checkpoint");
    assert!(
        images.path().join("inventory.img").exists(),
        "CRIU images written"
    );
    assert_eq!(c.task_status(&id).as_deref(), Some("PAUSED"));
    assert_eq!(
        freezer_state(c.task_pid(&id)),
        "FROZEN",
        "really frozen, not only said to be"
    );
    assert_eq!(c.run(&["task", "resume", &id]).code, 0);
    assert!(wait_until(Duration::from_secs(10), || {
        c.task_status(&id).as_deref() == Some("RUNNING")
    }));
}

/// The freezer state of `pid`'s cgroup (v1 freezer or v2 cgroup.freeze).
fn freezer_state(pid: i32) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if controllers.split(',').any(|c| c == "freezer") {
            let file = format!("/sys/fs/cgroup/freezer{path}/freezer.state");
            return std::fs::read_to_string(file).unwrap().trim().to_string();
        }
        if controllers.is_empty()
            && std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        {
            let file = format!("/sys/fs/cgroup{path}/cgroup.freeze");
            let frozen = std::fs::read_to_string(file).unwrap().trim() == "1";
            return if frozen { "FROZEN" } else { "THAWED" }.to_string();
        }
    }
    panic!("no freezer cgroup for {pid}: {cgroups}")
}

/// The shim's own descriptors (its ttrpc sockets, the other containers'
/// pipes, the image store) never reach a container: the spawn helper marks
/// all but the stdio close-on-exec and libcontainer closes the rest in the
/// init. A container's processes start with 0, 1 and 2 only, as under runc.
#[test]
fn the_init_and_an_exec_start_with_only_their_stdio() {
    let c = ctr();
    let id = unique_id("fds");
    // Listed by `ls`, not by a shell: a shell holds descriptors of its own
    // (a pipeline's ends, a saved stdout while it redirects).
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    let ls = |exec_id: &str, dir: &str| {
        let r = c.run(&["task", "exec", "--exec-id", exec_id, &id, "ls", dir]);
        assert_eq!(r.code, 0, "ls {dir}: {}", r.stderr);
        r.stdout.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    // The init (pid 1 of the container) seen from outside it.
    assert_eq!(ls("init", "/proc/1/fd"), "0 1 2", "the init's descriptors");
    // 3 is the directory `ls` itself opened to list them.
    assert_eq!(
        ls("self", "/proc/self/fd"),
        "0 1 2 3",
        "the exec's descriptors"
    );
}

/// `ip -o link show lo` inside running container `id`.
fn loopback_of(c: &Ctr, id: &str) -> String {
    c.exec_output(id, "ip -o link show lo")
}

fn is_up(link: &str) -> bool {
    link.contains("<LOOPBACK,UP")
}

/// runc brings up the loopback of a network namespace it creates (and
/// leaves one joined by path to its creator); so does ARCH, and a
/// restored container keeps it up.
#[test]
fn a_new_network_namespace_has_its_loopback_up_as_under_runc() {
    let c = ctr();
    let id = unique_id("lo");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    let link = loopback_of(&c, &id);
    assert!(is_up(&link), "lo in a new network namespace: {link}");
    let exec_id = unique_id("ping");
    let r = c.run(&[
        "task",
        "exec",
        "--exec-id",
        &exec_id,
        &id,
        "ping",
        "-c1",
        "-W2",
        "127.0.0.1",
    ]);
    assert_eq!(r.code, 0, "127.0.0.1 answers: {}{}", r.stdout, r.stderr);

    // A namespace joined by path is left as its creator made it.
    let netns = unique_id("arch-lo");
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(ip(&["netns", "add", &netns]).status.success());
    let path = format!("/var/run/netns/{netns}");
    let joined = unique_id("lojoin");
    let with_ns = format!("network:{path}");
    let r = c.run(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--with-ns",
        &with_ns,
        arch_e2e::IMAGE,
        &joined,
        "sleep",
        "600",
    ]);
    let ct = guard(&c, &joined);
    assert_eq!(r.code, 0, "ctr run --with-ns: {}", r.stderr);
    let link = loopback_of(&c, &joined);
    drop(ct);
    ip(&["netns", "del", &netns]);
    assert!(!is_up(&link), "lo of a joined namespace left down: {link}");

    // Checkpointed with lo up, restored with lo up.
    let key = unique_id("lokey");
    let first = unique_id("lofirst");
    let ct = c.start_arch(&first, Some(&key), "sleep 600");
    assert_eq!(c.run(&["task", "kill", &first]).code, 0);
    c.wait_status(&first, "STOPPED");
    drop(ct);
    let again = unique_id("loagain");
    let _ct = c.start_arch(&again, Some(&key), "sleep 600");
    let restored = arch_e2e::image_entries(&c.namespace, &key);
    assert!(
        restored.iter().any(|e| e.ends_with("@restored")),
        "restored, not started fresh: {restored:?}"
    );
    let link = loopback_of(&c, &again);
    assert!(is_up(&link), "lo after a restore: {link}");
}

/// The name of the shim thread (its `comm`) whose child `pid` is.
fn parent_thread_of(pid: i32) -> Option<(i32, String)> {
    let shim = arch_e2e::parent_pid(pid)?;
    std::fs::read_dir(format!("/proc/{shim}/task"))
        .ok()?
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .is_ok_and(|c| c.split_whitespace().any(|p| p == pid.to_string()))
        })
        .map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let tid = t.file_name().to_string_lossy().parse().unwrap_or(0);
            (tid, comm.trim().to_string())
        })
}

/// Whether `pid`'s parent is a shim thread that outlives it: the main
/// thread, or one of parent_thread.rs's.
fn has_a_lasting_parent(pid: i32) -> Result<(), String> {
    let shim = arch_e2e::parent_pid(pid).ok_or(format!("{pid} has no parent"))?;
    match parent_thread_of(pid) {
        Some((tid, _)) if tid == shim => Ok(()),
        Some((_, comm)) if comm == "process-parent" => Ok(()),
        other => Err(format!("{pid} is the child of shim thread {other:?}")),
    }
}

/// An init that set a parent-death signal (`tini -p`, `setpriv
/// --pdeathsig`) outlives the shim's request threads, as under runc-v2
/// (whose inits are orphaned to the shim's main thread), and so does an
/// exec'd process. libcontainer builds both as siblings of the spawn
/// helper: the child of the thread that ran the helper, which was a ttrpc
/// worker (always for an exec, about one create in two), and a worker
/// quits after a burst of requests or when containerd's connection closes:
/// an init was seen SIGKILLed as an unrelated exec ended. The helper now
/// runs from a thread that outlives its children (parent_thread.rs).
#[test]
fn a_fresh_init_with_a_parent_death_signal_outlives_the_request_threads() {
    let c = ctr();
    let id = unique_id("pdfresh");
    let mounts = arch_e2e::host_setpriv_mounts();
    let mut args = vec!["run", "-d", "--runtime", RUNTIME];
    args.extend(mounts.iter().map(String::as_str));
    args.extend([
        arch_e2e::IMAGE,
        &id,
        "setpriv",
        "--pdeathsig",
        "KILL",
        "sh",
        "-c",
        "while true; do sleep 1; done",
    ]);
    let r = c.run(&args);
    let _ct = guard(&c, &id);
    assert_eq!(r.code, 0, "ctr run {id}: {}", r.stderr);
    let pid = c.task_pid(&id);
    has_a_lasting_parent(pid).unwrap();
    let r = c.run(&[
        "task",
        "exec",
        "--detach",
        "--exec-id",
        "long",
        &id,
        "sleep",
        "60",
    ]);
    assert_eq!(r.code, 0, "exec: {}", r.stderr);
    let exec_pid = c
        .run(&["task", "ps", &id])
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse::<i32>().ok())
        .find(|p| *p != pid && arch_e2e::parent_pid(*p) == arch_e2e::parent_pid(pid))
        .expect("the exec'd sleep among the task's processes");
    has_a_lasting_parent(exec_pid).unwrap();
    let execs: Vec<String> = (0..30).map(|n| format!("burst-{n}")).collect();
    for round in execs.chunks(6) {
        arch_e2e::parallel(round, 6, |exec_id| {
            c.run(&["task", "exec", "--exec-id", exec_id, &id, "true"])
        });
        assert!(
            arch_e2e::pid_alive(pid),
            "the init ({pid}) was killed by its parent-death signal"
        );
    }
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
    // The bursts' threads do not all stay: the next request ends the idle
    // ones whose children are gone, but for one kept ready.
    let r = c.run(&["task", "exec", "--exec-id", "after", &id, "true"]);
    assert_eq!(r.code, 0, "exec: {}", r.stderr);
    let shim = arch_e2e::parent_pid(pid).expect("the init's shim");
    let childless = childless_parent_threads(shim);
    assert!(
        childless <= 2,
        "{childless} parent threads without a child stay in shim {shim} after bursts of 6 execs"
    );
}

/// How many of `shim`'s parent threads (parent_thread.rs) have no child.
fn childless_parent_threads(shim: i32) -> usize {
    std::fs::read_dir(format!("/proc/{shim}/task"))
        .unwrap()
        .flatten()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            comm.trim() == "process-parent" && children.trim().is_empty()
        })
        .count()
}
