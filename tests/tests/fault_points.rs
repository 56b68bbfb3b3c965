//! The reliability sweep: every fault point of a stop-checkpoint and of a
//! restore (crates/faults), with every action, checked against what must
//! hold whatever goes wrong:
//! - a committed image always validates; a failed checkpoint leaves nothing
//!   (no temporaries once containerd's cleanup or the next operation ran);
//! - a container asked to stop stops, with nothing of it left running;
//! - a failed restore is a fresh start from a rolled-back rootfs with the
//!   image moved aside, or (the shim dead) a clear error with nothing
//!   half-restored left running and the image still usable.
//!
//! The debug shim honours the `io.arch.test.fault` annotation. Run alone
//! (hack/test.sh): `remove-root` takes the whole checkpoint root away.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use arch_e2e::{
    checkpoint_root, ctr, image_entries, leaks, mounts_containing, parallel, pid_alive,
    records_for, shim_pids, unique_id, wait_until, workload_pids, Ctr,
};
use arch_faults::points;
use arch_image::{Error as ImageError, ImageStore};
use arch_records::{Operation, Outcome};

const NS: &str = "arch-test";

/// Counts in a shell variable (restored with the process, lost by a fresh
/// start) into /tmp/count; marks a rootfs that was not rolled back; its
/// TERM trap leaves /tmp/term (the process got its stop signal).
const WORKLOAD: &str =
    "trap 'echo term > /tmp/term; exit 143' TERM; [ -f /tmp/keep ] && touch /tmp/not-rolled-back; \
                        touch /tmp/keep; i=0; \
                        while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done";

/// What the first container counts to before its checkpoint. A fresh start
/// cannot reach it in the second or so we look (it counts 10 a second); a
/// restored counter is already past it.
const AT_CHECKPOINT: u64 = 20;

fn fault(point: &str, action: &str) -> String {
    format!("io.arch.test.fault={point}={action}")
}

fn rootfs(c: &Ctr, id: &str) -> PathBuf {
    c.bundle(id).join("rootfs")
}

fn count(c: &Ctr, id: &str) -> Option<u64> {
    std::fs::read_to_string(rootfs(c, id).join("tmp/count"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn stopped_or_gone(c: &Ctr, id: &str) -> bool {
    c.task_status(id).is_none_or(|s| s == "STOPPED")
}

fn remove(c: &Ctr, id: &str) {
    let _ = c.run(&["task", "kill", "-s", "SIGKILL", id]);
    wait_until(Duration::from_secs(10), || stopped_or_gone(c, id));
    let _ = c.run(&["task", "rm", "-f", id]);
    let _ = c.run(&["container", "rm", id]);
}

/// Everything of container `id` (workload `key`) is gone after removal.
fn nothing_left(c: &Ctr, id: &str, key: &str) -> Result<(), String> {
    remove(c, id);
    if !wait_until(Duration::from_secs(20), || workload_pids(key).is_empty()) {
        return Err(format!("processes left running: {:?}", workload_pids(key)));
    }
    if !wait_until(Duration::from_secs(10), || shim_pids(id).is_empty()) {
        return Err(format!("shim left running: {:?}", shim_pids(id)));
    }
    // By cgroup, not by environment: a task stuck in exit has none.
    leaks::nothing_in_cgroup_of(id, Duration::from_secs(20))?;
    match mounts_containing(id).as_slice() {
        [] => Ok(()),
        left => Err(format!("mounts left: {left:?}")),
    }
}

/// The root and namespace directory, where they exist, are private.
fn root_private() -> Result<(), String> {
    for dir in [checkpoint_root(), checkpoint_root().join(NS)] {
        if let Ok(meta) = std::fs::metadata(&dir) {
            let mode = meta.permissions().mode() & 0o777;
            if mode != 0o700 {
                return Err(format!("{} has mode {mode:o}", dir.display()));
            }
        }
    }
    Ok(())
}

/// What `key` holds: Some(valid image), None (nothing at all), or an error
/// for a broken image or leftovers.
fn committed(key: &str) -> Result<bool, String> {
    // containerd's cleanup of a dead shim, or the Staging drop, removes
    // temporaries; give either time to run.
    wait_until(Duration::from_secs(20), || {
        !image_entries(NS, key).iter().any(|e| e.contains("@tmp-"))
    });
    match ImageStore::new(checkpoint_root()).open(NS, key) {
        Ok(_) => match image_entries(NS, key).as_slice() {
            [only] if only == key => Ok(true),
            more => Err(format!("a valid image, but also {more:?}")),
        },
        Err(ImageError::NotFound { .. }) => match image_entries(NS, key).as_slice() {
            [] => Ok(false),
            left => Err(format!("nothing committed, but left {left:?}")),
        },
        Err(e) => Err(format!("the committed image fails validation: {e}")),
    }
}

/// Starts the counting workload (optionally with a fault armed) and waits
/// until it has counted to `at_least`.
fn start_counting(
    c: &Ctr,
    id: &str,
    key: &str,
    armed: Option<&str>,
    at_least: u64,
) -> Result<(), String> {
    let mut extra: Vec<&str> = armed.map(|f| vec!["--annotation", f]).unwrap_or_default();
    // CRIU locks the network (and calls that notify) only in a namespace it
    // dumps, and it dumps the container's own only when the container could
    // change it (crates/runtime/src/quiet_network.rs).
    if armed.is_some_and(|f| f.contains(&points::criu("network-lock"))) {
        extra.extend(["--cap-add", "CAP_NET_ADMIN"]);
    }
    let r = c.run_arch_with("-d", id, Some(key), &extra, &["sh", "-c", WORKLOAD]);
    if r.code != 0 {
        return Err(format!("ctr run failed: {}", r.stderr.trim()));
    }
    if !wait_until(Duration::from_secs(20), || {
        count(c, id).is_some_and(|n| n >= at_least)
    }) {
        return Err(format!("never counted to {at_least}"));
    }
    Ok(())
}

/// SIGTERM (ARCH's stop signal) and wait for the task to end.
fn stop(c: &Ctr, id: &str) -> Result<(), String> {
    stop_expecting(c, id, false)
}

/// `stop`; with `shim_may_die`, the shim crashing before it answers the
/// Kill (the checkpoint starts at once on its own thread) is no error.
fn stop_expecting(c: &Ctr, id: &str, shim_may_die: bool) -> Result<(), String> {
    let r = c.run(&["task", "kill", id]);
    let shim_died = r.stderr.contains("ttrpc: closed");
    if r.code != 0 && !(shim_may_die && shim_died) {
        return Err(format!("ctr task kill: {}", r.stderr.trim()));
    }
    if !wait_until(Duration::from_secs(60), || stopped_or_gone(c, id)) {
        return Err(format!("did not stop; status {:?}", c.task_status(id)));
    }
    Ok(())
}

/// Whether a checkpoint with `action` at `point` must commit. None: either
/// outcome is right (the root vanishing may or may not hit what is written).
fn must_commit(point: &str, action: &str) -> Option<bool> {
    match action {
        "error" | "crash" => Some(point == "commit:published"),
        // CRIU only runs while it notifies; elsewhere the kill finds nothing.
        "kill-criu" => Some(!point.starts_with("criu:")),
        _ => None,
    }
}

fn checkpoint_case(c: &Ctr, point: &str, action: &str) -> Result<(), String> {
    let (id, key) = (unique_id("fp"), unique_id("fpk"));
    // Names a leftover (a leak report shows ids and keys) after its case.
    eprintln!("checkpoint {point}={action}: container {id}, key {key}");
    let armed = fault(point, action);
    let result = (|| {
        start_counting(c, &id, &key, Some(&armed), 3)?;
        stop_expecting(c, &id, action == "crash")?;
        let has_image = committed(&key)?;
        if let Some(want) = must_commit(point, action) {
            if has_image != want {
                return Err(format!("committed: {has_image}, expected {want}"));
            }
        }
        if action == "error" && !has_image {
            // The failure names its point: proof the point was reached.
            recorded_at(&key, Operation::Checkpoint, Outcome::Failed, point)?;
        }
        // A failed checkpoint never loses the process: it was kept frozen
        // (not killed) past the dump, thawed, and got its stop signal.
        // (With the root removed or the disk full, "no image" may also mean
        // committed and then lost, so only failures that are known say so.)
        let failed = matches!(action, "error" | "kill-criu") && !has_image;
        if failed && !rootfs(c, &id).join("tmp/term").exists() {
            return Err("the process never got its stop signal (lost to the checkpoint)".into());
        }
        root_private()?;
        nothing_left(c, &id, &key)
    })();
    remove(c, &id);
    result.map_err(|e| format!("checkpoint {point}={action}: {e}"))
}

/// A record of `op` ending in `outcome` because of the fault at `point`
/// (a refused CRIU notify shows as rust-criu's "notify callback failed").
fn recorded_at(key: &str, op: Operation, outcome: Outcome, point: &str) -> Result<(), String> {
    let recs = records_for(&checkpoint_root(), key);
    let named = recs.iter().any(|r| {
        r.op == op
            && r.outcome == outcome
            && r.error.as_deref().is_some_and(|e| {
                e.contains(&format!("injected fault at {point}"))
                    || (point.starts_with("criu:") && e.contains("notify"))
            })
    });
    match named {
        true => Ok(()),
        false => Err(format!("no {outcome:?} record naming {point}: {recs:?}")),
    }
}

/// Fails the test with every case's failure, and with any task the cases
/// leaked (orphaned container tasks or CRIU workers that were not there
/// before, `leaks_before`).
fn report(failures: Vec<String>, cases: usize, leaks_before: &[i32]) {
    let mut failures: Vec<String> = failures.into_iter().filter(|f| !f.is_empty()).collect();
    if let Err(e) = leaks::no_new_orphans(leaks_before, Duration::from_secs(30)) {
        failures.push(e);
    }
    eprintln!("{cases} fault cases, {} failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The checkpoint points the rig's shims pass: streamed dumps (the
/// default where CRIU has `--stream`, as the rig's does) reach the
/// streamer's point instead of CRIU's notifies; `ARCH_STREAM=off` given to
/// the rig's containerd (and to this test) sweeps the RPC dump's.
fn checkpoint_points() -> Vec<String> {
    match std::env::var("ARCH_STREAM").as_deref() {
        Ok("off") => points::checkpoint(),
        _ => points::checkpoint_streamed(),
    }
}

#[test]
fn every_checkpoint_fault_point_fails_cleanly_or_commits_whole() {
    let c = ctr();
    let before = leaks::baseline();
    let points = checkpoint_points();
    let cases: Vec<(&str, &str)> = points
        .iter()
        .flat_map(|p| ["error", "crash", "kill-criu"].map(|a| (p.as_str(), a)))
        .collect();
    let results = parallel(&cases, 4, |(p, a)| {
        checkpoint_case(&c, p, a).err().unwrap_or_default()
    });
    report(results, cases.len(), &before);
}

/// The checkpoint root removed at each point (one at a time: the root is
/// shared): whatever happens, the next checkpoint must work and be private.
#[test]
fn the_checkpoint_root_removed_at_any_point_is_survived() {
    let c = ctr();
    let before = leaks::baseline();
    let mut failures = Vec::new();
    let points = checkpoint_points();
    for point in &points {
        failures.push(
            checkpoint_case(&c, point, "remove-root")
                .err()
                .unwrap_or_default(),
        );
        failures.push(next_checkpoint_commits(&c, "remove-root", point));
    }
    report(failures, points.len(), &before);
}

/// The root's filesystem filled up at each point (a small tmpfs over the
/// root meanwhile; one case at a time): the checkpoint commits whole or
/// leaves nothing, and once the space is back the next one commits.
#[test]
fn a_disk_filling_up_at_any_point_is_survived() {
    let c = ctr();
    let before = leaks::baseline();
    let _disk = arch_e2e::Tmpfs::mount(checkpoint_root(), "32m");
    let filler = checkpoint_root().join(".arch-fault-fill");
    let mut failures = Vec::new();
    let points = checkpoint_points();
    for point in &points {
        failures.push(
            checkpoint_case(&c, point, "fill-disk")
                .err()
                .unwrap_or_default(),
        );
        if !filler.exists() {
            failures.push(format!("fill-disk at {point}: the disk was never filled"));
        }
        let _ = std::fs::remove_file(&filler);
        failures.push(next_checkpoint_commits(&c, "fill-disk", point));
    }
    report(failures, points.len(), &before);
}

/// The next operation after a fault: a plain checkpoint must commit into a
/// private root. Empty when it did.
fn next_checkpoint_commits(c: &Ctr, action: &str, point: &str) -> String {
    let (id, key) = (unique_id("fpn"), unique_id("fpnk"));
    let next = start_counting(c, &id, &key, None, 3)
        .and_then(|_| stop(c, &id))
        .and_then(|_| match committed(&key)? {
            true => root_private(),
            false => Err("the next checkpoint did not commit".into()),
        });
    remove(c, &id);
    next.err()
        .map(|e| format!("after {action} at {point}: {e}"))
        .unwrap_or_default()
}

fn restore_case(c: &Ctr, point: &str, action: &str) -> Result<(), String> {
    let key = unique_id("frk");
    let (first, second, third) = (unique_id("fra"), unique_id("frb"), unique_id("frc"));
    eprintln!("restore {point}={action}: containers {first} {second} {third}, key {key}");
    let armed = fault(point, action);
    let result = (|| {
        start_counting(c, &first, &key, None, AT_CHECKPOINT)?;
        stop(c, &first)?;
        if !committed(&key)? {
            return Err("setup: the first checkpoint did not commit".into());
        }
        remove(c, &first);
        let extra = ["--annotation", armed.as_str()];
        let run = c.run_arch_with("-d", &second, Some(&key), &extra, &["sh", "-c", WORKLOAD]);
        match action {
            "crash" => crashed(c, &second, &third, &key, run.code),
            _ => fell_back(c, &second, &key, point, action, run.code),
        }
    })();
    for id in [&first, &second, &third] {
        remove(c, id);
    }
    result.map_err(|e| format!("restore {point}={action}: {e}"))
}

/// A failed restore: a fresh start from a rolled-back rootfs, the image
/// moved aside, no restored process anywhere.
fn fell_back(
    c: &Ctr,
    id: &str,
    key: &str,
    point: &str,
    action: &str,
    code: i32,
) -> Result<(), String> {
    if code != 0 {
        return Err(format!("ctr run failed instead of falling back ({code})"));
    }
    if !wait_until(Duration::from_secs(10), || count(c, id).is_some()) {
        return Err("the fresh start never counted".into());
    }
    let n = count(c, id).unwrap_or(0);
    if n >= AT_CHECKPOINT {
        return Err(format!("counter at {n}: restored, not a fresh start"));
    }
    if rootfs(c, id).join("tmp/not-rolled-back").exists() {
        return Err("the fresh start saw the image's files: rootfs not rolled back".into());
    }
    let entries = image_entries(NS, key);
    if entries.iter().any(|e| e == key) || !entries.iter().any(|e| e.contains("@failed-")) {
        return Err(format!("image not moved aside: {entries:?}"));
    }
    match action {
        "error" => recorded_at(key, Operation::Restore, Outcome::Fallback, point)?,
        // CRIU killed: the failure is CRIU's, not named after the point.
        _ => {
            let recs = records_for(&checkpoint_root(), key);
            if !recs
                .iter()
                .any(|r| r.op == Operation::Restore && r.outcome == Outcome::Fallback)
            {
                return Err(format!("no fallback recorded: {recs:?}"));
            }
        }
    }
    // Only the fresh container's processes: none half-restored elsewhere.
    // Listed before the task's own list, so a process that is in neither
    // started after both; one that is gone by now is no stray.
    let workload = workload_pids(key);
    let ps = c.run(&["task", "ps", id]).stdout;
    let in_task: Vec<i32> = ps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let stray: Vec<i32> = workload
        .into_iter()
        .filter(|p| !in_task.contains(p) && pid_alive(*p))
        .collect();
    if !stray.is_empty() {
        return Err(format!("processes outside the task: {stray:?}"));
    }
    nothing_left(c, id, key)
}

/// The shim died mid-restore: a clear error, nothing left running, and the
/// next create with the key gets either a restore or a clean fresh start.
fn crashed(c: &Ctr, id: &str, next: &str, key: &str, code: i32) -> Result<(), String> {
    if code == 0 && c.task_status(id).as_deref() == Some("RUNNING") {
        return Err("the shim crashed, yet the task runs".into());
    }
    nothing_left(c, id, key)?;
    let usable = match ImageStore::new(checkpoint_root()).open(NS, key) {
        Ok(_) => true,
        Err(ImageError::NotFound { .. }) => false,
        Err(e) => return Err(format!("the image was damaged: {e}")),
    };
    start_counting(c, next, key, None, 1)?;
    let n = count(c, next).unwrap_or(0);
    if usable && n < AT_CHECKPOINT {
        return Err(format!(
            "the image survived but the next create started fresh (count {n})"
        ));
    }
    nothing_left(c, next, key)
}

#[test]
fn every_restore_fault_point_falls_back_or_fails_clearly() {
    let c = ctr();
    let before = leaks::baseline();
    // CRIU can only be killed while it runs: at its own notify points.
    let points = points::restore();
    let cases: Vec<(&str, &str)> = points
        .iter()
        .flat_map(|p| ["error", "crash"].map(|a| (p.as_str(), a)))
        .chain(
            points
                .iter()
                .filter(|p| p.starts_with("criu:"))
                .map(|p| (p.as_str(), "kill-criu")),
        )
        .collect();
    let results = parallel(&cases, 4, |(p, a)| {
        restore_case(&c, p, a).err().unwrap_or_default()
    });
    report(results, cases.len(), &before);
}
