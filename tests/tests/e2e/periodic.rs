//! Periodic checkpoints (`ARCH_INTERVAL`): a container killed without
//! warning comes back from an image at most about one interval old.

use std::time::Duration;

use arch_e2e::{checkpoint_root, ctr, records_for, unique_id, wait_until, Ctr};
use arch_records::{Operation, Outcome, Record};

/// Counts ten times a second into /tmp/count; remembers its boot in a
/// shell variable (new after a fresh start, the same after a restore).
const COUNTER: &str = "boot=$(cat /proc/sys/kernel/random/uuid); i=0; \
    while true; do i=$((i+1)); echo $i > /tmp/count; echo $boot > /tmp/boot; sleep 0.1; done";

fn read(c: &Ctr, id: &str, file: &str) -> String {
    c.rootfs_file(id, &format!("tmp/{file}"))
}

fn count(c: &Ctr, id: &str) -> u64 {
    read(c, id, "count").parse().unwrap_or(0)
}

fn periodic(records: &[Record], outcome: Outcome) -> usize {
    records
        .iter()
        .filter(|r| {
            r.op == Operation::Checkpoint && r.trigger == "periodic" && r.outcome == outcome
        })
        .count()
}

fn start(c: &Ctr, id: &str, key: &str, interval: &str) -> arch_e2e::Container {
    let env = format!("ARCH_INTERVAL={interval}");
    let r = c.run_arch_with(
        "-d",
        id,
        Some(key),
        &["--env", &env],
        &["sh", "-c", COUNTER],
    );
    assert_eq!(r.code, 0, "ctr run: {}", r.stderr);
    arch_e2e::Container {
        ctr: c.clone(),
        id: id.to_string(),
    }
}

#[test]
fn a_killed_container_restores_from_its_last_periodic_checkpoint() {
    let c = ctr();
    let (id, key) = (unique_id("periodic"), unique_id("pkey"));
    let root = checkpoint_root();
    let first = start(&c, &id, &key, "2s");
    assert!(
        wait_until(Duration::from_secs(30), || periodic(
            &records_for(&root, &key),
            Outcome::Ok
        ) >= 2),
        "two periodic checkpoints within 30 s: {:?}",
        records_for(&root, &key)
    );
    let boot = read(&c, &id, "boot");
    let at_kill = count(&c, &id);
    // A crash: SIGKILL, no stop signal, no final checkpoint.
    assert_eq!(c.run(&["task", "kill", "-s", "SIGKILL", &id]).code, 0);
    c.wait_status(&id, "STOPPED");
    let stop_checkpoints = records_for(&root, &key)
        .iter()
        .filter(|r| r.op == Operation::Checkpoint && r.trigger == "stop")
        .count();
    assert_eq!(stop_checkpoints, 0, "SIGKILL takes no checkpoint");
    drop(first);

    let second = unique_id("periodic2");
    let _ct = start(&c, &second, &key, "1h");
    c.wait_status(&second, "RUNNING");
    assert_eq!(
        read(&c, &second, "boot"),
        boot,
        "restored, not started fresh"
    );
    let resumed = count(&c, &second);
    // The image is at most one interval (2 s, 20 counts) plus one dump old.
    assert!(
        resumed + 40 >= at_kill,
        "restored at {resumed}, killed at {at_kill}: the image is too old"
    );
    arch_e2e::assert_restore_recorded(&root, &key, Outcome::Ok);
}

#[test]
fn the_stop_signal_still_takes_a_final_checkpoint() {
    let c = ctr();
    let (id, key) = (unique_id("pstop"), unique_id("pskey"));
    let root = checkpoint_root();
    let _ct = start(&c, &id, &key, "1s");
    assert!(wait_until(Duration::from_secs(30), || {
        periodic(&records_for(&root, &key), Outcome::Ok) >= 1
    }));
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    c.wait_status(&id, "STOPPED");
    let recs = records_for(&root, &key);
    let last = recs
        .iter()
        .rfind(|r| r.op == Operation::Checkpoint && r.outcome != Outcome::Skipped)
        .expect("checkpoint records");
    assert_eq!(
        (last.trigger.as_str(), last.outcome),
        ("stop", Outcome::Ok),
        "{recs:?}"
    );
    // The ticking ended with the stop: no periodic record after it.
    std::thread::sleep(Duration::from_millis(2500));
    let after = records_for(&root, &key);
    assert_eq!(after.len(), recs.len(), "records after the stop: {after:?}");
}

#[test]
fn an_invalid_interval_fails_create_with_the_reason() {
    let c = ctr();
    for bad in ["soon", "0s", "10"] {
        let id = unique_id("pbad");
        let env = format!("ARCH_INTERVAL={bad}");
        let r = c.run_arch_with("--rm", &id, None, &["--env", &env], &["true"]);
        assert_ne!(r.code, 0, "{bad} accepted");
        assert!(r.stderr.contains("ARCH_INTERVAL"), "{bad}: {}", r.stderr);
        let _ = c.run(&["container", "rm", &id]);
    }
}
