//! §4 exactly once on a shared root: two "hosts" — two private containerds
//! of their own (own state, own containerd root, each with the boot id of
//! another machine, as test builds allow) — on one checkpoint root in
//! `network-fs` mode with one fleet key and a 2 s claim lease.
//!
//! - A live claimer never loses its image: host A holds a taken image
//!   longer than the lease (a 3 s `pause` fault after staging) while host B
//!   creates a container with the same key; B starts fresh, A restores.
//! - A claimer that died mid-restore (host A's containerd and the shim
//!   SIGKILLed during the pause: nobody on A cleans up) keeps the image
//!   taken until its lease expires; then host B restores it.
//! - Both hosts creating a container with one key at once: exactly one
//!   restores.
//! - A restorer stalled past its lease after the fence (the `@restoring-`
//!   rename right before CRIU) restores alone; the other host starts fresh.
//! - Without a shared root (issue 16 §3): stop on A, `archctl export`, `archctl
//!   import` into B's own root, create on B: the job continues there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arch_e2e::{shim_pids, unique_id, wait_until, Ctr};

const LEASE_SECS: &str = "2";
const WORKLOAD: &str = "boot=$(cat /proc/sys/kernel/random/uuid); \
    while true; do echo $boot > /tmp/boot; sleep 0.1; done";
const PAUSE: &str = "io.arch.test.fault=restore:rootfs-applied=pause";
/// How CRI names the image (the shared-root cases run as CRI would; the
/// move without a shared root runs as plain containerd: the image is then
/// known by its layers' content, the same on both hosts).
pub(crate) const IMAGE_NAME: &str =
    "io.kubernetes.cri.image-name=localhost/arch-test/busybox:latest";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where this suite's own directories go: beside the suite's containerd
/// state (tmpfs) and checkpoint root (disk), never the defaults.
pub(crate) fn bases() -> (PathBuf, PathBuf) {
    let addr = std::env::var("ARCH_E2E_ADDRESS").expect("ARCH_E2E_ADDRESS (run through make test)");
    let run = Path::new(&addr).parent().unwrap().with_extension("hosts");
    let disk = arch_e2e::checkpoint_root().with_extension("hosts");
    (run, disk)
}

/// One "host": a private containerd whose shims share the root.
pub(crate) struct Host {
    env: Vec<(String, String)>,
    pub(crate) ctr: Ctr,
    dir: PathBuf,
}

impl Host {
    fn start(name: &str, boot_id: &str, shared_root: &Path) -> Host {
        let env = [
            ("ARCH_MODE", "network-fs"),
            ("ARCH_CLAIM_LEASE_SECS", LEASE_SECS),
            ("ARCH_TEST_BOOT_ID", boot_id),
        ];
        Host::with_env(name, shared_root, &env)
    }

    /// A private containerd named `name` whose shims write to `root`
    /// with the fleet key, and see `env` (host settings) besides.
    pub(crate) fn with_env(name: &str, root: &Path, env: &[(&str, &str)]) -> Host {
        let (run, disk) = bases();
        let dir = run.join(name);
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.extend([
            ("ARCH_TEST_DIR".into(), dir.display().to_string()),
            (
                "ARCH_TEST_ROOT".into(),
                disk.join(name).join("containerd").display().to_string(),
            ),
            ("ARCH_CHECKPOINT_ROOT".into(), root.display().to_string()),
            (
                "ARCH_SIGNING_KEY_FILE".into(),
                arch_e2e::signing_key_path().display().to_string(),
            ),
        ]);
        let host = Host {
            ctr: Ctr {
                address: dir.join("containerd.sock").display().to_string(),
                namespace: "arch-test".into(),
            },
            env,
            dir,
        };
        host.hack("purge");
        host.hack("start");
        host
    }

    /// This host's containerd log, the shims' lines with it.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn hack(&self, action: &str) {
        let mut cmd = Command::new(repo().join("hack/containerd-test.sh"));
        cmd.arg(action).env_remove("ARCH_TEST_CRI");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "containerd-test.sh {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The host dies: its containerd first (so nothing on it cleans up
    /// after the shim), then the shim serving `id`.
    fn die_serving(&self, id: &str) {
        let pid = std::fs::read_to_string(self.dir.join("containerd.pid")).unwrap();
        assert!(kill9(pid.trim().parse().unwrap()), "containerd {pid}");
        let shims = shim_pids(id);
        assert!(!shims.is_empty(), "no shim serves {id}");
        for pid in shims {
            kill9(pid);
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // A failed test keeps the host's logs (containerd.log, the shims').
        self.hack(if std::thread::panicking() {
            "stop"
        } else {
            "purge"
        });
    }
}

fn kill9(pid: i32) -> bool {
    // SAFETY: kill(2) on a pid we found.
    unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
}

/// Runs WORKLOAD under `key`, the image named as CRI names it; its boot uuid.
pub(crate) fn run(c: &Ctr, id: &str, key: &str) -> String {
    run_with(c, id, key, &["--annotation", IMAGE_NAME])
}

pub(crate) fn run_with(c: &Ctr, id: &str, key: &str, extra: &[&str]) -> String {
    let r = c.run_arch_with("-d", id, Some(key), extra, &["sh", "-c", WORKLOAD]);
    assert_eq!(r.code, 0, "ctr run {id}: {}", r.stderr);
    c.exec_file(id, "/tmp/boot")
}

pub(crate) fn checkpoint(c: &Ctr, id: &str) {
    assert_eq!(c.run(&["task", "kill", id]).code, 0);
    c.wait_status(id, "STOPPED");
    c.run(&["task", "rm", "-f", id]);
    c.run(&["container", "rm", id]);
}

fn entries(root: &Path, key: &str) -> Vec<String> {
    arch_e2e::entries_in(root, "arch-test", key)
}

/// Creates `id` under `key` on a host whose restore pauses 3 s after
/// staging (holding the image taken): run on a thread of its own.
pub(crate) fn restore_paused(c: &Ctr, id: &str, key: &str) -> arch_e2e::Run {
    let extra = ["--annotation", PAUSE, "--annotation", IMAGE_NAME];
    c.run_arch_with("-d", id, Some(key), &extra, &["sh", "-c", WORKLOAD])
}

fn wait_taken(shared: &Path, key: &str) {
    assert!(
        wait_until(Duration::from_secs(20), || has(
            &entries(shared, key),
            "@taken-"
        )),
        "host A never took the image: {:?}",
        entries(shared, key)
    );
}

fn has(entries: &[String], kind: &str) -> bool {
    entries.iter().any(|n| n.contains(kind))
}

#[test]
fn two_hosts_on_one_network_fs_root_restore_once_and_take_back_a_dead_claim() {
    let (_, disk) = bases();
    let shared = disk.join("checkpoint");
    let _ = std::fs::remove_dir_all(&shared);
    let a = Host::start("a", "a11ce0000000", &shared);
    let b = Host::start("b", "b0b000000000", &shared);

    // A live claimer holds its image longer than the lease and keeps it.
    let key = unique_id("lease-live");
    let first = unique_id("hosta");
    let first_boot = run(&a.ctr, &first, &key);
    checkpoint(&a.ctr, &first);
    let (restorer, other) = (unique_id("hosta"), unique_id("hostb"));
    let other_boot = std::thread::scope(|s| {
        let creating = s.spawn(|| restore_paused(&a.ctr, &restorer, &key));
        wait_taken(&shared, &key);
        // Past the lease, while A still holds the image (3 s pause).
        std::thread::sleep(Duration::from_millis(2200));
        let other_boot = run(&b.ctr, &other, &key);
        let r = creating.join().unwrap();
        assert_eq!(r.code, 0, "ctr run {restorer}: {}", r.stderr);
        other_boot
    });
    assert_ne!(
        other_boot, first_boot,
        "host B must start fresh: A holds the image"
    );
    assert_eq!(
        a.ctr.exec_file(&restorer, "/tmp/boot"),
        first_boot,
        "host A, whose lease was live, restored"
    );
    let left = entries(&shared, &key);
    assert!(
        has(&left, "@restored") && !has(&left, "@taken-") && !has(&left, "@lease-"),
        "retired once, no lease left: {left:?}"
    );

    // A claimer killed mid-restore: the image comes back after the lease.
    let key = unique_id("lease-dead");
    let first = unique_id("hosta");
    let first_boot = run(&a.ctr, &first, &key);
    checkpoint(&a.ctr, &first);
    let restorer = unique_id("hosta");
    std::thread::scope(|s| {
        let creating = s.spawn(|| restore_paused(&a.ctr, &restorer, &key));
        wait_taken(&shared, &key);
        a.die_serving(&restorer);
        let _ = creating.join();
    });
    let left = entries(&shared, &key);
    assert!(
        has(&left, "@taken-") && has(&left, "@lease-") && !left.contains(&key),
        "the dead claimer's image stays taken until its lease expires: {left:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let again = unique_id("hostb");
    assert_eq!(
        run(&b.ctr, &again, &key),
        first_boot,
        "host B restored the image once the dead claimer's lease expired"
    );
    let left = entries(&shared, &key);
    assert!(
        has(&left, "@restored") && !has(&left, "@taken-") && !has(&left, "@lease-"),
        "{left:?}"
    );
    // Host A comes back.
    a.hack("stop");
    a.hack("start");

    // Both hosts create a container with one key at once: exactly one
    // restores.
    let key = unique_id("lease-twins");
    let first = unique_id("hosta");
    let first_boot = run(&a.ctr, &first, &key);
    checkpoint(&a.ctr, &first);
    let (ida, idb) = (unique_id("hosta"), unique_id("hostb"));
    let boots = std::thread::scope(|s| {
        let on_a = s.spawn(|| run(&a.ctr, &ida, &key));
        let on_b = s.spawn(|| run(&b.ctr, &idb, &key));
        [on_a.join().unwrap(), on_b.join().unwrap()]
    });
    assert_eq!(
        boots.iter().filter(|b| **b == first_boot).count(),
        1,
        "exactly one host continues the process: {boots:?}"
    );
    let left = entries(&shared, &key);
    assert!(
        has(&left, "@restored") && !has(&left, "@taken-") && !has(&left, "@lease-"),
        "{left:?}"
    );
    drop(b);
    drop(a);
    let _ = std::fs::remove_dir_all(&shared);
}

/// The fence: a restorer that stalls after it decided to restore — here
/// paused in CRIU's pre-restore notify, right after the `@restoring-`
/// rename, its shim SIGSTOPped for longer than the lease — keeps the
/// image: host B, asked for the key meanwhile, starts fresh, and A
/// restores. Without the fence B gave the expired lease's image back and
/// restored it, and A restored it too.
#[test]
fn a_restorer_stalled_past_its_lease_after_the_fence_restores_alone() {
    let (_, disk) = bases();
    let shared = disk.join("checkpoint-fence");
    let _ = std::fs::remove_dir_all(&shared);
    let a = Host::start("fence-a", "fa11ce000000", &shared);
    let b = Host::start("fence-b", "fb0b00000000", &shared);
    let key = unique_id("fence");
    let first = unique_id("hosta");
    let first_boot = run(&a.ctr, &first, &key);
    checkpoint(&a.ctr, &first);
    let (restorer, other) = (unique_id("hosta"), unique_id("hostb"));
    let other_boot = std::thread::scope(|s| {
        let creating = s.spawn(|| {
            let extra = [
                "--annotation",
                "io.arch.test.fault=criu:pre-restore=pause",
                "--annotation",
                IMAGE_NAME,
            ];
            a.ctr
                .run_arch_with("-d", &restorer, Some(&key), &extra, &["sh", "-c", WORKLOAD])
        });
        assert!(
            wait_until(Duration::from_secs(20), || has(
                &entries(&shared, &key),
                "@restoring-"
            )),
            "host A never passed the fence: {:?}",
            entries(&shared, &key)
        );
        let shims = arch_e2e::shim_pids(&restorer);
        assert!(!shims.is_empty(), "no shim serves {restorer}");
        // SAFETY: kill(2) on the shims serving our own container.
        shims.iter().for_each(|&p| unsafe {
            libc::kill(p, libc::SIGSTOP);
        });
        std::thread::sleep(Duration::from_millis(2500));
        let other_boot = run(&b.ctr, &other, &key);
        shims.iter().for_each(|&p| unsafe {
            libc::kill(p, libc::SIGCONT);
        });
        let r = creating.join().unwrap();
        assert_eq!(r.code, 0, "ctr run {restorer}: {}", r.stderr);
        other_boot
    });
    assert_ne!(
        other_boot, first_boot,
        "host B must start fresh: A is past its fence"
    );
    assert_eq!(
        a.ctr.exec_file(&restorer, "/tmp/boot"),
        first_boot,
        "host A restored"
    );
    let left = entries(&shared, &key);
    assert!(
        has(&left, "@restored") && !has(&left, "@restoring-") && !has(&left, "@taken-"),
        "retired once: {left:?}"
    );
    drop(b);
    drop(a);
    let _ = std::fs::remove_dir_all(&shared);
}

/// Issue 13 §2 on a shared root: another host plants a symlink under one
/// of CRIU's names in a staging directory while this host dumps (here:
/// during a 3 s pause before the dump step). What CRIU opens by name (an
/// unstreamed dump's images — streaming off, a terminal, pre-dumps — or a
/// streamed dump's log) is written on this host's own disk and copied into
/// staging `O_EXCL|O_NOFOLLOW`: the planted name fails the checkpoint, nothing is written through it, and
/// the container keeps running (it then gets its stop signal, as after any
/// failed checkpoint).
#[test]
fn a_symlink_planted_in_staging_by_another_host_is_never_written_through() {
    // Unstreamed: CRIU would create every image file by name.
    planted_in_staging("off", "inventory.img");
    // Streamed: the streamer creates the images; CRIU still opens its log
    // by name (in its work directory, mirrored on this host).
    planted_in_staging("auto", "dump.log");
}

fn planted_in_staging(stream: &str, name: &str) {
    let (_, disk) = bases();
    let shared = disk.join(format!("checkpoint-planted-{stream}"));
    let _ = std::fs::remove_dir_all(&shared);
    let env = [
        ("ARCH_MODE", "network-fs"),
        ("ARCH_CLAIM_LEASE_SECS", LEASE_SECS),
        ("ARCH_TEST_BOOT_ID", "91a47ed00000"),
        ("ARCH_STREAM", stream),
    ];
    let host = Host::with_env(&format!("planted-{stream}"), &shared, &env);
    let victim = disk.join(format!("{}-victim", unique_id("planted")));
    std::fs::write(&victim, "untouched").unwrap();
    let key = unique_id("planted");
    let id = unique_id("planted");
    let extra = [
        "--annotation",
        "io.arch.test.fault=before:dump=pause",
        "--annotation",
        IMAGE_NAME,
    ];
    let r = host
        .ctr
        .run_arch_with("-d", &id, Some(&key), &extra, &["sh", "-c", WORKLOAD]);
    assert_eq!(r.code, 0, "ctr run {id}: {}", r.stderr);
    assert_eq!(host.ctr.run(&["task", "kill", &id]).code, 0);
    let ns = shared.join("arch-test");
    let mut planted = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let staging = std::fs::read_dir(&ns).ok().and_then(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .find(|p| p.to_string_lossy().contains(&format!("{key}@tmp-")))
            });
            match staging.map(|s| s.join("criu")) {
                Some(criu) if criu.is_dir() => {
                    let link = criu.join(name);
                    planted = std::os::unix::fs::symlink(&victim, &link)
                        .ok()
                        .map(|_| link);
                    planted.is_some()
                }
                _ => false,
            }
        }),
        "no staging directory of {key} appeared in {}",
        ns.display()
    );
    let failures = || -> Vec<String> {
        arch_e2e::records_for(&shared, &key)
            .into_iter()
            .filter_map(|r| r.error)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || failures()
            .iter()
            .any(|e| e.contains(name))),
        "a record names the planted file: {:?}",
        failures()
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "untouched",
        "CRIU wrote through the planted {planted:?}"
    );
    assert!(
        !entries(&shared, &key).contains(&key),
        "no image committed: {:?}",
        entries(&shared, &key)
    );
    // The stop signal came as asked (a shell as PID 1 ignores SIGTERM):
    // the process was not lost to the failed checkpoint.
    assert_eq!(host.ctr.task_status(&id).as_deref(), Some("RUNNING"));
    host.ctr.run(&["task", "kill", "-s", "SIGKILL", &id]);
    host.ctr.wait_status(&id, "STOPPED");
    host.ctr.run(&["task", "rm", "-f", &id]);
    host.ctr.run(&["container", "rm", &id]);
    drop(host);
    let _ = std::fs::remove_file(&victim);
    let _ = std::fs::remove_dir_all(&shared);
}

fn archctl(root: &Path, args: &[&str]) -> std::process::Output {
    let bin = std::env::var("ARCH_E2E_ARCHCTL")
        .unwrap_or_else(|_| repo().join("target/debug/archctl").display().to_string());
    Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(args)
        .env("ARCH_SIGNING_KEY_FILE", arch_e2e::signing_key_path())
        .output()
        .unwrap()
}

/// Issue 16 §3, no shared root: stop on A, `archctl export | archctl
/// import` into B's root, create on B: the job continues there. Plain
/// containerd, no image name: the image is compared by its layers'
/// content, which both hosts unpacked into snapshot directories of their own.
#[test]
fn a_job_moves_to_a_host_without_a_shared_root() {
    let (_, disk) = bases();
    let (root_a, root_b) = (disk.join("root-a"), disk.join("root-b"));
    for r in [&root_a, &root_b] {
        let _ = std::fs::remove_dir_all(r);
    }
    let a = Host::start("move-a", "a11ce0000001", &root_a);
    let b = Host::start("move-b", "b0b000000001", &root_b);

    let key = unique_id("move");
    let first = unique_id("hosta");
    let first_boot = run_with(&a.ctr, &first, &key, &[]);
    checkpoint(&a.ctr, &first);

    let (image, archive) = (format!("arch-test/{key}"), disk.join("move.tar.zst"));
    let archive = archive.to_str().unwrap();
    let out = archctl(&root_a, &["export", &image, "-o", archive]);
    assert!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = archctl(&root_b, &["import", archive]);
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let moved = unique_id("hostb");
    assert_eq!(
        run_with(&b.ctr, &moved, &key, &[]),
        first_boot,
        "host B continued the job from A's image"
    );
    let _ = std::fs::remove_file(archive);
}
