//! gc and stats against real images and sidecars.

mod common;

use std::fs;

use common::*;

const DAY: u64 = 86_400;

#[test]
fn gc_older_than_and_dry_run() {
    let r = Root::new();
    r.image("default", "old", 10);
    r.age("default", "old", 10 * DAY);
    r.image("default", "new", 10);
    let out = ok(r.run(&["gc", "--older-than", "7d", "--dry-run"]));
    assert!(out.contains("would remove default/old"), "{out}");
    assert!(!out.contains("default/new"), "{out}");
    assert!(
        r.path().join("default/old").exists(),
        "dry run removes nothing"
    );
    let out = ok(r.run(&["gc", "--older-than", "7d"]));
    assert!(out.contains("removed default/old"), "{out}");
    assert!(!r.path().join("default/old").exists());
    assert!(r.path().join("default/new").exists());
    let leftovers: Vec<_> = fs::read_dir(r.path().join("default"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, ["new"], "no @rm- leftovers");
    fails(r.run(&["gc", "--older-than", "7"]), 2);
}

#[test]
fn gc_keep_newest_per_namespace() {
    let r = Root::new();
    for (i, key) in ["k1", "k2", "k3", "k4"].iter().enumerate() {
        r.image("default", key, 10);
        r.age("default", key, (4 - i as u64) * 3600); // k4 newest
    }
    r.image("other", "solo", 10);
    r.age("other", "solo", 30 * DAY);
    let out = ok(r.run(&["gc", "--keep", "2"]));
    assert!(
        out.contains("removed default/k1") && out.contains("removed default/k2"),
        "{out}"
    );
    for kept in ["default/k3", "default/k4", "other/solo"] {
        assert!(r.path().join(kept).exists(), "{kept} kept\n{out}");
    }
    // --keep protects the newest even when they are old.
    let out = ok(r.run(&["gc", "--keep", "1", "--older-than", "90m"]));
    assert!(out.contains("removed default/k3"), "{out}");
    assert!(
        r.path().join("default/k4").exists() && r.path().join("other/solo").exists(),
        "{out}"
    );
}

#[test]
fn gc_failed_and_stale_temps() {
    let r = Root::new();
    r.image("default", "bad", 10);
    let failed = r
        .store
        .mark_failed("default", "bad", "criu said no")
        .unwrap();
    r.image("default", "good", 10);
    r.image("default", "gone", 10);
    r.store.retire("default", "gone").unwrap();
    let stale = r.path().join("default/x@tmp-0000deadbeef-1-abc");
    fs::create_dir(&stale).unwrap();

    let out = ok(r.run(&["gc"]));
    assert!(
        failed.exists(),
        "failed sidecars stay without --failed\n{out}"
    );
    assert!(
        stale.exists(),
        "a fresh temp from another boot is kept\n{out}"
    );

    let out = ok(r.run(&["gc", "--failed", "--tmp-age", "0s", "--dry-run"]));
    assert!(out.contains("would remove default/bad@failed-"), "{out}");
    assert!(out.contains("would clean default/x@tmp-"), "{out}");
    assert!(failed.exists() && stale.exists());

    let out = ok(r.run(&["gc", "--failed", "--tmp-age", "0s"]));
    assert!(out.contains("removed default/bad@failed-"), "{out}");
    assert!(out.contains("cleaned default/x@tmp-"), "{out}");
    assert!(!failed.exists() && !stale.exists());
    assert!(r.path().join("default/good").exists());
    assert!(
        r.path().join("default/gone@restored").exists(),
        "restored sidecar kept"
    );
}

#[test]
fn stats_counts_images_and_records() {
    let r = Root::new();
    r.image("default", "a", 1000);
    r.image("default", "b", 1000);
    r.image("k8s.io", "c", 1000);
    r.store.mark_failed("k8s.io", "c", "x").unwrap();
    r.image("k8s.io", "d", 1000);
    r.store.retire("k8s.io", "d").unwrap();
    for outcome in [arch_records::Outcome::Ok, arch_records::Outcome::Fallback] {
        arch_records::append(
            r.path(),
            "h",
            &record(arch_records::Operation::Restore, outcome, 10),
        )
        .unwrap();
    }
    let v: serde_json::Value = serde_json::from_str(&ok(r.run(&["stats", "--json"]))).unwrap();
    assert_eq!(v["images"]["committed"], 2);
    assert_eq!(v["images"]["failed"], 1);
    assert_eq!(v["images"]["restored"], 1);
    assert_eq!(v["namespaces"]["default"]["committed"], 2);
    assert_eq!(v["namespaces"]["k8s.io"]["committed"], 0);
    assert!(v["images"]["bytes"].as_u64().unwrap() >= 4 * 1000);
    assert_eq!(v["records"]["total"], 2);
    assert_eq!(v["records"]["by_op"]["restore"]["fallback"], 1);
    let text = ok(r.run(&["stats"]));
    assert!(
        text.contains("(total)") && text.contains("restore") && text.contains("fallback"),
        "{text}"
    );
}

pub fn record(
    op: arch_records::Operation,
    outcome: arch_records::Outcome,
    ms: u64,
) -> arch_records::Record {
    arch_records::Record {
        time: arch_records::now_secs(),
        op,
        outcome,
        trigger: "stop".into(),
        namespace: "default".into(),
        key: "k".into(),
        container_id: "c".into(),
        total_ms: ms,
        durations_ms: Default::default(),
        bytes: 3 << 20,
        error: None,
    }
}

/// A dry run predicts what the shims' own cleanup does: a staging dir whose
/// writer died goes at once (whatever its age); a replaced image whose
/// replacement never landed goes back into its slot.
#[test]
fn gc_dry_run_predicts_dead_writers_and_restored_images() {
    let r = Root::new();
    let st = r.store.begin("default", "w").unwrap();
    let live = st.name().to_string();
    let dead_pid = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    // `{key}@tmp-{boot}-{pid}-{rand}`, the writer now a dead process.
    let parts: Vec<&str> = live.splitn(4, '-').collect();
    let dead = format!("{}-{}-{dead_pid}-{}", parts[0], parts[1], parts[3]);
    fs::rename(
        r.path().join("default").join(&live),
        r.path().join("default").join(&dead),
    )
    .unwrap();
    std::mem::forget(st);
    // A replace that crashed between its renames: `@old-{tag}` beside the
    // replacement's `@tmp-{tag}`, the writer dead.
    let tag = format!("{}-{dead_pid}-{}", parts[1], parts[3]);
    let img = r.image("default", "o", 10);
    let old = r.path().join(format!("default/o@old-{tag}"));
    fs::rename(&img, &old).unwrap();
    fs::create_dir(r.path().join(format!("default/o@tmp-{tag}"))).unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs::File::open(&old).unwrap().set_modified(past).unwrap();

    let out = ok(r.run(&["gc", "--dry-run"]));
    assert!(
        out.contains(&format!("would clean default/{dead} (its writer is gone)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("would restore default/o@old-{tag}")),
        "{out}"
    );
    assert!(r.path().join("default").join(&dead).exists() && old.exists());

    let out = ok(r.run(&["gc"]));
    assert!(out.contains(&format!("cleaned default/{dead}")), "{out}");
    assert!(
        out.contains(&format!("restored default/o@old-{tag}")),
        "{out}"
    );
    assert!(!r.path().join("default").join(&dead).exists());
    r.store
        .open("default", "o")
        .expect("the replaced image is back");
}

/// network-fs mode: an image another host's restorer took, whose lease
/// has not been renewed for longer than `claim_lease_secs`, goes back
/// under its key (that restorer died). A live lease keeping its image is
/// the image crate's unit test `a_live_claimer_never_loses_its_image`.
#[test]
fn gc_gives_back_an_image_whose_restorers_lease_expired() {
    let r = Root::new();
    r.image("default", "job", 10);
    // As another host (another boot id) names its claim and its lease.
    let other = "0000feedface-4242-0123456789abcdef";
    let taken = r.path().join(format!("default/job@taken-{other}"));
    let lease = r.path().join(format!("default/job@lease-{other}"));
    fs::rename(r.path().join("default/job"), &taken).unwrap();
    fs::write(&lease, b"other-host:1:c\n").unwrap();
    let key = r.dir.path().join("fleet.key");
    fs::write(&key, [9u8; 32]).unwrap();
    let config = r.dir.path().join("network-fs.toml");
    fs::write(
        &config,
        format!(
            "mode = \"network-fs\"\nsigning_key_file = \"{}\"\nclaim_lease_secs = 2\n",
            key.display()
        ),
    )
    .unwrap();
    let root = r.path().to_str().unwrap();
    // Leases are judged by change time, which only time moves.
    std::thread::sleep(std::time::Duration::from_secs(3));
    // Basic mode has no leases: a taken image is never given back by age.
    let out = ok(r.run(&["gc"]));
    assert!(taken.exists(), "basic mode gave it back: {out}");
    let out = ok(archctl_with(&config, &["--root", root, "gc"]));
    assert!(out.contains("lease expired"), "{out}");
    assert!(r.path().join("default/job").exists(), "given back: {out}");
    assert!(!taken.exists() && !lease.exists(), "{out}");
}

#[test]
fn gc_keeps_a_keys_generations_and_removes_them_with_it_or_once_superseded() {
    let mut r = Root::new();
    r.store = r.store.clone().with_generations(3);
    for payload in [10, 20, 30] {
        r.image("default", "job", payload);
    }
    r.image("default", "sup", 10);
    r.image("default", "sup", 20);
    let gens = |key: &str| r.store.generations("default", key).unwrap().len();
    let out = ok(r.run(&["gc", "--tmp-age", "0s"]));
    assert_eq!((gens("job"), gens("sup")), (2, 1), "no temporaries\n{out}");

    // "sup" was restored after its generation became one: older state.
    std::thread::sleep(std::time::Duration::from_millis(50));
    r.store.retire("default", "sup").unwrap();
    let out = ok(r.run(&["gc", "--tmp-age", "1h", "--dry-run"]));
    assert!(out.contains("would clean default/sup@gen-"), "{out}");
    assert!(
        out.contains("older generation than the image restored"),
        "{out}"
    );
    ok(r.run(&["gc", "--tmp-age", "1h"]));
    assert_eq!(gens("sup"), 0);
    assert_eq!(gens("job"), 2, "another key's stay");

    // An image gc removes takes its generations along.
    let out = ok(r.run(&["gc", "--keep", "0"]));
    assert!(out.contains("removed default/job"), "{out}");
    assert_eq!(gens("job"), 0);
}
