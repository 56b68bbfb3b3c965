//! Pre-copy (`ARCH_PREDUMP`, issue 14 §4). Where the kernel tracks dirty
//! pages (the cgroup v2 VM's guest) a container with `ARCH_PREDUMP=2` is
//! checkpointed on stop after two pre-dumps and restored from that image;
//! where it does not (the CI host: no CONFIG_MEM_SOFT_DIRTY) the same
//! `ctr run` fails, naming the missing kernel feature. Which host this is,
//! CRIU says (`criu check --feature mem_dirty_track`), asked here apart
//! from the shim; the VM also sets `ARCH_E2E_EXPECT_SOFT_DIRTY=1`, so a
//! guest without it fails instead of testing the error path.

use std::process::Command;
use std::time::Duration;

use arch_e2e::{checkpoint_root, ctr, unique_id, wait_until, Container, Ctr};
use arch_image::ImageStore;
use arch_records::Outcome;

const FEATURE: &str = "soft-dirty memory tracking (CONFIG_MEM_SOFT_DIRTY)";

/// Counts ten times a second; its boot id is new after a fresh start and
/// the same after a restore.
const COUNTER: &str = "boot=$(cat /proc/sys/kernel/random/uuid); i=0; \
    while true; do i=$((i+1)); echo $i > /tmp/count; echo $boot > /tmp/boot; sleep 0.1; done";

fn soft_dirty() -> bool {
    let out = Command::new("criu")
        .args(["check", "--feature", "mem_dirty_track"])
        .output()
        .expect("criu runs (the rig installs it)");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() || text.contains("Dirty tracking is OFF"),
        "criu check gave no answer: {text}"
    );
    if std::env::var("ARCH_E2E_EXPECT_SOFT_DIRTY").as_deref() == Ok("1") {
        assert!(
            out.status.success(),
            "this host must track dirty pages: {text}"
        );
    }
    out.status.success()
}

fn run(c: &Ctr, id: &str, key: &str, predumps: &str) -> arch_e2e::Run {
    let env = format!("ARCH_PREDUMP={predumps}");
    c.run_arch_with(
        "-d",
        id,
        Some(key),
        &["--env", &env],
        &["sh", "-c", COUNTER],
    )
}

#[test]
fn predump_checkpoints_where_the_kernel_tracks_dirty_pages_and_fails_clearly_elsewhere() {
    let c = ctr();
    let (id, key) = (unique_id("predump"), unique_id("pdkey"));
    let r = run(&c, &id, &key, "2");
    if !soft_dirty() {
        assert_ne!(
            r.code, 0,
            "ctr run with ARCH_PREDUMP=2 on a kernel without soft-dirty succeeded"
        );
        assert!(
            r.stderr.contains(FEATURE),
            "the error names the feature: {}",
            r.stderr
        );
        assert!(r.stderr.contains("ARCH_PREDUMP=2"), "{}", r.stderr);
        // The shim's own probe answered (not "probing for it failed").
        assert!(r.stderr.contains("does not have"), "{}", r.stderr);
        let _ = c.run(&["task", "delete", &id]);
        let _ = c.run(&["container", "rm", &id]);
        return;
    }
    assert_eq!(r.code, 0, "ctr run: {}", r.stderr);
    let first = Container {
        ctr: c.clone(),
        id: id.clone(),
    };
    let count = |id: &str| -> u64 { c.rootfs_file(id, "tmp/count").parse().unwrap_or(0) };
    assert!(wait_until(Duration::from_secs(60), || count(&id) >= 5));
    let boot = c.rootfs_file(&id, "tmp/boot");
    let before_stop = count(&id);
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    c.wait_status(&id, "STOPPED");
    let image = ImageStore::new(checkpoint_root())
        .open(&c.namespace, &key)
        .expect("a committed image that validates");
    let m = image.manifest();
    for dir in ["pre-1/", "pre-2/", "criu/"] {
        assert!(
            m.files
                .iter()
                .any(|f| f.path.starts_with(dir) && f.path.contains("pages-")),
            "no pages in {dir}: {:?}",
            m.files
        );
    }
    for step in ["predump", "dump"] {
        assert!(
            m.durations_ms.contains_key(step),
            "{step}: {:?}",
            m.durations_ms
        );
    }
    // A stop stays frozen through the commit: its freeze time is in the
    // record, apart from the pre-dumps.
    let records = arch_e2e::records_for(&checkpoint_root(), &key);
    let stop = records
        .iter()
        .find(|r| r.trigger == "stop" && r.outcome == Outcome::Ok)
        .unwrap_or_else(|| panic!("no stop checkpoint record: {records:?}"));
    for step in ["predump", "dump", "freeze"] {
        assert!(
            stop.durations_ms.contains_key(step),
            "{step}: {:?}",
            stop.durations_ms
        );
    }
    drop(first);

    let second = unique_id("predump2");
    let r = run(&c, &second, &key, "2");
    assert_eq!(r.code, 0, "ctr run: {}", r.stderr);
    let _second = Container {
        ctr: c.clone(),
        id: second.clone(),
    };
    c.wait_status(&second, "RUNNING");
    assert_eq!(
        c.rootfs_file(&second, "tmp/boot"),
        boot,
        "restored, not started fresh"
    );
    let resumed = count(&second);
    assert!(
        resumed >= before_stop,
        "went back: {resumed} < {before_stop}"
    );
    arch_e2e::assert_restore_recorded(&checkpoint_root(), &key, Outcome::Ok);
}

#[test]
fn an_invalid_predump_count_fails_create_with_the_reason() {
    let c = ctr();
    for bad in ["9", "two"] {
        let id = unique_id("pdbad");
        let r = run(&c, &id, &unique_id("pdbadkey"), bad);
        assert_ne!(r.code, 0, "{bad} accepted");
        assert!(
            r.stderr.contains("ARCH_PREDUMP") && r.stderr.contains("0 to 8"),
            "{bad}: {}",
            r.stderr
        );
        let _ = c.run(&["container", "rm", &id]);
    }
}
