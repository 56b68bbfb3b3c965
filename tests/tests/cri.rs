//! The containerd CRI and Kubernetes RuntimeClass how-to, tested: a private
//! containerd runs with docs/examples/containerd-{1.7,2.x}-cri.toml appended
//! verbatim (hack/containerd-test.sh, ARCH_TEST_CRI=1), and these tests make
//! the kubelet's CRI calls for pods with `runtimeClassName: arch`, the
//! handler read from docs/examples/runtimeclass.yaml.
//! Run through `make test` (hack/test.sh); without the rig they fail.

use std::path::Path;
use std::time::Duration;

use arch_e2e::cri::{
    cri, examples_dir, runtime_class_handler, ContainerSpec, ContainerState, Cri, Pod, PodSpec,
};
use arch_e2e::{unique_id, wait_until};

/// The kubelet's grace period for these pods.
const GRACE: Duration = Duration::from_secs(30);

/// Counts in /tmp/count and on stdout; remembers a boot id, which is the
/// same after a restore and new after a restart.
const COUNTER: &str = "boot=$(cat /proc/sys/kernel/random/uuid); i=0; \
    while true; do i=$((i+1)); echo $i > /tmp/count; echo $boot > /tmp/boot; echo tick $i; sleep 0.1; done";

fn read(c: &Cri, id: &str, path: &str) -> String {
    let (code, out, err) = c.exec_sync(id, &["cat", path]);
    assert_eq!(code, 0, "cat {path} in {id}: {err}");
    out.trim().to_string()
}

/// The counter rewrites its files: a read may land between truncate and
/// write, so an empty read is retried.
fn read_settled(c: &Cri, id: &str, path: &str) -> String {
    let mut value = String::new();
    wait_until(Duration::from_secs(5), || {
        value = read(c, id, path);
        !value.is_empty()
    });
    value
}

/// 0 until the counter has written its first number.
fn count(c: &Cri, id: &str) -> u64 {
    let (code, out, _) = c.exec_sync(id, &["cat", "/tmp/count"]);
    if code != 0 {
        return 0;
    }
    out.trim().parse().unwrap_or(0)
}

/// The numbers the counter printed, from its CRI log.
fn ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split_once(" tick ").map(|(_, n)| n.trim().parse().ok()))
        .flatten()
        .collect()
}

/// The namespace `kind` (ipc, uts, net, pid) of a process in container `id`.
fn container_ns(c: &Cri, id: &str, kind: &str) -> String {
    let (code, out, err) = c.exec_sync(id, &["readlink", &format!("/proc/1/ns/{kind}")]);
    assert_eq!(code, 0, "readlink in {id}: {err}");
    out.trim().to_string()
}

fn host_ns(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("ns of pid {pid}: {e}"))
        .display()
        .to_string()
}

/// The committed images `archctl ls --json` lists for `key` in k8s.io.
fn committed(key: &str) -> usize {
    let root = arch_e2e::checkpoint_root();
    let r = arch_e2e::archctl(&root, &["ls", "--json"]);
    assert_eq!(r.code, 0, "archctl ls: {}", r.stderr);
    let list: serde_json::Value = serde_json::from_str(&r.stdout).expect("archctl ls --json");
    list.as_array()
        .expect("a list")
        .iter()
        .filter(|e| {
            e["namespace"]
                .as_str()
                .is_some_and(|n| n.starts_with("k8s.io"))
                && e["key"] == key
        })
        .count()
}

fn wait_exited(c: &Cri, id: &str) -> arch_e2e::cri::ContainerStatus {
    let mut status = c.container_status(id);
    wait_until(Duration::from_secs(20), || {
        status = c.container_status(id);
        status.state == ContainerState::ContainerExited as i32
    });
    assert_eq!(
        status.state,
        ContainerState::ContainerExited as i32,
        "{id} exited: {status:?}"
    );
    status
}

/// The RuntimeClass's handler is the runtime both containerd snippets
/// define: the docs cannot drift apart.
#[test]
fn runtime_class_handler_is_the_documented_containerd_runtime() {
    let handler = runtime_class_handler();
    for file in ["containerd-1.7-cri.toml", "containerd-2.x-cri.toml"] {
        let text = std::fs::read_to_string(examples_dir().join(file)).expect(file);
        let table = format!(".containerd.runtimes.{handler}]");
        assert!(text.contains(&table), "{file} defines runtime {handler}");
        assert!(
            text.contains(&format!("runtime_type = \"{}\"", arch_e2e::RUNTIME)),
            "{file} uses {}",
            arch_e2e::RUNTIME
        );
    }
    let pod = std::fs::read_to_string(examples_dir().join("pod.yaml")).expect("pod.yaml");
    assert!(
        pod.contains("runtimeClassName: arch"),
        "pod.yaml uses the class"
    );
}

#[test]
fn exit_codes_and_exec_sync_through_cri() {
    let c = cri();
    let pod = c.run_pod(PodSpec::new("plain"));
    let exits = pod.run_container(&ContainerSpec::sh(
        "exits",
        "echo out; echo err >&2; exit 7",
    ));
    let status = wait_exited(&c, &exits);
    assert_eq!(status.exit_code, 7, "{status:?}");
    assert_eq!(status.reason, "Error", "{status:?}");
    assert!(wait_until(Duration::from_secs(5), || pod
        .log("exits")
        .contains(" stdout F out")));
    assert!(
        pod.log("exits").contains(" stderr F err"),
        "{}",
        pod.log("exits")
    );

    // A container's init ignores signals it has no handler for.
    let sleeper = pod.run_container(&ContainerSpec::sh(
        "sleeper",
        "trap 'exit 42' TERM; while true; do sleep 0.1; done",
    ));
    let (code, out, err) = c.exec_sync(&sleeper, &["sh", "-c", "echo hi; echo oops >&2; exit 3"]);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "hi\n", "oops\n"));
    c.stop_container(&sleeper, GRACE);
    let status = wait_exited(&c, &sleeper);
    assert_eq!(
        status.exit_code, 42,
        "the SIGTERM handler's exit: {status:?}"
    );
    c.remove_container(&sleeper);
    c.remove_container(&exits);
}

/// Containers of a pod share the sandbox's IPC namespace (and, with the
/// host network, the host's network and UTS namespaces); each has its own
/// PID namespace, the kubelet's default.
#[test]
fn containers_join_the_sandbox_namespaces() {
    let c = cri();
    let pod = c.run_pod(PodSpec::new("shared"));
    let a = pod.run_container(&ContainerSpec::sh("a", "exec sleep 1000"));
    let b = pod.run_container(&ContainerSpec::sh("b", "exec sleep 1000"));
    let sandbox = pod.sandbox_pid();
    for id in [&a, &b] {
        assert_eq!(
            container_ns(&c, id, "ipc"),
            host_ns(sandbox, "ipc"),
            "ipc of {id}"
        );
        assert_eq!(
            container_ns(&c, id, "uts"),
            host_ns(sandbox, "uts"),
            "uts of {id}"
        );
        assert_eq!(
            container_ns(&c, id, "net"),
            host_ns(std::process::id() as i32, "net"),
            "host network for {id}"
        );
    }
    assert_ne!(
        host_ns(sandbox, "ipc"),
        host_ns(std::process::id() as i32, "ipc"),
        "the pod has its own IPC namespace"
    );
    assert_ne!(
        container_ns(&c, &a, "pid"),
        container_ns(&c, &b, "pid"),
        "a PID namespace each"
    );
}

/// The how-to's promise: the kubelet stops an ARCH container (SIGTERM via
/// StopContainer) and the shim checkpoints it; a container with the same
/// ARCH_KEY in a new pod continues the count, in the new pod's namespaces,
/// its stdout still going to the CRI log.
#[test]
fn stopped_pod_container_is_restored_in_a_new_pod() {
    let c = cri();
    let key = unique_id("crikey");
    let (boot, seen) = {
        let pod = c.run_pod(PodSpec::new("trainer"));
        let id = pod.run_container(&ContainerSpec::sh("trainer", COUNTER).arch(&key));
        assert!(wait_until(Duration::from_secs(10), || count(&c, &id) >= 5));
        let boot = read_settled(&c, &id, "/tmp/boot");
        c.stop_container(&id, GRACE);
        let status = wait_exited(&c, &id);
        let seen = ticks(&pod.log("trainer")).into_iter().max().unwrap_or(0);
        assert!(
            seen >= 5,
            "the counter logged through CRI: {}",
            pod.log("trainer")
        );
        assert_eq!(
            committed(&key),
            1,
            "StopContainer checkpointed {key} ({status:?})"
        );
        c.remove_container(&id);
        (boot, seen)
    };

    let pod = c.run_pod(PodSpec::new("trainer"));
    let id = pod.run_container(&ContainerSpec::sh("trainer", COUNTER).arch(&key));
    assert_eq!(
        read_settled(&c, &id, "/tmp/boot"),
        boot,
        "restored, not restarted"
    );
    // A read can land between the shell's truncate and its write of
    // /tmp/count (0); the first number read is the one judged: a fresh
    // start's would be far below `seen`.
    let mut now = 0;
    wait_until(Duration::from_secs(5), || {
        now = count(&c, &id);
        now > 0
    });
    assert!(now >= seen, "the counter continued from {seen}: {now}");
    assert_eq!(committed(&key), 0, "the image was consumed");
    assert!(
        wait_until(Duration::from_secs(10), || ticks(&pod.log("trainer"))
            .first()
            .is_some_and(|&n| n > seen)),
        "the new container's log continues after {seen}: {}",
        pod.log("trainer")
    );
    assert_eq!(
        container_ns(&c, &id, "ipc"),
        host_ns(pod.sandbox_pid(), "ipc"),
        "restored into the new pod's IPC namespace"
    );
    assert_eq!(
        container_ns(&c, &id, "uts"),
        host_ns(pod.sandbox_pid(), "uts")
    );
    c.stop_container(&id, GRACE);
    wait_exited(&c, &id);
    assert_eq!(committed(&key), 1, "checkpointed again on the second stop");
    c.remove_container(&id);
    drop::<Pod>(pod);
}

/// Builds a busybox image named `image` whose layer also holds
/// /etc/arch-variant = `variant` (so each variant has its own layers
/// digest), and imports it into the CRI containerd's k8s.io: importing a
/// second variant moves the tag, as a `docker push` of a new build would.
fn import_variant(image: &str, variant: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("variant");
    std::fs::write(&marker, variant).expect("write variant");
    let tar = dir.path().join("image.oci.tar");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = std::process::Command::new("python3")
        .arg(repo.join("hack/oci_image.py"))
        .args(["--out", &tar.to_string_lossy(), "--ref", image])
        .arg("--extra")
        .arg(format!("{}:/etc/arch-variant:0644", marker.display()))
        .output()
        .expect("run hack/oci_image.py");
    assert!(built.status.success(), "oci_image.py: {built:?}");
    let address = std::env::var("ARCH_CRI_ADDRESS").expect("ARCH_CRI_ADDRESS");
    let imported = std::process::Command::new("ctr")
        .args(["--address", &address, "-n", "k8s.io", "image", "import"])
        .args(["--local", "--snapshotter", "overlayfs"])
        .arg(&tar)
        .output()
        .expect("run ctr image import");
    assert!(imported.status.success(), "ctr image import: {imported:?}");
}

/// Issue 13 §1: a tag moved to another image (other layers) between the
/// stop and the next create. Old memory does not belong on a new root
/// filesystem: the container starts fresh, a record names `image`, and
/// the image stays for a container of the old image.
#[test]
fn a_tag_moved_to_another_image_starts_fresh() {
    let c = cri();
    let key = unique_id("crimoved");
    let image = format!("localhost/arch-test/{key}:latest");
    import_variant(&image, "first");
    let first_id = c.image_id(&image).expect("CRI knows the first variant");
    let boot = {
        let pod = c.run_pod(PodSpec::new("moved"));
        let id = pod.run_container(&ContainerSpec::sh("moved", COUNTER).arch(&key).image(&image));
        assert!(wait_until(Duration::from_secs(10), || count(&c, &id) >= 3));
        let boot = read_settled(&c, &id, "/tmp/boot");
        c.stop_container(&id, GRACE);
        wait_exited(&c, &id);
        assert_eq!(committed(&key), 1, "StopContainer checkpointed {key}");
        c.remove_container(&id);
        boot
    };

    import_variant(&image, "second");
    assert!(
        wait_until(Duration::from_secs(10), || c
            .image_id(&image)
            .is_some_and(|id| id != first_id)),
        "CRI resolves {image} to the second variant"
    );
    let pod = c.run_pod(PodSpec::new("moved"));
    let id = pod.run_container(&ContainerSpec::sh("moved", COUNTER).arch(&key).image(&image));
    assert_eq!(read(&c, &id, "/etc/arch-variant"), "second");
    assert_ne!(
        read_settled(&c, &id, "/tmp/boot"),
        boot,
        "started fresh, not restored onto the new image"
    );
    assert_eq!(committed(&key), 1, "the image stays in place");
    let reasons: Vec<String> = arch_e2e::records_for(&arch_e2e::checkpoint_root(), &key)
        .into_iter()
        .filter(|r| {
            r.op == arch_records::Operation::Restore && r.outcome == arch_records::Outcome::Fallback
        })
        .filter_map(|r| r.error)
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("differs in image")),
        "a record names the image: {reasons:?}"
    );
    c.stop_container(&id, GRACE);
    wait_exited(&c, &id);
    c.remove_container(&id);
    drop::<Pod>(pod);
    let address = std::env::var("ARCH_CRI_ADDRESS").expect("ARCH_CRI_ADDRESS");
    let _ = std::process::Command::new("ctr")
        .args(["--address", &address, "-n", "k8s.io", "image", "rm", &image])
        .output();
}

/// The hook directory of the rig's "arch-hooked" handler, beside the CRI
/// socket (hack/containerd-test.sh, write_hooked_runtime).
fn hooks_dir() -> std::path::PathBuf {
    let address = std::env::var("ARCH_CRI_ADDRESS").expect("ARCH_CRI_ADDRESS");
    let dir = Path::new(&address)
        .parent()
        .expect("a socket directory")
        .join("hooks");
    assert!(
        dir.join("prestart").exists(),
        "{} has no prestart hook: the rig predates the arch-hooked handler",
        dir.display()
    );
    dir
}

/// Runs a counter under the "arch-hooked" handler in a new pod and stops
/// it (a checkpoint); returns its boot id. The pod is removed.
fn hooked_run_and_stop(c: &Cri, key: &str) -> String {
    let mut spec = PodSpec::new("hooked");
    spec.handler = "arch-hooked".into();
    let pod = c.run_pod(spec);
    let id = pod.run_container(&ContainerSpec::sh("hooked", COUNTER).arch(key));
    assert!(wait_until(Duration::from_secs(10), || count(c, &id) >= 3));
    let boot = read_settled(c, &id, "/tmp/boot");
    c.stop_container(&id, GRACE);
    wait_exited(c, &id);
    assert_eq!(committed(key), 1, "StopContainer checkpointed {key}");
    c.remove_container(&id);
    boot
}

/// An OCI hook a base spec injects (how operators add hooks under CRI)
/// runs at a restore as at a create, with the restored init's pid: and one
/// that fails makes the restore fall back to a fresh start, whose record
/// names the hook's error; the fresh start runs the hook again.
#[test]
fn a_base_spec_hook_runs_at_restore_and_its_failure_starts_fresh() {
    let c = cri();
    let hooks = hooks_dir();
    let key = unique_id("crihook");
    let boot = hooked_run_and_stop(&c, &key);

    // The hook fails once: the restore's run of it.
    std::fs::write(hooks.join("fail-once"), b"").unwrap();
    let mut spec = PodSpec::new("hooked");
    spec.handler = "arch-hooked".into();
    let pod = c.run_pod(spec);
    let id = pod.run_container(&ContainerSpec::sh("hooked", COUNTER).arch(&key));
    assert!(!hooks.join("fail-once").exists(), "the hook ran");
    let fresh = read_settled(&c, &id, "/tmp/boot");
    assert_ne!(fresh, boot, "started fresh");
    let recs = arch_e2e::records_for(&arch_e2e::checkpoint_root(), &key);
    assert!(
        recs.iter().any(|r| {
            r.op == arch_records::Operation::Restore
                && r.outcome == arch_records::Outcome::Fallback
                && r.error.as_deref().is_some_and(|e| {
                    e.contains("setup-namespaces") && e.contains("told to fail once")
                })
        }),
        "a restore record names the hook: {recs:?}"
    );
    assert!(wait_until(Duration::from_secs(10), || count(&c, &id) >= 3));
    c.stop_container(&id, GRACE);
    wait_exited(&c, &id);
    assert_eq!(
        committed(&key),
        1,
        "the fresh start checkpointed at its stop"
    );
    c.remove_container(&id);
    drop::<Pod>(pod);

    // The hook passes: restored, and its state named the restored init.
    let mut spec = PodSpec::new("hooked");
    spec.handler = "arch-hooked".into();
    let pod = c.run_pod(spec);
    let id = pod.run_container(&ContainerSpec::sh("hooked", COUNTER).arch(&key));
    assert_eq!(read_settled(&c, &id, "/tmp/boot"), fresh, "restored");
    let states = std::fs::read_to_string(hooks.join("states")).unwrap();
    // Each run logs its state, then a `#cgroup` line: its v1 memory cgroup.
    let lines: Vec<&str> = states.lines().collect();
    let (state, hook_cgroup) = lines
        .windows(2)
        .filter_map(|w| Some((serde_json::from_str::<serde_json::Value>(w[0]).ok()?, w[1])))
        .rfind(|(s, _)| s["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no state for {id} in {states}"));
    assert_eq!(state["status"], "creating", "{state}");
    let pid = state["pid"].as_i64().expect("a pid") as i32;
    assert_eq!(
        host_ns(pid, "pid"),
        container_ns(&c, &id, "pid"),
        "the hook was given the restored init's pid"
    );
    // CRIU's thread sits in the container's v1 cgroups: the hook is moved
    // back to the shim's, so the container's limits and its end do not
    // reach it. (cgroup v2 has no per-thread cgroups: nothing to move.)
    let container_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    if let Some(memory) = container_cgroup.lines().find(|l| l.contains(":memory:")) {
        let hook_memory = hook_cgroup.strip_prefix("#cgroup ").expect("a cgroup line");
        assert!(hook_memory.contains(":memory:"), "{hook_cgroup}");
        assert_ne!(
            hook_memory, memory,
            "the hook ran outside the container's cgroup"
        );
    }
    c.stop_container(&id, GRACE);
    wait_exited(&c, &id);
    c.remove_container(&id);
    drop::<Pod>(pod);
}
