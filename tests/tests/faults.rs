//! Faults: a shim crash, a containerd restart, a full disk and a killed
//! CRIU. Each must end in a clean state: no committed image that fails
//! validation, no temporaries, the container running or stopped as asked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use arch_e2e::{
    ctr, leaks, mounts_containing, parallel, pid_alive, shim_pids, unique_id, wait_until,
    workload_pids,
};
use arch_image::ImageStore;

fn root() -> PathBuf {
    arch_e2e::checkpoint_root()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Entries of `key` in the namespace directory `ns_dir` (`{root}/{ns}`).
fn entries_for(ns_dir: &Path, key: &str) -> Vec<String> {
    let ns = ns_dir.file_name().unwrap().to_string_lossy();
    arch_e2e::image_entries(&ns, key)
}

#[test]
fn a_crashed_shim_is_cleaned_up_by_containerd() {
    let _leaks = leaks::LeakCheck::start();
    let c = ctr();
    let id = unique_id("crash");
    let ct = c.start_detached(&id, &["sleep", "600"]);
    let init = c.task_pid(&id);
    for pid in shim_pids(&id) {
        let _ = nix_kill(pid);
    }
    // containerd notices the dead shim and runs `containerd-shim-arch-v1 delete`.
    assert!(
        wait_until(Duration::from_secs(20), || !pid_alive(init)),
        "the container outlived its shim"
    );
    assert!(wait_until(Duration::from_secs(20), || c
        .task_status(&id)
        .is_none_or(|s| s == "STOPPED")));
    // The task reads STOPPED once containerd saw the exit; its cleanup
    // (the delete action, which unmounts) may still be running.
    assert!(
        wait_until(Duration::from_secs(10), || mounts_containing(&id)
            .is_empty()),
        "mounts left: {:?}",
        mounts_containing(&id)
    );
    assert!(
        wait_until(Duration::from_secs(10), || !Path::new(
            "/run/containerd-arch/arch-test"
        )
        .join(&id)
        .exists()),
        "state left"
    );
    drop(ct);
    assert_eq!(
        c.run(&["container", "ls", "-q"])
            .stdout
            .lines()
            .filter(|l| *l == id)
            .count(),
        0,
        "container record left"
    );
}

/// The shim died while libcontainer rewrote the container's state file
/// (it truncates, then writes) with the container frozen, as a
/// checkpoint's pause leaves it: the delete action cannot load the
/// container, and must still kill the frozen tree (the cgroup Create
/// recorded). Seen once under load: the init stayed FROZEN for good.
#[test]
fn a_shim_killed_with_its_container_frozen_and_its_state_torn_leaks_nothing() {
    let _leaks = leaks::LeakCheck::start();
    let c = ctr();
    let id = unique_id("torn");
    let ct = c.start_detached(&id, &["sleep", "600"]);
    let init = c.task_pid(&id);
    freeze_cgroup_of(init);
    let state = Path::new("/run/containerd-arch/arch-test")
        .join(&id)
        .join("state.json");
    std::fs::write(&state, "").expect("tearing the state");
    for pid in shim_pids(&id) {
        let _ = nix_kill(pid);
    }
    if let Err(e) = leaks::nothing_in_cgroup_of(&id, Duration::from_secs(20)) {
        panic!("the frozen tree outlived its shim: {e}");
    }
    // A killed task leaves its cgroup before it is a zombie: the init may
    // still be exiting when the cgroup reads empty (CI-2 of 2026-12-07).
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(init)),
        "the init outlived its shim"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !state
            .parent()
            .unwrap()
            .exists()),
        "state left"
    );
    drop(ct);
}

/// Freezes the cgroup of `pid` (v1 freezer or v2) and waits until it is.
fn freeze_cgroup_of(pid: i32) {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = |prefix: &str| {
        cgroups
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|r| r.trim_start_matches('/').to_string())
    };
    let (file, value, done) = match rel("0::") {
        Some(r) if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() => (
            Path::new("/sys/fs/cgroup").join(r),
            ("cgroup.freeze", "1"),
            ("cgroup.events", "frozen 1"),
        ),
        _ => {
            let r = cgroups
                .lines()
                .find_map(|l| {
                    l.split_once(":freezer:")
                        .map(|(_, r)| r.trim_start_matches('/').to_string())
                })
                .expect("no freezer cgroup");
            (
                Path::new("/sys/fs/cgroup/freezer").join(r),
                ("freezer.state", "FROZEN"),
                ("freezer.state", "FROZEN"),
            )
        }
    };
    std::fs::write(file.join(value.0), value.1).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            file.join(done.0)
        )
        .is_ok_and(|s| s.contains(done.1))),
        "{} never froze",
        file.display()
    );
}

fn nix_kill(pid: i32) -> bool {
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn containerd_restart_keeps_running_containers() {
    let _leaks = leaks::LeakCheck::start();
    let c = ctr();
    let plain = unique_id("keep");
    let _p = c.start_detached(&plain, &["sleep", "600"]);
    let (arch, key) = (unique_id("keeparch"), unique_id("kkey"));
    let _a = c.start_arch(&arch, Some(&key), "while true; do sleep 0.1; done");
    let before = c.task_pid(&plain);

    let st = Command::new(repo().join("hack/containerd-test.sh"))
        .arg("bounce")
        .status()
        .unwrap();
    assert!(st.success(), "containerd did not come back");

    assert_eq!(
        c.task_status(&plain).as_deref(),
        Some("RUNNING"),
        "the shim kept the container"
    );
    assert_eq!(c.task_pid(&plain), before);
    let r = c.run(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        &plain,
        "echo",
        "reconnected",
    ]);
    assert_eq!(
        (r.code, r.stdout.trim()),
        (0, "reconnected"),
        "{}",
        r.stderr
    );
    // ARCH still checkpoints on stop after containerd came back, and the
    // shim's events reach the new containerd (the publisher re-dials).
    let mut events = c
        .command(&["events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.run(&["task", "kill", &arch]).code, 0);
    c.wait_status(&arch, "STOPPED");
    std::thread::sleep(Duration::from_millis(500));
    events.kill().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut events.stdout.take().unwrap(), &mut out).unwrap();
    let _ = events.wait();
    assert!(
        out.lines()
            .any(|l| l.contains("/tasks/exit") && l.contains(&arch)),
        "no /tasks/exit for {arch} after the restart:\n{out}"
    );
    ImageStore::new(root())
        .open("arch-test", &key)
        .expect("checkpoint after a containerd restart");
}

#[test]
fn a_full_disk_fails_the_checkpoint_cleanly() {
    let _leaks = leaks::LeakCheck::start();
    let mut c = ctr();
    c.namespace = "arch-fault".into();
    let st = Command::new(repo().join("hack/import-test-image.sh"))
        .args([&c.address, &c.namespace])
        .status()
        .unwrap();
    assert!(
        st.success(),
        "importing the test image into {}",
        c.namespace
    );
    let ns_dir = root().join(&c.namespace);
    let _disk = arch_e2e::Tmpfs::mount(ns_dir.clone(), "4m");

    let (id, key) = (unique_id("full"), unique_id("fkey"));
    let _ct = c.start_arch(
        &id,
        Some(&key),
        // Memory that does not compress to fit (base64 of random bytes,
        // ~8 MiB stored by zstd): images are stored compressed.
        "trap 'exit 143' TERM; memtouch 32 & x=$(head -c 8000000 /dev/urandom | base64); \
         while true; do sleep 0.1; done",
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    c.wait_status(&id, "STOPPED");
    assert!(
        entries_for(&ns_dir, &key).is_empty(),
        "left on a full disk: {:?}",
        entries_for(&ns_dir, &key)
    );
    let recs = arch_e2e::records_for(&root(), &key);
    assert!(
        recs.iter()
            .any(|r| r.outcome == arch_records::Outcome::Failed),
        "failure recorded: {recs:?}"
    );
}

fn criu_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .map(|c| c.trim() == "criu")
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn killing_criu_mid_dump_commits_nothing() {
    let _leaks = leaks::LeakCheck::start();
    let c = ctr();
    let (id, key) = (unique_id("killcriu"), unique_id("ckey"));
    let ct = c.start_arch(
        &id,
        Some(&key),
        "trap 'exit 143' TERM; memtouch 1024 & while true; do sleep 0.1; done",
    );
    // Let it touch its memory first.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    let start = Instant::now();
    let mut killed = false;
    while start.elapsed() < Duration::from_secs(10) && !killed {
        if let Some(&pid) = criu_pids().first() {
            std::thread::sleep(Duration::from_millis(150));
            killed = nix_kill(pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(killed, "never saw CRIU running");
    c.wait_status(&id, "STOPPED");
    let ns_dir = root().join("arch-test");
    match ImageStore::new(root()).open("arch-test", &key) {
        // The dump may have finished just before the kill: then it must be whole.
        // (CRIU's bytes: a streamed image stores them compressed.)
        Ok(image) => {
            let m = image.manifest();
            let criu_bytes = match m.streamed() {
                true => m.streamed_sizes().0,
                false => m.total_size,
            };
            assert!(criu_bytes > 1 << 30)
        }
        Err(_) => assert!(
            entries_for(&ns_dir, &key).is_empty(),
            "partial data left: {:?}",
            entries_for(&ns_dir, &key)
        ),
    }
    drop(ct);
}

#[test]
fn a_shim_killed_mid_checkpoint_leaves_no_temporaries() {
    let _leaks = leaks::LeakCheck::start();
    let c = ctr();
    let (id, key) = (unique_id("shimdie"), unique_id("skey"));
    let ct = c.start_arch(&id, Some(&key), "memtouch 1024");
    std::thread::sleep(Duration::from_secs(4));
    let ns_dir = root().join("arch-test");
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    // Wait until the staging dir exists, then kill the shim.
    assert!(
        wait_until(Duration::from_secs(10), || entries_for(&ns_dir, &key)
            .iter()
            .any(|n| n.contains("@tmp-"))),
        "the checkpoint never started"
    );
    for pid in shim_pids(&id) {
        nix_kill(pid);
    }
    // containerd runs the shim's delete action, which removes what the dead
    // shim was writing; nothing may be committed half-way. (Seconds here;
    // over 20 s once on a host loaded by a VM and two builds.)
    assert!(
        wait_until(Duration::from_secs(60), || !entries_for(&ns_dir, &key)
            .iter()
            .any(|n| n.contains("@tmp-"))),
        "temporaries left: {:?}",
        entries_for(&ns_dir, &key)
    );
    if let Ok(image) = ImageStore::new(root()).open("arch-test", &key) {
        assert!(
            image.manifest().total_size > 1 << 30,
            "a committed image is whole"
        );
    }
    drop(ct);
}

/// The bundle a CRIU process is marked with (its `ARCH_CRIU_BUNDLE`).
fn criu_mark(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|e| {
        let v = e.strip_prefix(b"ARCH_CRIU_BUNDLE=")?;
        Some(String::from_utf8_lossy(v).into_owned())
    })
}

/// A child CRIU forks mid-dump has no PDEATHSIG of its own: one outlived
/// its SIGKILLed shim, stopped, in CI. The real CRIU of a stop-checkpoint
/// must carry its container's bundle (which a child inherits); a process named `criu` carrying the
/// same mark (as such a child would) must be killed by containerd's
/// cleanup of the dead shim, and one carrying another bundle must not.
#[test]
fn a_dead_shims_criu_workers_are_killed_by_containerds_cleanup() {
    use std::os::unix::process::ExitStatusExt;
    let _leaks = leaks::LeakCheck::start();
    let c = ctr();
    let (id, key) = (unique_id("strays"), unique_id("stkey"));
    let ct = c.start_arch(&id, Some(&key), "memtouch 1024");
    std::thread::sleep(Duration::from_secs(4));
    let bundle = std::fs::canonicalize(c.bundle(&id)).unwrap();
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    let mark = bundle.to_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(20), || criu_pids()
            .into_iter()
            .any(|pid| criu_mark(pid).as_deref() == Some(mark.as_str()))),
        "never saw a CRIU dump marked with the bundle {mark}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let criu = tmp.path().join("criu");
    std::fs::copy("/bin/sleep", &criu).unwrap();
    let worker = |bundle: &str| {
        let child = Command::new(&criu)
            .arg("600")
            .env("ARCH_CRIU_BUNDLE", bundle)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        KilledOnDrop(child)
    };
    let mut stray = worker(&mark);
    let mut theirs = worker(&format!("{mark}-another"));
    for pid in shim_pids(&id) {
        nix_kill(pid);
    }
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            status = stray.0.try_wait().unwrap();
            status.is_some()
        }),
        "the dead shim's CRIU worker outlived containerd's cleanup"
    );
    assert_eq!(status.unwrap().signal(), Some(libc::SIGKILL));
    assert!(
        theirs.0.try_wait().unwrap().is_none(),
        "another bundle's CRIU was killed"
    );
    // The delete action says so on stderr, which containerd logs. (The
    // list may also name the dump's own CRIU, if the cleanup came before
    // the kernel ended it.)
    let said = format!("{id}: killed CRIU left by the dead shim: [");
    let pid = stray.0.id().to_string();
    let named = |log: String| {
        log.split(&said).skip(1).any(|rest| {
            let list = rest.split(']').next().unwrap_or_default();
            list.split(", ").any(|p| p == pid)
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || named(containerd_log())),
        "containerd's log does not name pid {pid} after {said:?}"
    );
    assert!(wait_until(Duration::from_secs(20), || c
        .task_status(&id)
        .is_none_or(|s| s == "STOPPED")));
    drop(ct);
}

/// The test containerd's log (hack/containerd-test.sh keeps it in
/// `ARCH_TEST_DIR`).
fn containerd_log() -> String {
    let dir = std::env::var("ARCH_TEST_DIR").unwrap_or_else(|_| "/run/arch-test".into());
    std::fs::read_to_string(Path::new(&dir).join("containerd.log")).unwrap_or_default()
}

/// A child process the test started, ended however the test ends.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A spot interruption: every container gets SIGTERM at once.
#[test]
fn containers_stopped_at_once_all_commit_or_fail_cleanly() {
    let _leaks = leaks::LeakCheck::start();
    let n: usize = std::env::var("ARCH_E2E_LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let c = ctr();
    let ids: Vec<(String, String)> = (0..n)
        .map(|_| (unique_id("load"), unique_id("lk")))
        .collect();
    let started = parallel(&ids, 16, |(id, key)| {
        let cmd = "trap 'exit 143' TERM; while true; do date > /tmp/now; sleep 1; done";
        c.run_arch("-d", id, Some(key), &["sh", "-c", cmd]).code
    });
    assert!(
        started.iter().all(|code| *code == 0),
        "not all {n} containers started"
    );
    let t0 = Instant::now();
    // Under this load a ctr call can time out: retry as a client would.
    // Each kill is timed: a red run must tell a slow host from a slow shim.
    let kills = parallel(&ids, 32, |(id, _)| {
        let t = Instant::now();
        let mut timed_out = 0;
        let delivered = (0..3).any(|_| match c.run_or_time_out(&["task", "kill", id]) {
            // A retry after a kill that landed late finds the task ended.
            Some(run) => run.code == 0 || run.stderr.contains("already finished"),
            None => {
                timed_out += 1;
                false
            }
        });
        (delivered, timed_out, t.elapsed().as_secs_f64())
    });
    let mut kill_secs: Vec<f64> = kills.iter().map(|k| k.2).collect();
    kill_secs.sort_by(f64::total_cmp);
    eprintln!(
        "load: {n} kills took {:.1} s median, {:.1} s p90, {:.1} s max, {} ctr calls \
         timed out; all sent within {:.1} s",
        kill_secs[n / 2],
        kill_secs[n * 9 / 10],
        kill_secs[n - 1],
        kills.iter().map(|k| k.1).sum::<usize>(),
        t0.elapsed().as_secs_f64()
    );
    let undelivered = kills.iter().filter(|k| !k.0).count();
    let all_stopped = wait_until(Duration::from_secs(300), || {
        let ls = c.run(&["task", "ls"]).stdout;
        ids.iter().all(|(id, _)| {
            ls.lines()
                .any(|l| l.starts_with(&format!("{id} ")) && l.contains("STOPPED"))
        })
    });
    let stop_secs = t0.elapsed().as_secs_f64();
    // Commits may trail an exit reported at the kill deadline: wait for them.
    wait_until(Duration::from_secs(120), || {
        ids.iter().all(|(_, key)| {
            !arch_e2e::image_entries("arch-test", key)
                .iter()
                .any(|e| e.contains("@tmp-"))
        })
    });
    let store = ImageStore::new(root());
    let mut committed = 0;
    for (_, key) in &ids {
        match store.open("arch-test", key) {
            Ok(_) => committed += 1,
            Err(e) => {
                // A CI failure must carry its reason: the containerd log
                // is rotated by the next suite's restart.
                eprintln!(
                    "{key}: not committed ({e}); records: {:?}",
                    arch_e2e::records_for(&root(), key)
                );
                let left = arch_e2e::image_entries("arch-test", key);
                assert!(
                    left.is_empty(),
                    "{key}: neither a valid image nor clean ({e}): {left:?}"
                );
            }
        }
    }
    eprintln!("load: {n} containers, all stopped in {stop_secs:.1} s, {committed} committed");
    parallel(&ids, 16, |(id, _)| {
        c.run(&["task", "rm", "-f", id]);
        c.run(&["container", "rm", id]);
    });
    assert_eq!(undelivered, 0, "{undelivered} kills failed three times");
    assert!(all_stopped, "not every container stopped");
    // Without a host-wide cap, CRIU timed out freezing tasks at this load on
    // 2 cores; with dumps queued for slots (max_concurrent_dumps) every one
    // must commit.
    assert_eq!(committed, n, "only {committed} of {n} committed");
}

fn bounce(env: &[(&str, &str)]) {
    let mut cmd = Command::new(repo().join("hack/containerd-test.sh"));
    cmd.arg("bounce")
        .env_remove("ARCH_MODE")
        .env_remove("ARCH_SIGNING_KEY_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    assert!(
        cmd.status().unwrap().success(),
        "containerd did not come back"
    );
}

/// network-fs mode: a restore takes the image with a lease; an image
/// another (live) restorer holds is left alone: this one starts fresh.
#[test]
fn network_fs_leases_keep_an_image_to_one_restorer() {
    let _leaks = leaks::LeakCheck::start();
    let key = arch_e2e::signing_key_path();
    bounce(&[
        ("ARCH_MODE", "network-fs"),
        ("ARCH_SIGNING_KEY_FILE", key.to_str().unwrap()),
    ]);
    let c = ctr();
    let key = unique_id("nfs");
    let first = unique_id("nfs-a");
    let ct = c.start_arch(
        &first,
        Some(&key),
        "echo $$ > /tmp/pid; while true; do sleep 0.1; done",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.run(&["task", "kill", &first]).code, 0);
    c.wait_status(&first, "STOPPED");
    drop(ct);
    let store = ImageStore::new(root());
    // Another restorer, alive (this process), holds it with a short lease
    // that its heartbeat keeps fresh.
    let held = store
        .take_leased(
            "arch-test",
            &key,
            "other-host:1:elsewhere",
            Duration::from_secs(2),
        )
        .expect("take as another restorer");
    std::thread::sleep(Duration::from_secs(3));

    let second = unique_id("nfs-b");
    let ct2 = c.start_arch(&second, Some(&key), "while true; do sleep 0.1; done");
    c.wait_status(&second, "RUNNING");
    assert!(
        held.dir().exists(),
        "the held image is left for its restorer: {:?}",
        arch_e2e::image_entries("arch-test", &key)
    );
    drop(ct2);
    held.put_back().unwrap();

    let third = unique_id("nfs-c");
    let _ct3 = c.start_arch(&third, Some(&key), "while true; do sleep 0.1; done");
    c.wait_status(&third, "RUNNING");
    let entries = arch_e2e::image_entries("arch-test", &key);
    assert!(
        entries.iter().any(|e| e.ends_with("@restored")),
        "restored once the image was given back: {entries:?}"
    );
    assert!(
        !entries
            .iter()
            .any(|e| e.contains("@lease-") || e.contains("@taken-")),
        "the restorer's lease is removed: {entries:?}"
    );
    bounce(&[]);
}

#[test]
fn a_shim_killed_mid_restore_leaves_nothing_running() {
    let _leaks = leaks::LeakCheck::start();
    let c = ctr();
    let key = unique_id("rkill");
    let first = unique_id("rk-a");
    let ct = c.start_arch(&first, Some(&key), "memtouch 1024");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(c.run(&["task", "kill", &first]).code, 0);
    c.wait_status(&first, "STOPPED");
    drop(ct);
    // memtouch had 4 s: 1 GiB on real CPUs, less when emulated (the VM).
    let checkpointed = ImageStore::new(root())
        .open("arch-test", &key)
        .expect("checkpoint to restore")
        .manifest()
        .total_size;

    let second = unique_id("rk-b");
    let runner = {
        let (c, second, key) = (c.clone(), second.clone(), key.clone());
        std::thread::spawn(move || c.run_arch("-d", &second, Some(&key), &["memtouch", "1024"]))
    };
    let start = Instant::now();
    let mut killed = false;
    // The restoring CRIU (over RPC, through the launcher) carries the
    // bundle, as a dump's does, for containerd's cleanup to find.
    let mut marked = false;
    let bundle = c.bundle(&second);
    while start.elapsed() < Duration::from_secs(20) * arch_e2e::time_scale() && !killed {
        // restore-work/ appears just before CRIU starts restoring.
        if bundle.join("restore-work").exists() && !criu_pids().is_empty() {
            let mark = std::fs::canonicalize(&bundle).ok();
            marked = criu_pids()
                .into_iter()
                .any(|pid| criu_mark(pid).map(PathBuf::from) == mark);
            std::thread::sleep(Duration::from_millis(300));
            for pid in shim_pids(&second) {
                killed |= nix_kill(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = runner.join();
    assert!(killed, "never caught the restore");
    assert!(marked, "the restoring CRIU did not carry its bundle");
    let _guard = arch_e2e::Container {
        ctr: c.clone(),
        id: second.clone(),
    };
    assert!(
        wait_until(Duration::from_secs(30), || workload_pids(&key).is_empty()),
        "half-restored processes left running: {:?}",
        workload_pids(&key)
    );
    let state = Path::new("/run/containerd-arch/arch-test").join(&second);
    let cgroup = Path::new("/sys/fs/cgroup/memory/arch-test").join(&second);
    let v2 = arch_e2e::cgroup_v2_dir(&second);
    assert!(
        wait_until(Duration::from_secs(20), || !state.exists()
            && !cgroup.exists()
            && !v2.exists()),
        "containerd's cleanup left state or cgroup behind"
    );
    // The image is either still whole (not consumed) or moved aside.
    if let Ok(image) = ImageStore::new(root()).open("arch-test", &key) {
        assert_eq!(image.manifest().total_size, checkpointed);
    }
}

/// A host that dies, as far as one machine can show it: the shim is killed
/// (so no stop-checkpoint can run) and containerd restarts. The container
/// re-created with its key restores from its last periodic checkpoint.
#[test]
fn a_killed_shim_and_restarted_containerd_restore_from_the_periodic_image() {
    let _leaks = leaks::LeakCheck::start();
    const COUNTER: &str = "boot=$(cat /proc/sys/kernel/random/uuid); i=0; \
        while true; do i=$((i+1)); echo $i > /tmp/count; echo $boot > /tmp/boot; sleep 0.1; done";
    let c = ctr();
    let (id, key) = (unique_id("hostdies"), unique_id("hdkey"));
    let periodic_ok = || {
        arch_e2e::records_for(&root(), &key)
            .iter()
            .filter(|r| r.trigger == "periodic" && r.outcome == arch_records::Outcome::Ok)
            .count()
    };
    let r = c.run_arch_with(
        "-d",
        &id,
        Some(&key),
        &["--env", "ARCH_INTERVAL=1s"],
        &["sh", "-c", COUNTER],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(wait_until(Duration::from_secs(30), || periodic_ok() >= 2));
    let boot = std::fs::read_to_string(c.bundle(&id).join("rootfs/tmp/boot")).unwrap();
    let init = c.task_pid(&id);
    for pid in shim_pids(&id) {
        nix_kill(pid);
    }
    assert!(wait_until(Duration::from_secs(20), || !pid_alive(init)));
    let st = Command::new(repo().join("hack/containerd-test.sh"))
        .arg("bounce")
        .status()
        .unwrap();
    assert!(st.success(), "containerd did not come back");
    let _ = c.run(&["task", "rm", "-f", &id]);
    let _ = c.run(&["container", "rm", &id]);

    let again = unique_id("hostback");
    let ct = c.start_arch(&again, Some(&key), COUNTER);
    c.wait_status(&again, "RUNNING");
    let mut restored_boot = String::new();
    assert!(wait_until(Duration::from_secs(5), || {
        restored_boot =
            std::fs::read_to_string(c.bundle(&again).join("rootfs/tmp/boot")).unwrap_or_default();
        !restored_boot.trim().is_empty()
    }));
    assert_eq!(
        restored_boot.trim(),
        boot.trim(),
        "restored, not started fresh"
    );
    arch_e2e::assert_restore_recorded(&root(), &key, arch_records::Outcome::Ok);
    drop(ct);
}
