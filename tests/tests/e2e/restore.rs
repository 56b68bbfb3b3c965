//! Transparent restore on re-create, and the fallback to a fresh start for
//! every kind of bad image. A workload remembers a boot id in a shell
//! variable: after a restore it is the one from before the stop, after a
//! fresh start it is new.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arch_e2e::canary::Canaries;
use arch_e2e::{ctr, reseal, unique_id, wait_until, Ctr};
use arch_image::ImageStore;
use arch_records::Outcome;
use sha2::{Digest, Sha256};

const WORKLOAD: &str = "boot=$(cat /proc/sys/kernel/random/uuid); \
    [ -e /data/file ] || { mkdir -p /data; echo kept > /data/file; rm -f /etc/group; }; \
    i=0; while true; do i=$((i+1)); echo $i > /tmp/count; echo $boot > /tmp/boot; echo tick $i; sleep 0.1; done";

pub(crate) fn store() -> ImageStore {
    ImageStore::new(arch_e2e::checkpoint_root())
}

pub(crate) fn start(c: &Ctr, id: &str, key: &str) -> arch_e2e::Container {
    c.start_arch(id, Some(key), WORKLOAD)
}

/// The workload's counter; a read between truncate and write is retried
/// (it would read as 0 and look like a counter that restarted).
fn count(c: &Ctr, id: &str) -> u64 {
    c.exec_file(id, "/tmp/count").parse().unwrap_or(0)
}

/// Runs the workload until it counted a little, stops it (checkpoint),
/// removes it; returns (boot id, last count seen).
pub(crate) fn run_and_stop(c: &Ctr, key: &str) -> (String, u64) {
    let id = unique_id("first");
    let ct = start(c, &id, key);
    assert!(wait_until(Duration::from_secs(10), || count(c, &id) >= 5));
    let boot = c.exec_file(&id, "/tmp/boot");
    let seen = count(c, &id);
    // Only the checkpointed rootfs has this file: a rolled-back one must not.
    let r = c.run(&[
        "task",
        "exec",
        "--exec-id",
        "mark",
        &id,
        "touch",
        "/tmp/only-before-stop",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    c.wait_status(&id, "STOPPED");
    drop(ct);
    store().open(&c.namespace, key).expect("committed image");
    (boot, seen)
}

pub(crate) fn sidecars(c: &Ctr, key: &str) -> Vec<String> {
    arch_e2e::image_entries(&c.namespace, key)
}

pub(crate) fn assert_restored(c: &Ctr, id: &str, key: &str, boot: &str, seen: u64) {
    assert_eq!(
        c.exec_file(id, "/tmp/boot"),
        boot,
        "the process tree was restored, not restarted"
    );
    assert!(count(c, id) >= seen, "the counter continued from {seen}");
    assert_eq!(
        c.exec_file(id, "/data/file"),
        "kept",
        "files written before the stop are kept"
    );
    let r = c.run(&[
        "task",
        "exec",
        "--exec-id",
        &unique_id("ls"),
        id,
        "test",
        "-e",
        "/etc/group",
    ]);
    assert_ne!(r.code, 0, "a file deleted before the stop stays deleted");
    assert!(
        store().open(&c.namespace, key).is_err(),
        "the image is consumed"
    );
    assert!(
        sidecars(c, key).iter().any(|n| n.ends_with("@restored")),
        "kept as the last restored: {:?}",
        sidecars(c, key)
    );
    arch_e2e::assert_restore_recorded(store().root(), key, Outcome::Ok);
}

pub(crate) fn assert_fresh(c: &Ctr, id: &str, key: &str, boot: &str) {
    assert!(wait_until(Duration::from_secs(10), || c
        .exec_file(id, "/tmp/boot")
        .len()
        > 10));
    assert_ne!(
        c.exec_file(id, "/tmp/boot"),
        boot,
        "fell back to a fresh start"
    );
    let r = c.run(&[
        "task",
        "exec",
        "--exec-id",
        &unique_id("rb"),
        id,
        "test",
        "-e",
        "/tmp/only-before-stop",
    ]);
    assert_ne!(
        r.code, 0,
        "the rootfs was rolled back to the pristine snapshot"
    );
    assert!(
        store().open(&c.namespace, key).is_err(),
        "the bad image is no longer offered"
    );
    let failed = sidecars(c, key);
    assert!(
        failed.iter().any(|n| n.contains("@failed-")),
        "the bad image is kept aside: {failed:?}"
    );
    arch_e2e::assert_restore_recorded(store().root(), key, Outcome::Fallback);
}

#[test]
fn re_created_container_continues_where_it_stopped() {
    let c = ctr();
    let key = unique_id("rkey");
    let (boot, seen) = run_and_stop(&c, &key);
    let id = unique_id("again");
    let _ct = start(&c, &id, &key);
    assert_restored(&c, &id, &key, &boot, seen);
    let r = c.run(&[
        "task",
        "exec",
        "--exec-id",
        "mk",
        &id,
        "test",
        "-e",
        "/tmp/only-before-stop",
    ]);
    assert_eq!(r.code, 0, "the checkpointed rootfs came back");
}

#[test]
fn same_container_id_is_restored_too() {
    let c = ctr();
    let key = unique_id("skey");
    let id = unique_id("same");
    let ct = start(&c, &id, &key);
    assert!(wait_until(Duration::from_secs(10), || count(&c, &id) >= 5));
    let (boot, seen) = (c.exec_file(&id, "/tmp/boot"), count(&c, &id));
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    c.wait_status(&id, "STOPPED");
    drop(ct);
    let _ct = start(&c, &id, &key);
    assert_restored(&c, &id, &key, &boot, seen);
}

#[test]
fn restored_output_reaches_the_new_client_and_exit_codes_work() {
    let c = ctr();
    let key = unique_id("okey");
    let (_, seen) = run_and_stop(&c, &key);
    let id = unique_id("out");
    let runner = {
        let (c, id, key) = (c.clone(), id.clone(), key.clone());
        std::thread::spawn(move || c.run_arch("--rm", &id, Some(&key), &["sh", "-c", WORKLOAD]))
    };
    c.wait_status(&id, "RUNNING");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(c.run(&["task", "kill", "-s", "SIGKILL", &id]).code, 0);
    let r = runner.join().unwrap();
    assert_eq!(r.code, 137);
    let ticks: Vec<u64> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    assert!(!ticks.is_empty(), "no output after restore: {:?}", r.stdout);
    assert!(
        ticks[0] > seen,
        "output continues the old count ({seen}): {ticks:?}"
    );
}

#[test]
fn an_image_is_restored_only_once() {
    let c = ctr();
    let key = unique_id("once");
    let (boot, _) = run_and_stop(&c, &key);
    let id = unique_id("second");
    {
        let _ct = start(&c, &id, &key); // restored, then SIGKILLed: no new checkpoint
        assert_eq!(c.exec_file(&id, "/tmp/boot"), boot);
    }
    let id3 = unique_id("third");
    let _ct = start(&c, &id3, &key);
    assert!(wait_until(Duration::from_secs(10), || c
        .exec_file(&id3, "/tmp/boot")
        .len()
        > 10));
    assert_ne!(c.exec_file(&id3, "/tmp/boot"), boot);
}

// ---- bad images ----

pub(crate) fn image_dir(c: &Ctr, key: &str) -> PathBuf {
    store().image_dir(&c.namespace, key).unwrap()
}

fn fallback_case(damage: impl FnOnce(&Path)) {
    let c = ctr();
    let key = unique_id("bad");
    let (boot, _) = run_and_stop(&c, &key);
    damage(&image_dir(&c, &key));
    let id = unique_id("fresh");
    let _ct = start(&c, &id, &key);
    assert_fresh(&c, &id, &key, &boot);
}

#[test]
fn corrupted_memory_pages_fall_back() {
    fallback_case(|dir| {
        let p = std::fs::read_dir(dir.join("criu"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("pages-")
            })
            .unwrap();
        let mut data = std::fs::read(&p).unwrap();
        data[0] ^= 0xff;
        std::fs::write(&p, data).unwrap();
    });
}

#[test]
fn truncated_rootfs_diff_falls_back() {
    fallback_case(|dir| {
        let p = dir.join("rootfs-diff.tar");
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    });
}

#[test]
fn criu_failure_falls_back_with_the_reason_kept() {
    let c = ctr();
    let key = unique_id("criubad");
    let (boot, _) = run_and_stop(&c, &key);
    let dir = image_dir(&c, &key);
    arch_e2e::restream(&dir, "inventory.img", b"not a criu image");
    let id = unique_id("fresh");
    let _ct = start(&c, &id, &key);
    assert_fresh(&c, &id, &key, &boot);
    let failed = sidecars(&c, &key)
        .into_iter()
        .find(|n| n.contains("@failed-"))
        .unwrap();
    let reason = std::fs::read_to_string(
        store()
            .root()
            .join(&c.namespace)
            .join(failed)
            .join("failure-reason.txt"),
    )
    .unwrap();
    assert!(reason.contains("restore"), "{reason}");
    let aside = store().root().join(&c.namespace).join(
        sidecars(&c, &key)
            .into_iter()
            .find(|n| n.contains("@failed-"))
            .unwrap(),
    );
    assert!(
        aside.join("restore.log").exists(),
        "CRIU's restore.log is kept with the failed image"
    );
}

/// One tar entry (ustar header + data), written by hand so that hostile
/// names really are in the archive.
fn tar_entry(name: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn sha_of(path: &str) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// The canary check below could not fail if it missed an escape.
fn canaries_see_an_escape() {
    let probe = Canaries::plant("arch-canary-probe");
    std::fs::write(probe.dir().join("escaped"), b"x").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(probe.path("target"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"x").unwrap();
    std::fs::hard_link(probe.path("secret"), probe.dir().join("..secret-link")).unwrap();
    let changes = probe.changes();
    let _ = std::fs::remove_file(probe.dir().join("..secret-link"));
    assert_eq!(changes.len(), 4, "missed an escape: {changes:?}");
}

#[test]
fn hostile_rootfs_diffs_fall_back_and_write_nothing_outside() {
    canaries_see_an_escape();
    let canaries = Canaries::plant("arch-canary");
    let out = canaries.dir().display().to_string();
    let target = canaries.path("target").display().to_string();
    let passwd = sha_of("/etc/passwd");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "traversal",
            tar_entry(
                &format!("../../../../../../../../..{out}/escaped"),
                b'0',
                "",
                b"pwned",
            ),
        ),
        (
            "absolute",
            tar_entry(&format!("{out}/absolute"), b'0', "", b"pwned"),
        ),
        ("absolute-overwrite", tar_entry(&target, b'0', "", b"pwned")),
        (
            "symlink-out",
            [
                tar_entry("evil", b'2', &out, b""),
                tar_entry("evil/through-link", b'0', "", b"pwned"),
                tar_entry("evil/target", b'0', "", b"pwned"),
            ]
            .concat(),
        ),
        ("hardlink-out", tar_entry("target-link", b'1', &target, b"")),
        (
            "hardlink-host",
            tar_entry("passwd-link", b'1', "/etc/passwd", b""),
        ),
        ("device", tar_entry("dev/evil", b'3', "", b"")),
    ];
    for (name, mut tar) in cases {
        tar.extend_from_slice(&[0u8; 1024]);
        fallback_case(|dir| {
            std::fs::write(dir.join("rootfs-diff.tar"), &tar).unwrap();
            reseal(dir, "rootfs-diff.tar");
        });
        let changes = canaries.changes();
        assert!(changes.is_empty(), "{name}: reached outside: {changes:?}");
        assert_eq!(sha_of("/etc/passwd"), passwd, "{name}: host file changed");
    }
}

/// The largest stored CRIU page image of the image at `dir` (under it).
fn largest_pages(dir: &Path) -> String {
    let criu = dir.join("criu");
    let name = std::fs::read_dir(&criu)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap_or_else(|| panic!("no pages in {}", criu.display()))
        .file_name();
    format!("criu/{}", name.to_string_lossy())
}

/// A large memory image is hashed while CRIU restores it, not before
/// (arch_image::VerifyBehind): one replaced by another valid stream of the
/// same size, its stored digest and the signature made to match, is still
/// refused by its original digest before the restored tree runs, and the
/// container starts fresh with the reason recorded.
#[test]
fn a_large_memory_image_with_other_bytes_is_refused_before_the_tree_runs() {
    let c = ctr();
    let key = unique_id("bigmem");
    let cmd = "cat /proc/sys/kernel/random/uuid > /boot-id; exec memtouch 24";
    let first = unique_id("bmfirst");
    let ct = c.start_arch(&first, Some(&key), cmd);
    let boot = c.rootfs_file(&first, "boot-id");
    assert!(!c.rootfs_file(&first, "tmp/count").is_empty());
    assert_eq!(c.run(&["task", "kill", &first]).code, 0);
    c.wait_status(&first, "STOPPED");
    drop(ct);

    let dir = image_dir(&c, &key);
    let rel = largest_pages(&dir);
    assert!(
        rel.ends_with(".zst"),
        "a streamed, compressed page image: {rel}"
    );
    let mut pages = zstd::decode_all(&std::fs::read(dir.join(&rel)).unwrap()[..]).unwrap();
    assert!(
        pages.len() as u64 >= arch_image::DEFER_FROM,
        "{} bytes",
        pages.len()
    );
    let mid = pages.len() / 2;
    pages[mid] ^= 0x5a;
    std::fs::write(dir.join(&rel), zstd::encode_all(&pages[..], 1).unwrap()).unwrap();
    reseal(&dir, &rel);
    store()
        .open(&c.namespace, &key)
        .expect("the stored bytes check out");

    let again = unique_id("bmagain");
    let _ct = c.start_arch(&again, Some(&key), cmd);
    assert!(wait_until(Duration::from_secs(10), || {
        let now = c.rootfs_file(&again, "boot-id");
        !now.is_empty() && now != boot
    }));
    let why = arch_e2e::records_for(store().root(), &key)
        .into_iter()
        .find(|r| r.outcome == Outcome::Fallback)
        .and_then(|r| r.error)
        .unwrap_or_default();
    assert!(why.contains(&rel) && why.contains("sha256"), "{why}");
}

/// An init that asked for a parent-death signal (`tini -p`, `setpriv
/// --pdeathsig`) gets it back from CRIU, as the child of the shim thread
/// that ran CRIU: the kernel sends it when that thread exits. A restore
/// from a thread that ended (as for every container with its own network
/// namespace, before parent_thread.rs) killed the init at once.
#[test]
fn a_restored_init_with_a_parent_death_signal_keeps_running() {
    let c = ctr();
    let key = unique_id("pdkey");
    let mounts = arch_e2e::host_setpriv_mounts();
    let extra: Vec<&str> = mounts.iter().map(String::as_str).collect();
    let cmd = [
        "setpriv",
        "--pdeathsig",
        "KILL",
        "sh",
        "-c",
        "echo $$ > /tmp/init; while true; do sleep 0.1; done",
    ];
    let first = unique_id("pdfirst");
    let r = c.run_arch_with("-d", &first, Some(&key), &extra, &cmd);
    assert_eq!(r.code, 0, "ctr run {first}: {}", r.stderr);
    let ct = arch_e2e::Container {
        ctr: c.clone(),
        id: first.clone(),
    };
    assert_eq!(c.exec_file(&first, "/tmp/init"), "1", "sh is the init");
    assert_eq!(c.run(&["task", "kill", &first]).code, 0);
    c.wait_status(&first, "STOPPED");
    drop(ct);
    store().open(&c.namespace, &key).expect("committed image");

    let again = unique_id("pdagain");
    let r = c.run_arch_with("-d", &again, Some(&key), &extra, &cmd);
    assert_eq!(r.code, 0, "ctr run {again}: {}", r.stderr);
    let _ct = arch_e2e::Container {
        ctr: c.clone(),
        id: again.clone(),
    };
    assert!(
        sidecars(&c, &key).iter().any(|e| e.ends_with("@restored")),
        "restored, not started fresh: {:?}",
        sidecars(&c, &key)
    );
    let pid = c.task_pid(&again);
    let died = wait_until(Duration::from_secs(3), || !arch_e2e::pid_alive(pid));
    assert!(
        !died,
        "the restored init ({pid}) was killed by its parent-death signal"
    );
    assert_eq!(c.task_status(&again).as_deref(), Some("RUNNING"));
}
