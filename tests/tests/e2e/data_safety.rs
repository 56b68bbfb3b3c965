//! Issue 13 §3 through containerd: what ARCH puts into an image is the
//! container's own, with its file capabilities, and a rootfs ARCH cannot
//! checkpoint faithfully is refused at Create.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use arch_e2e::{
    assert_restore_recorded, checkpoint_root, ctr, records_for, unique_id, wait_until, Ctr,
};
use arch_records::{Operation, Outcome};

fn diff_of(c: &Ctr, key: &str) -> PathBuf {
    checkpoint_root()
        .join(&c.namespace)
        .join(key)
        .join("rootfs-diff.tar")
}

/// The entries of the image's rootfs diff (retried: a periodic checkpoint
/// may be replacing the image as it is read).
fn diff_entries(c: &Ctr, key: &str) -> Vec<String> {
    let mut names = None;
    wait_until(Duration::from_secs(10), || {
        let out = Command::new("tar")
            .arg("-tf")
            .arg(diff_of(c, key))
            .output()
            .unwrap();
        if out.status.success() {
            names = Some(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect(),
            );
        }
        names.is_some()
    });
    names.unwrap_or_else(|| panic!("no readable rootfs diff for {key}"))
}

/// Force-removes container `id` when dropped, also when the test fails
/// (a periodic container left running fills the root for later suites).
fn guard(c: &Ctr, id: &str) -> arch_e2e::Container {
    arch_e2e::Container {
        ctr: c.clone(),
        id: id.to_string(),
    }
}

/// The container swaps /d between a directory of its own and a symlink to
/// /etc as fast as it can while leave-running checkpoints are taken: a
/// walk that followed the link from the host would archive the host's
/// /etc as d/passwd, d/shadow. (The tree is frozen while the diff is
/// taken, and the walk goes by directory fds that refuse links: the
/// rootfs unit tests swap mid-walk, which cannot be timed from here.)
#[test]
fn a_symlink_swapped_in_a_loop_gets_no_host_file_into_the_image() {
    let c = ctr();
    let (id, key) = (unique_id("swap"), unique_id("swapkey"));
    // /d is nearly always there, as a directory or as the link, each held
    // a moment: the walk meets it. (Without the sleeps a freeze tended to
    // land in the same gap every time - five checkpoints in CI all missed
    // /d.)
    let swapper = "while true; do mkdir /d2; echo mine > /d2/own; rm -rf /d; mv /d2 /d; \
        sleep 0.2; ln -s /etc /l2; rm -rf /d; mv /l2 /d; sleep 0.2; done";
    let r = c.run_arch_with(
        "-d",
        &id,
        Some(&key),
        &["--env", "ARCH_INTERVAL=1s"],
        &["sh", "-c", swapper],
    );
    let ct = guard(&c, &id);
    assert_eq!(r.code, 0, "ctr run: {}", r.stderr);
    let root = checkpoint_root();
    let mut seen = Vec::new();
    let enough = wait_until(Duration::from_secs(60), || {
        let ok = records_for(&root, &key)
            .iter()
            .filter(|r| r.op == Operation::Checkpoint && r.outcome == Outcome::Ok)
            .count();
        if ok > seen.len() {
            let entries = diff_entries(&c, &key);
            let leaked: Vec<&String> = entries
                .iter()
                .filter(|e| {
                    // Its own file, and overlay's markers (an opaque /d
                    // made where a deleted one was) are the container's.
                    let own = e.ends_with("/own") || e.contains("/.wh.");
                    (e.starts_with("d/") || e.starts_with("d2/")) && !own
                })
                .collect();
            assert!(leaked.is_empty(), "host files in the image: {leaked:?}");
            seen.push(entries);
        }
        seen.len() >= 5
    });
    drop(ct);
    assert!(
        enough,
        "five periodic checkpoints in 60 s: {:?}",
        records_for(&root, &key)
    );
    assert!(
        seen.iter().any(|e| e.iter().any(|n| n == "d" || n == "d/")),
        "no checkpoint caught /d (as a directory or a link): {seen:?}"
    );
}

/// A file capability set in the container's layer (from the host: busybox
/// has no setcap) is in the image and on the file after the restore.
#[test]
fn a_file_capability_survives_checkpoint_and_restore() {
    let c = ctr();
    let key = unique_id("capkey");
    let first = unique_id("cap");
    let workload = "[ -e /capfile ] || echo x > /capfile; while true; do sleep 0.1; done";
    let r = c.run_arch("-d", &first, Some(&key), &["sh", "-c", workload]);
    let first_ct = guard(&c, &first);
    assert_eq!(r.code, 0, "ctr run: {}", r.stderr);
    assert_eq!(c.rootfs_file(&first, "capfile"), "x");
    let host_path = c.bundle(&first).join("rootfs/capfile");
    let set = Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(&host_path)
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "setcap: {}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert_eq!(c.run(&["task", "kill", &first]).code, 0);
    c.wait_status(&first, "STOPPED");
    drop(first_ct);
    let pax = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-tvvf"])
        .arg(diff_of(&c, &key))
        .output()
        .unwrap();
    assert!(pax.status.success());
    let second = unique_id("cap");
    let r = c.run_arch("-d", &second, Some(&key), &["sh", "-c", workload]);
    let second_ct = guard(&c, &second);
    assert_eq!(r.code, 0, "ctr run: {}", r.stderr);
    assert_restore_recorded(&checkpoint_root(), &key, Outcome::Ok);
    let got = Command::new("getcap")
        .arg(c.bundle(&second).join("rootfs/capfile"))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&got.stdout).to_string();
    drop(second_ct);
    assert!(
        shown.contains("cap_net_raw"),
        "capability lost: getcap says {shown:?}; tar: {}",
        String::from_utf8_lossy(&pax.stdout)
    );
}

/// containerd's `native` snapshotter hands the shim a bind of a full copy:
/// no layer of changes to checkpoint. ARCH refuses it at Create; a plain
/// container on it runs (so the snapshotter itself works here).
#[test]
fn an_arch_container_on_the_native_snapshotter_is_refused() {
    let c = ctr();
    let plain = unique_id("native");
    let r = c.run(&[
        "run",
        "--rm",
        "--snapshotter",
        "native",
        "--runtime",
        arch_e2e::RUNTIME,
        arch_e2e::IMAGE,
        &plain,
        "echo",
        "native-ok",
    ]);
    assert_eq!(
        (r.code, r.stdout.trim()),
        (0, "native-ok"),
        "native snapshotter unusable: {}",
        r.stderr
    );
    let id = unique_id("native");
    let r = c.run_arch_with(
        "--rm",
        &id,
        None,
        &["--snapshotter", "native"],
        &["echo", "ran"],
    );
    c.run(&["container", "rm", &id]);
    assert_ne!(r.code, 0, "created: {}", r.stdout);
    assert!(!r.stdout.contains("ran"));
    assert!(
        r.stderr.contains("no overlay upperdir") && r.stderr.contains("native"),
        "unclear error: {}",
        r.stderr
    );
}

/// A container that ends while its periodic checkpoint is committing (the
/// commit held 3 s by a `pause` fault): `ctr run --rm` deletes the task
/// and containerd shuts the shim down at once. Delete and Shutdown wait
/// for the commit; before, they removed the container and ended the shim
/// mid-commit, and the image was lost.
#[test]
fn a_delete_mid_commit_waits_for_the_image() {
    let c = ctr();
    let (id, key) = (unique_id("midcommit"), unique_id("midkey"));
    let pause = format!("{}=commit:sealed=pause", arch_faults::ANNOTATION);
    let started = std::time::Instant::now();
    // The first tick (1 s) dumps and then pauses 3 s in its commit; the
    // workload exits at 2 s, mid-commit.
    let r = c.run_arch_with(
        "--rm",
        &id,
        Some(&key),
        &["--env", "ARCH_INTERVAL=1s", "--annotation", &pause],
        &["sleep", "2"],
    );
    let took = started.elapsed();
    assert_eq!(r.code, 0, "ctr run: {}", r.stderr);
    let root = checkpoint_root();
    let ns_dir = root.join(&c.namespace);
    let entries: Vec<String> = std::fs::read_dir(&ns_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&key))
        .collect();
    assert_eq!(
        entries,
        std::slice::from_ref(&key),
        "committed, no temporary left"
    );
    let recs = records_for(&root, &key);
    assert!(
        recs.iter().any(|r| r.op == Operation::Checkpoint
            && r.trigger == "periodic"
            && r.outcome == Outcome::Ok),
        "the periodic commit completed: {recs:?}"
    );
    assert!(
        took >= Duration::from_secs(3),
        "the task was deleted before its commit ended ({took:?})"
    );
}
