//! Issue 13's attacks on the image store, tried through containerd: each
//! one must fail, leave the victim's image as it was, and say why.

use std::time::Duration;

use arch_e2e::{ctr, unique_id, wait_until, Ctr};
use arch_image::ImageStore;
use arch_records::{Operation, Outcome};

/// Remembers a boot id: the same after a restore, new after a fresh start.
const WORKLOAD: &str = "boot=$(cat /proc/sys/kernel/random/uuid); \
    while true; do echo $boot > /tmp/boot; sleep 0.1; done";

const SANDBOX_NS: &str = "io.kubernetes.cri.sandbox-namespace";

fn store() -> ImageStore {
    ImageStore::new(arch_e2e::checkpoint_root())
}

/// Runs the workload as `key` with extra `ctr run` flags until it wrote its
/// boot id; returns the container id and that boot id.
fn run(c: &Ctr, key: &str, extra: &[&str]) -> (String, String) {
    let id = unique_id("trust");
    let r = c.run_arch_with("-d", &id, Some(key), extra, &["sh", "-c", WORKLOAD]);
    assert_eq!(r.code, 0, "ctr run {id}: {}", r.stderr);
    let boot = c.exec_file(&id, "/tmp/boot");
    (id, boot)
}

/// Stops (checkpoints) and removes container `id`.
fn stop(c: &Ctr, id: &str) {
    assert_eq!(c.run(&["task", "kill", id]).code, 0);
    c.wait_status(id, "STOPPED");
    c.run(&["task", "rm", "-f", id]);
    c.run(&["container", "rm", id]);
}

fn remove(c: &Ctr, id: &str) {
    c.run(&["task", "kill", "-s", "KILL", id]);
    c.wait_status(id, "STOPPED");
    c.run(&["task", "rm", "-f", id]);
    c.run(&["container", "rm", id]);
}

fn fallback_reasons(key: &str) -> Vec<String> {
    arch_e2e::records_for(store().root(), key)
        .into_iter()
        .filter(|r| r.op == Operation::Restore && r.outcome == Outcome::Fallback)
        .filter_map(|r| r.error)
        .collect()
}

/// §1: under CRI every pod shares containerd's `k8s.io`; a pod of another
/// Kubernetes namespace that sets the same key never sees the image.
#[test]
fn a_pod_of_another_kubernetes_namespace_cannot_take_an_image() {
    let c = ctr();
    let key = unique_id("victim");
    let team_a = format!("{SANDBOX_NS}=team-a");
    let team_b = format!("{SANDBOX_NS}=team-b");
    let (victim, _) = run(&c, &key, &["--annotation", &team_a]);
    stop(&c, &victim);
    let scope_a = format!("{}+team-a", c.namespace);
    store()
        .open(&scope_a, &key)
        .expect("the image is scoped to team-a");
    assert!(
        store().open(&c.namespace, &key).is_err(),
        "nothing under the bare containerd namespace"
    );

    let (thief, thief_boot) = run(&c, &key, &["--annotation", &team_b]);
    remove(&c, &thief);
    store()
        .open(&scope_a, &key)
        .expect("team-a's image is untouched by team-b's container");

    let (owner, owner_boot) = run(&c, &key, &["--annotation", &team_a]);
    assert_ne!(owner_boot, thief_boot);
    remove(&c, &owner);
    assert!(
        store().open(&scope_a, &key).is_err(),
        "team-a's own container restored (consumed) it"
    );
    let restored = arch_e2e::records_for(store().root(), &key)
        .into_iter()
        .filter(|r| r.op == Operation::Restore && r.outcome == Outcome::Ok)
        .map(|r| r.container_id)
        .collect::<Vec<_>>();
    assert_eq!(restored, vec![owner], "only the owner restored");
}

/// §1: a container that asks for more (or other) privileges than the one
/// that was checkpointed starts fresh; the record names the field and the
/// image stays for its owner.
#[test]
fn a_container_with_another_security_profile_starts_fresh() {
    let c = ctr();
    let key = unique_id("profile");
    let (victim, victim_boot) = run(&c, &key, &[]);
    stop(&c, &victim);

    for (extra, field) in [
        (
            &["--mount", "type=bind,src=/root,dst=/host,options=rbind:ro"][..],
            "mounts",
        ),
        (&["--cap-add", "CAP_SYS_ADMIN"][..], "capabilities"),
        (&["--user", "1234:1234"][..], "user"),
        (&["--seccomp"][..], "seccomp"),
    ] {
        let (thief, thief_boot) = run(&c, &key, extra);
        assert_ne!(thief_boot, victim_boot, "{extra:?} was not restored");
        remove(&c, &thief);
        store()
            .open(&c.namespace, &key)
            .unwrap_or_else(|e| panic!("{extra:?}: the image must stay in place: {e}"));
        let reasons = fallback_reasons(&key);
        assert!(
            reasons
                .iter()
                .any(|r| r.contains(&format!("differs in {field}"))),
            "{extra:?}: a record names {field}: {reasons:?}"
        );
    }

    let (owner, owner_boot) = run(&c, &key, &[]);
    assert_eq!(owner_boot, victim_boot, "the owner's profile restores");
    remove(&c, &owner);
}

/// §4: two containers created at once with one key: the image is taken by
/// a rename, so exactly one restores (in `basic` mode too), and nothing is
/// left taken.
#[test]
fn two_containers_created_at_once_restore_an_image_exactly_once() {
    let c = ctr();
    let key = unique_id("once");
    let (first, first_boot) = run(&c, &key, &[]);
    stop(&c, &first);
    store().open(&c.namespace, &key).expect("committed image");

    let ids = [unique_id("twin"), unique_id("twin")];
    let runs = arch_e2e::parallel(&ids, 2, |id| {
        c.run_arch_with("-d", id, Some(&key), &[], &["sh", "-c", WORKLOAD])
    });
    for (id, r) in ids.iter().zip(&runs) {
        assert_eq!(r.code, 0, "ctr run {id}: {}", r.stderr);
    }
    let boots: Vec<String> = ids.iter().map(|id| c.exec_file(id, "/tmp/boot")).collect();
    for id in &ids {
        remove(&c, id);
    }
    let continued = boots.iter().filter(|b| **b == first_boot).count();
    assert_eq!(continued, 1, "exactly one continues the process: {boots:?}");
    let restores: Vec<_> = arch_e2e::records_for(store().root(), &key)
        .into_iter()
        .filter(|r| r.op == Operation::Restore)
        .collect();
    assert_eq!(
        restores.iter().filter(|r| r.outcome == Outcome::Ok).count(),
        1,
        "one restore recorded: {restores:?}"
    );
    let entries = arch_e2e::image_entries(&c.namespace, &key);
    assert!(
        entries.iter().any(|n| n.ends_with("@restored"))
            && !entries.iter().any(|n| n.contains("@taken-") || *n == key),
        "retired once, nothing left taken: {entries:?}"
    );
}

/// §2: whoever can write the root but has no fleet key cannot plant an
/// image: a forged one (files changed, hashes resealed, no new signature)
/// and an unsigned one both start fresh, and say why.
#[test]
fn forged_and_unsigned_images_are_refused() {
    let c = ctr();
    for (case, want) in [
        ("forged", "bad image signature"),
        ("unsigned", "not signed"),
    ] {
        let key = unique_id(case);
        let (victim, victim_boot) = run(&c, &key, &[]);
        stop(&c, &victim);
        let dir = store().image_dir(&c.namespace, &key).unwrap();
        assert!(
            dir.join(arch_image::SIGNATURE).exists(),
            "images are signed"
        );
        let sig = std::fs::read(dir.join(arch_image::SIGNATURE)).unwrap();
        // The forger's change, resealed (which re-signs with the real key)...
        std::fs::write(dir.join("config.json"), b"{\"forged\": true}").unwrap();
        arch_e2e::reseal(&dir, "config.json");
        match case {
            // ...but without the key, the old signature is all they have.
            "forged" => std::fs::write(dir.join(arch_image::SIGNATURE), &sig).unwrap(),
            _ => std::fs::remove_file(dir.join(arch_image::SIGNATURE)).unwrap(),
        }
        let (planted, boot) = run(&c, &key, &[]);
        assert_ne!(boot, victim_boot, "{case}: started fresh");
        remove(&c, &planted);
        let reasons = fallback_reasons(&key);
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{case}: recorded {want:?}: {reasons:?}"
        );
    }
}

/// §2: a `{root}/{scope}` symlink (here to a directory standing in for
/// /root) is never followed: the checkpoint fails, nothing lands there.
#[test]
fn a_scope_symlink_in_the_root_is_never_followed() {
    let c = ctr();
    let key = unique_id("nslink");
    let target = std::env::temp_dir().join(unique_id("fake-root"));
    std::fs::create_dir_all(&target).unwrap();
    let scope = format!("{}+{}", c.namespace, key.to_ascii_lowercase());
    let link = arch_e2e::checkpoint_root().join(&scope);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let ann = format!("{SANDBOX_NS}={}", key.to_ascii_lowercase());
    let (id, _) = run(&c, &key, &["--annotation", &ann]);
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    // The checkpoint fails and the stop signal is delivered; sh as pid 1
    // ignores SIGTERM, so the container is then killed.
    wait_until(Duration::from_secs(20), || {
        arch_e2e::records_for(store().root(), &key)
            .iter()
            .any(|r| r.op == Operation::Checkpoint)
    });
    remove(&c, &id);
    let written: Vec<_> = std::fs::read_dir(&target).unwrap().flatten().collect();
    let _ = std::fs::remove_file(&link);
    let _ = std::fs::remove_dir_all(&target);
    assert!(written.is_empty(), "written through the link: {written:?}");
    let failed = arch_e2e::records_for(store().root(), &key)
        .into_iter()
        .filter(|r| r.op == Operation::Checkpoint && r.outcome == Outcome::Failed)
        .filter_map(|r| r.error)
        .collect::<Vec<_>>();
    assert!(
        failed.iter().any(|e| e.contains("symlink")),
        "the failed checkpoint says why: {failed:?}"
    );
}

/// §2: an image whose manifest.json is a FIFO or a link to /dev/zero, or
/// that holds a `restore.log` link to a host file, neither hangs Create nor
/// reaches outside the image.
#[test]
fn hostile_files_in_an_image_neither_hang_nor_escape() {
    let c = ctr();
    let canary = std::env::temp_dir().join(unique_id("shadow"));
    std::fs::write(&canary, b"root:*:19000:0:99999:7:::\n").unwrap();
    for case in ["fifo", "dev-zero", "restore-log"] {
        let key = unique_id(case);
        let (victim, _) = run(&c, &key, &[]);
        stop(&c, &victim);
        let dir = store().image_dir(&c.namespace, &key).unwrap();
        let manifest = dir.join(arch_image::MANIFEST);
        match case {
            "fifo" => {
                std::fs::remove_file(&manifest).unwrap();
                let p = std::ffi::CString::new(manifest.to_str().unwrap()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
            }
            "dev-zero" => {
                std::fs::remove_file(&manifest).unwrap();
                std::os::unix::fs::symlink("/dev/zero", &manifest).unwrap();
            }
            _ => std::os::unix::fs::symlink(&canary, dir.join("restore.log")).unwrap(),
        }
        let started = std::time::Instant::now();
        let (planted, _) = run(&c, &key, &[]);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{case}: Create did not hang"
        );
        remove(&c, &planted);
        assert!(
            !fallback_reasons(&key).is_empty(),
            "{case}: a fresh start, recorded"
        );
    }
    assert_eq!(
        std::fs::read(&canary).unwrap(),
        b"root:*:19000:0:99999:7:::\n",
        "the host file is untouched"
    );
    let _ = std::fs::remove_file(&canary);
}

/// §2: what CRIU reads at Start is what was verified at Create, even if
/// the root is rewritten in between: every page file of the taken image is
/// zeroed while the shim waits after staging (a `pause` fault), and the
/// restore still continues the process, from the shim's verified copy.
#[test]
fn pages_rewritten_between_create_and_start_are_not_what_criu_reads() {
    let c = ctr();
    let key = unique_id("between");
    let (victim, victim_boot) = run(&c, &key, &[]);
    stop(&c, &victim);
    let ns_dir = arch_e2e::checkpoint_root().join(&c.namespace);
    let id = unique_id("trust");
    let pause = "io.arch.test.fault=restore:rootfs-applied=pause".to_string();
    let zeroed = std::thread::scope(|s| {
        let creating = s.spawn(|| {
            c.run_arch_with(
                "-d",
                &id,
                Some(&key),
                &["--annotation", &pause],
                &["sh", "-c", WORKLOAD],
            )
        });
        let mut zeroed = 0;
        wait_until(Duration::from_secs(20), || {
            let taken = std::fs::read_dir(&ns_dir).unwrap().flatten().find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{key}@taken-"))
            });
            let Some(taken) = taken else { return false };
            // Give the copy time to finish: the shim pauses 3 s after it.
            std::thread::sleep(Duration::from_millis(1000));
            for f in std::fs::read_dir(taken.path().join("criu"))
                .unwrap()
                .flatten()
            {
                if f.file_name().to_string_lossy().starts_with("pages-") {
                    let len = f.metadata().unwrap().len() as usize;
                    std::fs::write(f.path(), vec![0u8; len]).unwrap();
                    zeroed += 1;
                }
            }
            true
        });
        let r = creating.join().unwrap();
        assert_eq!(r.code, 0, "ctr run {id}: {}", r.stderr);
        zeroed
    });
    assert!(zeroed > 0, "the taken image's page files were rewritten");
    assert_eq!(
        c.exec_file(&id, "/tmp/boot"),
        victim_boot,
        "restored from the verified copy, not the rewritten pages"
    );
    remove(&c, &id);
}
