//! ARCH checkpoints: on the stop signal, through the Checkpoint RPC, and
//! their failure paths. Images land in the checkpoint root that
//! hack/test.sh gives containerd (and so the shim) in ARCH_CHECKPOINT_ROOT.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use arch_e2e::shim_client::{api, ctx, Any};
use arch_e2e::{ctr, unique_id, wait_until, Ctr, IMAGE, RUNTIME};
use arch_image::ImageStore;

fn store() -> ImageStore {
    ImageStore::new(arch_e2e::checkpoint_root())
}

const COUNTER: &str = "i=0; rm /etc/group; mkdir -p /data; echo kept > /data/file; \
    while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done";

fn count(c: &Ctr, id: &str, exec: &str) -> u64 {
    let r = c.run(&["task", "exec", "--exec-id", exec, id, "cat", "/tmp/count"]);
    // Until the counter wrote its first number there is no file: 0 (a race
    // with a loaded machine, not a failure).
    if r.code != 0 && r.stderr.contains("can't open '/tmp/count'") {
        return 0;
    }
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The counter rewrites the file; a read can land between truncate and write.
    r.stdout.trim().parse().unwrap_or(0)
}

fn tar_entries(path: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("tar")
        .arg("-tf")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

fn no_leftovers(ns: &str, key: &str) {
    let names = arch_e2e::image_entries(ns, key);
    assert!(
        names.is_empty(),
        "image or temporaries left for {key}: {names:?}"
    );
}

#[test]
fn stop_signal_commits_a_valid_image_with_the_rootfs_changes() {
    let c = ctr();
    let (id, key) = (unique_id("stop"), unique_id("key"));
    let _ct = c.start_arch(&id, Some(&key), COUNTER);
    assert!(wait_until(Duration::from_secs(10), || count(&c, &id, "n") >= 5));
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    c.wait_status(&id, "STOPPED");
    // The exit is reported only once the image is committed.
    let image = store()
        .open(&c.namespace, &key)
        .expect("a committed image that validates");
    let m = image.manifest();
    assert_eq!(m.container_id, id);
    assert_eq!(m.key, key);
    assert!(m.durations_ms.contains_key("dump"), "{:?}", m.durations_ms);
    assert!(
        m.files.iter().any(|f| f.path.starts_with("criu/pages-")),
        "no memory pages in the image"
    );
    let entries = tar_entries(&image.rootfs_diff());
    for want in ["tmp/count", "data/file", "etc/.wh.group"] {
        assert!(
            entries.iter().any(|e| e == want),
            "{want} not in rootfs diff {entries:?}"
        );
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(image.dir()), 0o700);
    assert_eq!(mode(&image.dir().join("manifest.json")), 0o600);
    assert_eq!(mode(&image.criu_dir().join("dump.log")), 0o600);
}

/// `ctr task kill --all` with the stop signal stops the container the ARCH
/// way too: a checkpoint, then the exit (issue 13 §5). The counter's shell
/// is its pid namespace's init and has no TERM trap: delivered, the signal
/// would leave it running.
#[test]
fn the_stop_signal_to_all_processes_checkpoints() {
    let c = ctr();
    let (id, key) = (unique_id("stopall"), unique_id("key"));
    let _ct = c.start_arch(&id, Some(&key), COUNTER);
    assert!(wait_until(Duration::from_secs(10), || count(&c, &id, "n") >= 5));
    let r = c.run(&["task", "kill", "--all", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    c.wait_status(&id, "STOPPED");
    let image = store()
        .open(&c.namespace, &key)
        .expect("kill --all checkpointed: a committed image");
    assert_eq!(image.manifest().container_id, id);
}

#[test]
fn the_annotation_opts_in_and_the_key_defaults_to_the_container_id() {
    let c = ctr();
    let id = unique_id("annot");
    let r = c.run(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--annotation",
        "io.arch.enable=true",
        IMAGE,
        &id,
        "sh",
        "-c",
        "sleep 600",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let _ct = arch_e2e::Container {
        ctr: c.clone(),
        id: id.clone(),
    };
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    c.wait_status(&id, "STOPPED");
    store()
        .open(&c.namespace, &id)
        .expect("image under the container id");
}

#[test]
fn sigkill_during_a_stop_checkpoint_waits_for_the_commit() {
    let c = ctr();
    let (id, key) = (unique_id("kill"), unique_id("kkey"));
    let _ct = c.start_arch(&id, Some(&key), "memtouch 64");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    let k = c.run(&["task", "kill", "-s", "SIGKILL", &id]);
    assert_eq!(k.code, 0, "{}", k.stderr);
    c.wait_status(&id, "STOPPED");
    let image = store()
        .open(&c.namespace, &key)
        .expect("the commit finished despite SIGKILL");
    // CRIU's bytes: a streamed image stores them compressed.
    let m = image.manifest();
    let criu_bytes = match m.streamed() {
        true => m.streamed_sizes().0,
        false => m.total_size,
    };
    assert!(
        criu_bytes > 64 << 20,
        "64 MiB of touched memory in the image"
    );
}

#[test]
fn checkpoint_rpc_leaves_the_container_running() {
    let c = ctr();
    let (id, key) = (unique_id("live"), unique_id("lkey"));
    let _ct = c.start_arch(&id, Some(&key), COUNTER);
    assert!(wait_until(Duration::from_secs(10), || count(&c, &id, "a") >= 3));
    let r = c.run(&["task", "checkpoint", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
    let before = count(&c, &id, "b");
    assert!(
        wait_until(Duration::from_secs(10), || count(&c, &id, "c") > before),
        "the counter stopped"
    );
    let image = store().open(&c.namespace, &key).expect("committed image");
    assert_eq!(image.manifest().container_id, id);
}

#[test]
fn checkpoint_rpc_with_exit_stops_the_container() {
    let c = ctr();
    let (id, key) = (unique_id("exit"), unique_id("ekey"));
    let _ct = c.start_arch(&id, Some(&key), COUNTER);
    std::thread::sleep(Duration::from_millis(500));
    let opts = api::CheckpointTaskRequest {
        id: id.clone(),
        options: Some(Any {
            type_url: "containerd.runc.v1.CheckpointOptions".into(),
            // field 1 (exit) = true
            value: vec![0x08, 0x01],
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    c.shim(&id).checkpoint(ctx(), &opts).expect("checkpoint");
    c.wait_status(&id, "STOPPED");
    store().open(&c.namespace, &key).expect("committed image");
}

#[test]
fn plain_containers_checkpoint_with_containerd_semantics() {
    let c = ctr();
    let id = unique_id("plain");
    let _ct = c.start_detached(&id, &["sh", "-c", "while true; do sleep 0.1; done"]);
    let r = c.run(&["task", "checkpoint", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("checkpoint"),
        "ctr names the checkpoint image: {}",
        r.stdout
    );
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
    no_leftovers(&c.namespace, &id);
}

const URING: &str = "trap 'exit 143' TERM; uring-hold & while true; do sleep 0.1; done";

#[test]
fn a_failed_stop_checkpoint_leaves_nothing_and_delivers_the_signal() {
    let c = ctr();
    let (id, key) = (unique_id("fail"), unique_id("fkey"));
    let runner = {
        let c = c.clone();
        let (id, key) = (id.clone(), key.clone());
        std::thread::spawn(move || c.run_arch("--rm", &id, Some(&key), &["sh", "-c", URING]))
    };
    c.wait_status(&id, "RUNNING");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    let r = runner.join().unwrap();
    assert_eq!(
        r.code, 143,
        "the stop signal reached the container: {}",
        r.stderr
    );
    no_leftovers(&c.namespace, &key);
}

#[test]
fn a_failed_checkpoint_rpc_returns_the_reason_and_keeps_the_container() {
    let c = ctr();
    let (id, key) = (unique_id("rpcfail"), unique_id("rkey"));
    let _ct = c.start_arch(&id, Some(&key), URING);
    std::thread::sleep(Duration::from_millis(500));
    let r = c.run(&["task", "checkpoint", &id]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("io_uring"),
        "the reason reaches the caller: {}",
        r.stderr
    );
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
    no_leftovers(&c.namespace, &key);
}

#[test]
fn invalid_opt_in_and_keys_fail_create_clearly() {
    let c = ctr();
    for (env, needle) in [
        ("ARCH_ENABLE=maybe", "ARCH_ENABLE"),
        ("ARCH_KEY=../escape", "ARCH_KEY"),
        ("ARCH_KEY=a/b", "ARCH_KEY"),
    ] {
        let id = unique_id("badopt");
        let r = c.run(&[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--env",
            "ARCH_ENABLE=1",
            "--env",
            env,
            IMAGE,
            &id,
            "true",
        ]);
        let _ = c.run(&["container", "rm", &id]);
        assert_ne!(r.code, 0, "{env} accepted");
        assert!(r.stderr.contains(needle), "{env}: {}", r.stderr);
    }
    assert!(!store()
        .root()
        .join(&c.namespace)
        .join("..")
        .join("escape")
        .exists());
}

#[test]
fn archctl_reads_what_the_shim_wrote() {
    let c = ctr();
    let (id, key) = (unique_id("ctl"), unique_id("ctlkey"));
    let _ct = c.start_arch(&id, Some(&key), COUNTER);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    c.wait_status(&id, "STOPPED");
    let root = arch_e2e::checkpoint_root();
    let name = format!("{}/{key}", c.namespace);
    let v = arch_e2e::archctl(&root, &["validate", &name]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    // Basic mode: the shim signed with the host key; archctl checks with it.
    assert!(!v.stderr.contains("not checked"), "{}", v.stderr);
    let i = arch_e2e::archctl(&root, &["inspect", &name, "--json"]);
    assert_eq!(i.code, 0, "{}", i.stderr);
    assert!(
        i.stdout.contains(&id),
        "inspect names the container: {}",
        i.stdout
    );
    let l = arch_e2e::archctl(&root, &["ls", "--json"]);
    assert!(l.stdout.contains(&key), "ls lists the image");
    let m = arch_e2e::archctl(&root, &["metrics"]);
    assert!(
        m.stdout.contains("arch_checkpoints_total{outcome=\"ok\"}"),
        "{}",
        m.stdout
    );
}
