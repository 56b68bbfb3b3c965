//! Older generations (issue 16 §1): a host keeping `generations = 3`
//! (set in its config file, `ARCH_CONFIG`) restores a container whose
//! newest periodic image is bad - corrupt on disk (refused at Create), or
//! refused by CRIU (at Start) - from the one before it, instead of
//! starting it fresh, and records the fallback; in network-fs mode too.
//! The generation before that is retired by the restore (never restored
//! later), and the continued job's own checkpoints become the newest and
//! its generations.
//!
//! It runs on a private containerd of its own (as two_hosts does): the
//! host configuration is containerd's, and the suite's must stay as CI
//! set it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use arch_e2e::{records_for, unique_id, wait_until, Ctr};
use arch_records::{Operation, Outcome};

use crate::two_hosts::{bases, Host};

/// Counts ten times a second into /tmp/count; remembers its boot (new
/// after a fresh start, the same after a restore).
const COUNTER: &str = "boot=$(cat /proc/sys/kernel/random/uuid); i=0; \
    while true; do i=$((i+1)); echo $i > /tmp/count; echo $boot > /tmp/boot; sleep 0.1; done";

fn run(c: &Ctr, id: &str, key: &str, interval: &str, extra: &[&str]) {
    let env = format!("ARCH_INTERVAL={interval}");
    let mut args = vec!["--env", env.as_str()];
    args.extend_from_slice(extra);
    let r = c.run_arch_with("-d", id, Some(key), &args, &["sh", "-c", COUNTER]);
    assert_eq!(r.code, 0, "ctr run {id}: {}", r.stderr);
}

fn entries(root: &Path, key: &str) -> Vec<String> {
    arch_e2e::entries_in(root, "arch-test", key)
}

/// The biggest CRIU pages file of the image at `dir`.
fn pages_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("criu"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .map(|e| e.path())
        .unwrap_or_else(|| panic!("no pages file in {}", dir.display()))
}

/// Flips the first bytes of `path` in place (size unchanged).
fn corrupt(path: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut head = [0u8; 64];
    let n = f.read(&mut head).unwrap();
    assert!(n > 0, "{} is empty", path.display());
    for b in &mut head[..n] {
        *b ^= 0xff;
    }
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&head[..n]).unwrap();
    f.sync_all().unwrap();
}

/// How the newest image is made unusable.
#[derive(Clone, Copy, PartialEq)]
enum Break {
    /// A pages file flipped on disk: its sha256 no longer matches (Create).
    Pages,
    /// CRIU's restore fails once (an injected error at its pre-restore
    /// notify, which fires once): the image checks out, CRIU refuses (Start).
    Criu,
}

const CRIU_FAILS_ONCE: &str = "io.arch.test.fault=criu:pre-restore=error";

#[test]
fn a_corrupt_newest_image_falls_back_to_the_generation_before() {
    falls_back("gens", &[], Break::Pages);
}

#[test]
fn a_failed_criu_restore_falls_back_to_the_generation_before() {
    falls_back("gens-criu", &[], Break::Criu);
}

/// On a shared root the restorer takes the older generation under a lease
/// too, and leaves none behind.
#[test]
fn network_fs_falls_back_to_the_generation_before_under_a_lease() {
    let env = [("ARCH_MODE", "network-fs"), ("ARCH_CLAIM_LEASE_SECS", "2")];
    falls_back("gens-nfs", &env, Break::Pages);
}

/// A host `name` keeping three images per key (its config file), settings
/// `env` besides: a counter checkpointed every 2 s is killed, its newest
/// image broken as `how` says, and the re-created container continues
/// from the image before it.
fn falls_back(name: &str, env: &[(&str, &str)], how: Break) {
    let (_, disk) = bases();
    let root = disk.join(format!("{name}-checkpoint"));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&disk).unwrap();
    let config = disk.join(format!("{name}.toml"));
    std::fs::write(&config, "generations = 3\n").unwrap();
    let mut env = env.to_vec();
    env.push(("ARCH_CONFIG", config.to_str().unwrap()));
    let host = Host::with_env(name, &root, &env);
    let c = &host.ctr;

    let (first, key) = (unique_id(name), unique_id("genkey"));
    run(c, &first, &key, "2s", &[]);
    let periodic_ok = || {
        records_for(&root, &key)
            .iter()
            .filter(|r| {
                r.op == Operation::Checkpoint && r.trigger == "periodic" && r.outcome == Outcome::Ok
            })
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(60), || periodic_ok() >= 3),
        "three periodic checkpoints within 60 s: {:?}",
        records_for(&root, &key)
    );
    let boot = c.rootfs_file(&first, "tmp/boot");
    // A crash: SIGKILL, no final checkpoint; nothing writes images after.
    assert_eq!(c.run(&["task", "kill", "-s", "SIGKILL", &first]).code, 0);
    c.wait_status(&first, "STOPPED");
    c.run(&["task", "rm", "-f", &first]);
    c.run(&["container", "rm", &first]);
    let left = entries(&root, &key);
    let mut gens: Vec<_> = left.iter().filter(|n| n.contains("@gen-")).collect();
    assert!(
        left.contains(&key) && gens.len() == 2,
        "the newest image and two older generations: {left:?}"
    );
    // Named by commit time, fixed width: the greatest name is the newest.
    gens.sort();
    let older = gens[1].clone();
    let extra: &[&str] = match how {
        Break::Pages => {
            corrupt(&pages_file(&root.join("arch-test").join(&key)));
            &[]
        }
        Break::Criu => &["--annotation", CRIU_FAILS_ONCE],
    };

    let second = unique_id(name);
    run(c, &second, &key, "2s", extra);
    c.wait_status(&second, "RUNNING");
    assert_eq!(
        c.exec_file(&second, "/tmp/boot"),
        boot,
        "restored from the older generation, not started fresh"
    );
    let counted: u64 = c.exec_file(&second, "/tmp/count").parse().unwrap_or(0);
    assert!(counted > 0, "the counter continues");

    let restores: Vec<_> = records_for(&root, &key)
        .into_iter()
        .filter(|r| r.op == Operation::Restore)
        .collect();
    let fallback = restores
        .iter()
        .find(|r| r.outcome == Outcome::Fallback)
        .unwrap_or_else(|| panic!("no fallback recorded: {restores:?}"));
    let why = fallback.error.clone().unwrap_or_default();
    assert!(
        why.contains("falling back to older generation") && why.contains(&older),
        "the record names the fallback: {why}"
    );
    let cause = match how {
        Break::Pages => "sha256",
        Break::Criu => "notify",
    };
    assert!(why.contains(cause), "the reason is kept: {why}");
    let ok = restores
        .iter()
        .find(|r| r.outcome == Outcome::Ok)
        .unwrap_or_else(|| panic!("no restore recorded: {restores:?}"));
    assert!(
        ok.error.as_deref().is_some_and(|e| e.contains(&older)),
        "the restore names its generation: {ok:?}"
    );
    let left = entries(&root, &key);
    assert!(
        left.iter().any(|n| n.contains("@failed-"))
            && left.iter().any(|n| n.ends_with("@restored"))
            && !left
                .iter()
                .any(|n| n.contains("@gen-") || n.contains("@taken-") || n.contains("@lease-"))
            && !left
                .iter()
                .any(|n| n.contains("@gen-") && n.as_str() <= older.as_str()),
        "the bad image kept aside, the older ones retired: {left:?}"
    );
    // The job goes on: its checkpoints are the newest, and survive the
    // cleanup each checkpoint runs (newer than the restored image).
    let own_commits = || {
        records_for(&root, &key)
            .iter()
            .filter(|r| r.container_id == second && r.outcome == Outcome::Ok)
            .filter(|r| r.op == Operation::Checkpoint)
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(60), || own_commits() >= 3),
        "the continued job checkpoints: {:?}",
        records_for(&root, &key)
    );
    let left = entries(&root, &key);
    let newer: Vec<_> = left.iter().filter(|n| n.contains("@gen-")).collect();
    assert!(
        left.contains(&key)
            && !newer.is_empty()
            && newer.iter().all(|n| n.as_str() > older.as_str()),
        "the continued job's own generations, none of the run before: {left:?}"
    );
    c.run(&["task", "kill", "-s", "SIGKILL", &second]);
    c.wait_status(&second, "STOPPED");
    c.run(&["task", "rm", "-f", &second]);
    c.run(&["container", "rm", &second]);
}
