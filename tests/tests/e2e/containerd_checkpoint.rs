//! containerd's own checkpoint and restore (`ctr container checkpoint` /
//! `ctr container restore --live`, the path Kubernetes' restore takes too):
//! the restored task continues where the checkpoint left it, and a
//! checkpoint that cannot be restored fails with the reason instead of a
//! silent fresh start.

use std::time::Duration;

use arch_e2e::shim_client::{api, ctx, status, Code};
use arch_e2e::{ctr, unique_id, wait_until, Ctr};

/// Counts into /tmp/count and keeps, in a shell variable, a value only
/// this run of the process has (written to /tmp/boot).
const COUNTER: &str = "boot=$$-$RANDOM-$RANDOM; i=0; \
    while true; do i=$((i+1)); echo $i > /tmp/count; echo $boot > /tmp/boot; sleep 0.1; done";

fn read(c: &Ctr, id: &str, file: &str) -> String {
    c.rootfs_file(id, &format!("tmp/{file}"))
}

fn count(c: &Ctr, id: &str) -> u64 {
    read(c, id, "count").parse().unwrap_or(0)
}

fn remove(c: &Ctr, id: &str) {
    let _ = c.run(&["task", "kill", "-s", "SIGKILL", id]);
    wait_until(Duration::from_secs(10), || {
        c.task_status(id).is_none_or(|s| s == "STOPPED")
    });
    let _ = c.run(&["task", "rm", "-f", id]);
    let _ = c.run(&["container", "rm", id]);
}

#[test]
fn ctr_container_restore_continues_the_checkpointed_processes() {
    let c = ctr();
    let id = unique_id("ctrck");
    let image = format!("localhost/arch-e2e-checkpoint/{id}:1");
    let r = c.run(&[
        "run",
        "-d",
        "--runtime",
        arch_e2e::RUNTIME,
        arch_e2e::IMAGE,
        &id,
        "sh",
        "-c",
        COUNTER,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(wait_until(Duration::from_secs(20), || count(&c, &id) >= 10));
    let r = c.run(&["container", "checkpoint", "--task", "--rw", &id, &image]);
    assert_eq!(r.code, 0, "checkpoint: {}", r.stderr);
    let (at, boot) = (count(&c, &id), read(&c, &id, "boot"));
    remove(&c, &id);

    let r = c.run(&["container", "restore", "--live", "--rw", &id, &image]);
    assert_eq!(r.code, 0, "restore: {}", r.stderr);
    c.wait_status(&id, "RUNNING");
    assert!(
        wait_until(Duration::from_secs(10), || count(&c, &id) > at + 5),
        "the counter did not go on from {at}: {}",
        count(&c, &id)
    );
    assert_eq!(
        read(&c, &id, "boot"),
        boot,
        "the same process, not a fresh start"
    );
    remove(&c, &id);
    let _ = c.run(&["image", "rm", &image]);
}

#[test]
fn a_checkpoint_without_criu_images_fails_create_with_the_reason() {
    let c = ctr();
    let id = unique_id("ckbad");
    let _running = c.start_detached(&id, &["sleep", "600"]);
    // A second container in the same shim, with a "checkpoint" holding
    // nothing CRIU could restore.
    let dir = std::env::temp_dir().join(unique_id("arch-empty-checkpoint"));
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::copy(
        c.bundle(&id).join("config.json"),
        bundle.join("config.json"),
    )
    .unwrap();
    let other = unique_id("ckbad2");
    let err = status(c.shim(&id).create(
        ctx(),
        &api::CreateTaskRequest {
            id: other.clone(),
            bundle: bundle.display().to_string(),
            checkpoint: dir.join("images").display().to_string(),
            ..Default::default()
        },
    ));
    assert_eq!(err.0, Code::FAILED_PRECONDITION, "{}", err.1);
    assert!(
        err.1.contains("cannot restore checkpoint") && err.1.contains("inventory.img"),
        "{}",
        err.1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
