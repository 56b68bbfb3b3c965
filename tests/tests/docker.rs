//! The Docker / ECS how-to of docs/operations.md, as a user runs it:
//! dockerd configured with docs/examples/daemon.json (hack/docker-test.sh),
//! the image from `docker load`, ARCH asked for with plain `--env`, as an
//! ECS task definition's `environment` does. overlay2 mounts the rootfs
//! itself, so these also test the shim on a rootfs it did not mount.
//!
//! The workload remembers a boot id in a shell variable: after a restore it
//! is the one from before the stop, after a fresh start it is new.

use std::time::Duration;

use arch_e2e::docker::{docker, Docker, DockerContainer, NAMESPACE};
use arch_e2e::{archctl, checkpoint_root, records_for, unique_id, wait_until};
use arch_image::ImageStore;
use arch_records::{Operation, Outcome};

const WORKLOAD: &str = "boot=$(cat /proc/sys/kernel/random/uuid); \
    [ -e /data/file ] || { mkdir -p /data; echo kept > /data/file; }; \
    i=0; while true; do i=$((i+1)); echo $i > /tmp/count; echo $boot > /tmp/boot; sleep 0.1; done";

/// docker stop's default grace period: after it docker sends SIGKILL.
const DOCKER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn arch_env(key: &str) -> Vec<String> {
    vec!["ARCH_ENABLE=1".into(), format!("ARCH_KEY={key}")]
}

fn count(d: &Docker, name: &str) -> u64 {
    d.read(name, "/tmp/count").parse().unwrap_or(0)
}

/// `archctl ls --json`: (key, status) of every image, sidecars included.
fn archctl_images() -> Vec<(String, String)> {
    let r = archctl(&checkpoint_root(), &["ls", "--json", "--all"]);
    assert_eq!(r.code, 0, "archctl ls: {}", r.stderr);
    let list: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).expect("ls --json");
    list.iter()
        .filter(|i| i["namespace"] == NAMESPACE)
        .map(|i| {
            let field = |f: &str| i[f].as_str().unwrap_or_default().to_string();
            (field("key"), field("status"))
        })
        .collect()
}

fn has_image(key: &str, status: &str) -> bool {
    archctl_images()
        .iter()
        .any(|(k, s)| k == key && s == status)
}

/// What a counter showed before its stop.
struct Before {
    boot: String,
    count: u64,
}

/// Starts the counter under `key`, lets it count, marks the rootfs, and
/// stops it with a plain `docker stop`; returns what it had reached.
fn run_and_stop(d: &Docker, name: &str, key: &str) -> (DockerContainer, Before) {
    let ct = d.run_detached(name, &arch_env(key), WORKLOAD);
    assert_eq!(d.inspect(name, "{{.HostConfig.Runtime}}"), "arch");
    assert!(wait_until(Duration::from_secs(10), || count(d, name) >= 5));
    let boot = d.read(name, "/tmp/boot");
    // A file only the checkpointed rootfs has.
    let r = d.exec(name, &["touch", "/tmp/only-before-stop"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let count = count(d, name);
    let took = d.timed(&["stop", name]);
    eprintln!("docker stop (checkpoint) of {name}: {took:?}");
    assert!(
        took < DOCKER_STOP_TIMEOUT,
        "the checkpoint ended the container before docker's SIGKILL: {took:?}"
    );
    assert_eq!(d.inspect(name, "{{.State.Running}}"), "false");
    assert!(
        has_image(key, "committed"),
        "archctl lists the image: {:?}",
        archctl_images()
    );
    let recs = records_for(&checkpoint_root(), key);
    assert!(
        recs.iter().any(|r| r.op == Operation::Checkpoint
            && r.outcome == Outcome::Ok
            && r.trigger == "stop"),
        "checkpoint recorded: {recs:?}"
    );
    (ct, Before { boot, count })
}

/// The container `name` runs the process tree that was stopped.
fn assert_restored(d: &Docker, name: &str, key: &str, before: &Before) {
    assert_eq!(
        d.read(name, "/tmp/boot"),
        before.boot,
        "the process tree was restored, not restarted"
    );
    let seen = before.count;
    assert!(
        wait_until(Duration::from_secs(5), || count(d, name) > seen),
        "the counter continues from {seen}, now {}",
        count(d, name)
    );
    assert_eq!(
        d.read(name, "/data/file"),
        "kept",
        "files written before the stop are kept"
    );
    let r = d.exec(name, &["test", "-e", "/tmp/only-before-stop"]);
    assert_eq!(r.code, 0, "the checkpointed rootfs came back");
    assert!(
        has_image(key, "restored") && !has_image(key, "committed"),
        "the image is consumed: {:?}",
        archctl_images()
    );
    let recs = records_for(&checkpoint_root(), key);
    assert!(
        recs.iter()
            .any(|r| r.op == Operation::Restore && r.outcome == Outcome::Ok),
        "restore recorded: {recs:?}"
    );
}

#[test]
fn docker_stop_checkpoints_and_docker_start_restores() {
    let d = docker();
    let (name, key) = (unique_id("dk-same"), unique_id("dkey"));
    let (_ct, before) = run_and_stop(&d, &name, &key);
    let took = d.timed(&["start", &name]);
    eprintln!("docker start (restore) of {name}: {took:?}");
    assert_restored(&d, &name, &key, &before);
}

/// ECS's replacement task: a new container with the same ARCH_KEY. Its
/// overlay2 layer starts empty, so the files come from the image's diff.
#[test]
fn a_new_container_with_the_same_key_continues() {
    let d = docker();
    let key = unique_id("dkey");
    let (_first, before) = run_and_stop(&d, &unique_id("dk-first"), &key);
    let name = unique_id("dk-next");
    // Its own command never runs: the restored tree replaces it.
    let _next = d.run_detached(&name, &arch_env(&key), "echo started fresh; sleep 600");
    assert_restored(&d, &name, &key, &before);
    let logs = d.ok(&["logs", &name]);
    assert!(!logs.contains("started fresh"), "{logs}");
}

/// `docker stop` (a checkpoint, within docker's grace period) and `docker
/// start` (a restore: the same process, by its boot id).
fn stop_and_restore(d: &Docker, name: &str, key: &str) {
    let boot = d.read(name, "/tmp/boot");
    let took = d.timed(&["stop", name]);
    assert!(took < DOCKER_STOP_TIMEOUT, "{took:?}");
    assert!(has_image(key, "committed"), "{:?}", archctl_images());
    d.ok(&["start", name]);
    assert_eq!(d.read(name, "/tmp/boot"), boot, "restored, not restarted");
}

/// `--network host` (ECS's host mode): the tree shares the host's network
/// namespace, which CRIU neither dumps nor recreates.
#[test]
fn a_host_network_container_is_restored() {
    let d = docker();
    let (name, key) = (unique_id("dk-host"), unique_id("dkey-host"));
    let _ct = d.run_detached_on("host", &name, &arch_env(&key), WORKLOAD);
    assert!(wait_until(Duration::from_secs(10), || count(&d, &name) >= 5));
    stop_and_restore(&d, &name, &key);
}

/// What the server on `name`'s address, port 8080, says to the host
/// ("" when it does not answer).
fn ask_from_host(d: &Docker, name: &str) -> String {
    use std::io::Read;
    let ip = d.inspect(
        name,
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    );
    let Ok(ip) = ip.trim().parse::<std::net::IpAddr>() else {
        return String::new();
    };
    let address = std::net::SocketAddr::new(ip, 8080);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))
    else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut said = String::new();
    let _ = stream.read_to_string(&mut said);
    said.trim().to_string()
}

/// A bridge network, docker's usual networking (a user-defined one: the
/// rig turns the default bridge off to leave the host's iptables alone).
/// The container's namespace is its own, and dockerd moves a veth into it
/// from a prestart hook; CRIU runs in it and leaves it out of the image,
/// the restore makes a new one (docker's `net.*` sysctls set again) and
/// runs the hook, which moves the new veth in, and the restored tree, its
/// listening socket with it, lives there: the server answers the host.
#[test]
fn a_bridge_network_container_is_restored_and_its_server_answers() {
    let d = docker();
    let network = d.bridge_network(&unique_id("dk-br"));
    let (name, key) = (unique_id("dk-bridge"), unique_id("dkey-bridge"));
    let workload = format!("nc -ll -p 8080 -e echo hello & {WORKLOAD}");
    let _ct = d.run_detached_on(&network.name, &name, &arch_env(&key), &workload);
    assert!(wait_until(Duration::from_secs(10), || count(&d, &name) >= 5));
    assert!(
        wait_until(Duration::from_secs(10), || ask_from_host(&d, &name)
            == "hello"),
        "the server answers the host before the stop"
    );
    stop_and_restore(&d, &name, &key);
    assert!(has_image(&key, "restored"), "{:?}", archctl_images());
    assert_eq!(
        ask_from_host(&d, &name),
        "hello",
        "the restored listener answers on the new veth"
    );
    // The namespace was made afresh: docker's net.* sysctls (1024 is the
    // kernel's default) are the new spec's, set again.
    assert_eq!(
        d.read(&name, "/proc/sys/net/ipv4/ip_unprivileged_port_start"),
        "0"
    );
}

/// `docker run -t`: the restored tree gets a new terminal from CRIU, which
/// docker's client side reads like any container's console.
#[test]
fn a_terminal_container_is_restored_with_a_terminal() {
    let d = docker();
    let (name, key) = (unique_id("dk-tty"), unique_id("dkey-tty"));
    let flags = ["--network", "none", "-t"];
    let _ct = d.run_detached_with(&flags, &name, &arch_env(&key), WORKLOAD);
    let pty = |d: &Docker| d.ok(&["exec", &name, "readlink", "/proc/1/fd/1"]);
    assert!(pty(&d).starts_with("/dev/pts/"), "a terminal: {}", pty(&d));
    assert!(wait_until(Duration::from_secs(10), || count(&d, &name) >= 5));
    let seen = count(&d, &name);
    stop_and_restore(&d, &name, &key);
    assert!(
        wait_until(Duration::from_secs(5), || count(&d, &name) > seen),
        "the counter continues from {seen}"
    );
    assert!(
        pty(&d).starts_with("/dev/pts/"),
        "a new terminal: {}",
        pty(&d)
    );
    assert!(has_image(&key, "restored"), "{:?}", archctl_images());
}

/// CRIU fails after the image's changes went into docker's layer: the
/// container starts fresh, docker's mount is left alone (docker keeps a
/// container's layer across stop and start, so the shim never empties it)
/// and the container goes on working under docker.
#[test]
fn a_failed_restore_starts_fresh_on_dockers_rootfs() {
    let d = docker();
    let key = unique_id("dkey-bad");
    let (_first, before) = run_and_stop(&d, &unique_id("dk-bad"), &key);
    let dir = ImageStore::new(checkpoint_root())
        .image_dir(NAMESPACE, &key)
        .unwrap();
    // Through the image's codec (streamed images store `inventory.img.zst`),
    // so the damage reaches CRIU after the rootfs diff went in.
    arch_e2e::restream(&dir, "inventory.img", b"not a criu image");
    let name = unique_id("dk-fresh");
    let _next = d.run_detached(&name, &arch_env(&key), WORKLOAD);
    assert!(wait_until(Duration::from_secs(10), || {
        let boot = d.read(&name, "/tmp/boot");
        boot.len() > 10 && boot != before.boot
    }));
    assert_eq!(d.inspect(&name, "{{.State.Running}}"), "true");
    assert!(
        has_image(&key, "failed"),
        "the bad image is kept aside: {:?}",
        archctl_images()
    );
    let recs = records_for(&checkpoint_root(), &key);
    assert!(
        recs.iter()
            .any(|r| r.op == Operation::Restore && r.outcome == Outcome::Fallback),
        "fallback recorded: {recs:?}"
    );
    let r = d.exec(&name, &["test", "-e", "/tmp/only-before-stop"]);
    assert_eq!(
        r.code, 0,
        "docker's layer is not rolled back: it keeps the image's files"
    );
    d.ok(&["stop", "--time", "1", &name]);
}

/// The daemon.json in docs/operations.md is docs/examples/daemon.json,
/// which hack/docker-test.sh gave the daemon under test.
#[test]
fn the_documented_daemon_json_is_the_tested_one() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let example = std::fs::read_to_string(docs.join("examples/daemon.json")).unwrap();
    let howto = std::fs::read_to_string(docs.join("operations.md")).unwrap();
    assert!(
        howto.contains(&format!("```json\n{example}```")),
        "docs/operations.md shows docs/examples/daemon.json verbatim"
    );
    let d = docker();
    assert_eq!(d.ok(&["info", "--format", "{{.DefaultRuntime}}"]), "arch");
}

#[test]
fn a_plain_container_runs_and_exits_with_its_code() {
    let d = docker();
    let name = unique_id("dk-plain");
    let r = d.run(&[
        "run",
        "--name",
        &name,
        "--network",
        "none",
        arch_e2e::IMAGE,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    let _ct = DockerContainer {
        docker: d.clone(),
        name: name.clone(),
    };
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "out");
    assert_eq!(r.stderr.trim(), "err");
    assert_eq!(d.inspect(&name, "{{.HostConfig.Runtime}}"), "arch");
    assert_eq!(d.inspect(&name, "{{.State.ExitCode}}"), "7");
}

#[test]
fn docker_exec_works() {
    let d = docker();
    let name = unique_id("dk-exec");
    let _ct = d.run_detached(&name, &[], "sleep 600");
    let r = d.exec(&name, &["sh", "-c", "echo $((6 * 7)); echo to-stderr >&2"]);
    assert_eq!(
        (r.code, r.stdout.trim(), r.stderr.trim()),
        (0, "42", "to-stderr")
    );
    assert_eq!(d.exec(&name, &["sh", "-c", "exit 5"]).code, 5);
    // busybox sh execs a lone command: pid 1 is the sleep.
    let r = d.exec(&name, &["cat", "/proc/1/cmdline"]);
    assert!(
        r.stdout.starts_with("sleep"),
        "exec joins the container's pid namespace: {:?}",
        r.stdout
    );
}

/// A plain stop of a container without ARCH_ENABLE is an ordinary stop:
/// no image, and a start begins afresh.
#[test]
fn a_stop_without_arch_enable_leaves_no_image() {
    let d = docker();
    let name = unique_id("dk-noarch");
    let key = unique_id("dkey-noarch");
    let _ct = d.run_detached(&name, &[format!("ARCH_KEY={key}")], WORKLOAD);
    assert!(wait_until(Duration::from_secs(10), || count(&d, &name) >= 1));
    let boot = d.read(&name, "/tmp/boot");
    // sh as pid 1 ignores SIGTERM: docker's SIGKILL ends it.
    d.ok(&["stop", "--time", "1", &name]);
    assert!(archctl_images().iter().all(|(k, _)| k != &key));
    d.ok(&["start", &name]);
    assert!(wait_until(Duration::from_secs(10), || d
        .read(&name, "/tmp/boot")
        != boot));
}
