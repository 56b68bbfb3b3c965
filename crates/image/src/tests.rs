//! Store-level tests: real files in a tempdir, no root needed.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::*;

pub(crate) fn info() -> CommitInfo {
    CommitInfo {
        container_id: "c1".into(),
        durations_ms: BTreeMap::from([("dump".into(), 12), ("rootfs".into(), 3)]),
        criu_version: "4.1".into(),
        kernel: "6.8.0".into(),
        arch: "x86_64".into(),
        cgroup_version: CgroupVersion::V2,
        profile: ProfileDigest {
            digest: "ab".repeat(32),
            fields: BTreeMap::from([("user".into(), "cd".repeat(32))]),
        },
    }
}

/// Commit a small but realistic image and return (tempdir, store).
fn committed(ns: &str, key: &str) -> (tempfile::TempDir, ImageStore) {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    let st = store.begin(ns, key).unwrap();
    fs::create_dir(st.path().join(CRIU_DIR)).unwrap();
    fs::write(st.path().join("criu/pages-1.img"), vec![7u8; 5000]).unwrap();
    fs::write(st.path().join("criu/dump.log"), b"ok\n").unwrap();
    fs::write(st.path().join(ROOTFS_DIFF), b"tar").unwrap();
    fs::write(st.path().join(CONFIG), b"{}").unwrap();
    st.commit(info()).unwrap();
    (tmp, store)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn rewrite_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join(MANIFEST);
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    fs::write(p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn round_trip() {
    let (_t, store) = committed("default", "job-1");
    let img = store.open("default", "job-1").unwrap();
    let m = img.manifest();
    assert_eq!(
        (m.format_version, m.status),
        (3, Status::Committed),
        "nothing sealed: written as version 3"
    );
    assert_eq!((m.namespace.as_str(), m.key.as_str()), ("default", "job-1"));
    let paths: Vec<_> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "config.json",
            "criu/dump.log",
            "criu/pages-1.img",
            "rootfs-diff.tar"
        ]
    );
    assert_eq!(m.total_size, 5000 + 3 + 3 + 2);
    assert_eq!(m.durations_ms["dump"], 12);
    assert!(img.rootfs_diff().is_file() && img.criu_dir().is_dir() && img.config().is_file());
    let refs = store.list().unwrap();
    assert_eq!(
        refs,
        [ImageRef {
            namespace: "default".into(),
            key: "job-1".into()
        }]
    );
}

#[test]
fn permissions_are_private() {
    let (t, store) = committed("ns", "k");
    let dir = store.image_dir("ns", "k").unwrap();
    assert_eq!(mode(&t.path().join("root")), 0o700);
    assert_eq!(mode(&t.path().join("root/ns")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CRIU_DIR)), 0o700);
    for f in [MANIFEST, CONFIG, ROOTFS_DIFF, "criu/pages-1.img"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
}

#[test]
fn corrupted_byte_detected() {
    let (_t, store) = committed("ns", "k");
    let p = store.image_dir("ns", "k").unwrap().join("criu/pages-1.img");
    let mut data = fs::read(&p).unwrap();
    data[4321] ^= 1;
    fs::write(&p, data).unwrap();
    let e = store.open("ns", "k").unwrap_err();
    assert!(
        matches!(e, Error::ChecksumMismatch { ref path, .. } if path == "criu/pages-1.img"),
        "{e}"
    );
}

#[test]
fn truncated_missing_and_extra_files_detected() {
    let (_t, store) = committed("ns", "k");
    let dir = store.image_dir("ns", "k").unwrap();
    fs::write(dir.join("criu/pages-1.img"), vec![7u8; 10]).unwrap();
    assert!(matches!(
        store.open("ns", "k"),
        Err(Error::SizeMismatch {
            expected: 5000,
            actual: 10,
            ..
        })
    ));
    fs::remove_file(dir.join("criu/pages-1.img")).unwrap();
    assert!(matches!(
        store.open("ns", "k"),
        Err(Error::MissingFile { .. })
    ));

    let (_t, store) = committed("ns", "k");
    let dir = store.image_dir("ns", "k").unwrap();
    fs::write(dir.join("criu/extra.img"), b"x").unwrap();
    let e = store.open("ns", "k").unwrap_err();
    assert!(
        matches!(e, Error::UnlistedFile { ref path } if path == "criu/extra.img"),
        "{e}"
    );
}

#[test]
fn symlink_in_image_rejected() {
    let (t, store) = committed("ns", "k");
    let dir = store.image_dir("ns", "k").unwrap();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::rename(dir.join(CRIU_DIR), outside.join("criu")).unwrap();
    std::os::unix::fs::symlink(outside.join("criu"), dir.join(CRIU_DIR)).unwrap();
    let e = store.open("ns", "k").unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnsafePath {
                reason: "symlink component",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn future_version_names_both() {
    let (_t, store) = committed("ns", "k");
    rewrite_manifest(&store.image_dir("ns", "k").unwrap(), |v| {
        v["format_version"] = 7.into()
    });
    let e = store.open("ns", "k").unwrap_err();
    assert!(matches!(
        e,
        Error::UnsupportedVersion {
            found: 7,
            supported: FORMAT_VERSION
        }
    ));
    let msg = e.to_string();
    assert!(msg.contains('7') && msg.contains('2'), "{msg}");
}

#[test]
fn wrong_types_and_unknown_fields_rejected() {
    let cases: [(&str, serde_json::Value); 5] = [
        ("format_version", "2".into()),
        (
            "profile",
            serde_json::json!({"digest": "not hex", "fields": {}}),
        ),
        ("total_size", "big".into()),
        ("status", "weird".into()),
        ("surprise", true.into()),
    ];
    for (field, val) in cases {
        let (_t, store) = committed("ns", "k");
        rewrite_manifest(&store.image_dir("ns", "k").unwrap(), |v| {
            v[field] = val.clone()
        });
        let e = store.open("ns", "k").unwrap_err();
        assert!(
            matches!(
                e,
                Error::ManifestParse { .. } | Error::InvalidManifest { .. }
            ),
            "{field}: {e}"
        );
    }
    let (_t, store) = committed("ns", "k");
    fs::write(
        store.image_dir("ns", "k").unwrap().join(MANIFEST),
        b"{not json",
    )
    .unwrap();
    assert!(matches!(
        store.open("ns", "k"),
        Err(Error::ManifestParse { .. })
    ));
}

#[test]
fn manifest_path_traversal_rejected() {
    for bad in [
        "../escape",
        "/etc/passwd",
        "criu/../../x",
        "a//b",
        "./config.json",
        MANIFEST,
    ] {
        let (_t, store) = committed("ns", "k");
        rewrite_manifest(&store.image_dir("ns", "k").unwrap(), |v| {
            v["files"][0]["path"] = bad.into();
        });
        let e = store.open("ns", "k").unwrap_err();
        assert!(matches!(e, Error::UnsafePath { .. }), "{bad}: {e}");
    }
}

#[test]
fn manifest_identity_must_match_dir() {
    let (t, store) = committed("ns", "k");
    fs::rename(t.path().join("root/ns/k"), t.path().join("root/ns/other")).unwrap();
    let e = store.open("ns", "other").unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidManifest {
                field: "namespace/key",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn hostile_identities_rejected_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    let long = "x".repeat(129);
    for bad in ["..", ".", "a/b", "a\0b", "", long.as_str()] {
        assert!(
            matches!(
                store.image_dir("ns", bad),
                Err(Error::InvalidIdentity { .. })
            ),
            "{bad:?}"
        );
        assert!(store.image_dir(bad, "k").is_err());
        assert!(store.begin("ns", bad).is_err());
        assert!(store.open("ns", bad).is_err());
        assert!(store.claim("ns", bad, "me").is_err());
    }
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

#[test]
fn dropped_staging_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    let st = store.begin("ns", "k").unwrap();
    assert_eq!(mode(st.path()), 0o700);
    fs::write(st.path().join("partial"), b"x").unwrap();
    drop(st);
    assert_eq!(fs::read_dir(tmp.path().join("ns")).unwrap().count(), 0);
    assert!(matches!(store.open("ns", "k"), Err(Error::NotFound { .. })));
}

#[test]
fn commit_replaces_existing_image() {
    let (_t, store) = committed("ns", "k");
    let st = store.begin("ns", "k").unwrap();
    fs::write(st.path().join(CONFIG), b"{\"v\":2}").unwrap();
    st.commit(info()).unwrap();
    let img = store.open("ns", "k").unwrap();
    assert_eq!(img.manifest().files.len(), 1);
    let names: Vec<_> = fs::read_dir(store.root().join("ns"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["k"], "old image and temp removed");
}

#[test]
fn staging_with_symlink_refuses_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    let st = store.begin("ns", "k").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", st.path().join(CONFIG)).unwrap();
    assert!(matches!(
        st.commit(info()),
        Err(Error::UnexpectedFileType { .. })
    ));
    assert_eq!(fs::read_dir(tmp.path().join("ns")).unwrap().count(), 0);
}

#[test]
fn stale_temp_cleanup_and_old_recovery() {
    let (_t, store) = committed("ns", "k");
    let ns = store.root().join("ns");
    let st = store.begin("ns", "k").unwrap();
    let tmp_path = ns.join(st.name());
    std::mem::forget(st); // simulate a crash: Drop never runs
                          // A live writer's temp is kept, however old.
    assert_eq!(store.cleanup_stale_temps(Duration::ZERO).unwrap(), 0);
    assert!(tmp_path.exists());
    // Crash mid-replace by a writer that is gone: the image moved to
    // @old-{tag} beside its replacement @tmp-{tag}, nothing renamed in.
    let tag = format!("{}-99999999-0123456789abcdef", crate::fsutil::boot_tag());
    let dead_tmp = ns.join(format!("k@tmp-{tag}"));
    fs::rename(&tmp_path, &dead_tmp).unwrap();
    fs::rename(ns.join("k"), ns.join(format!("k@old-{tag}"))).unwrap();
    assert_eq!(
        store
            .cleanup_stale_temps(Duration::from_secs(3600))
            .unwrap(),
        2
    );
    assert!(!dead_tmp.exists());
    store
        .open("ns", "k")
        .expect("old image restored into place");
    assert_eq!(store.list().unwrap().len(), 1);
    drop(store.take("ns", "k").unwrap());
    store
        .open("ns", "k")
        .expect("dropped undecided: back under its key");
    let t = store.take("ns", "k").unwrap();
    t.put_back().unwrap();
    let failed = store.take("ns", "k").unwrap().fail("criu said no").unwrap();
    assert!(failed.join(store::FAILURE_REASON_FILE).exists());
    assert!(store.open("ns", "k").is_err());
}

#[test]
fn a_dead_restorers_taken_image_is_put_back_by_cleanup() {
    let (_t, store) = committed("ns", "k");
    let t = store.take("ns", "k").unwrap();
    // As if the restorer died: its name says another (dead) pid took it.
    let dead = t.dir().with_file_name(format!(
        "k@taken-{}-99999999-0123456789abcdef",
        crate::fsutil::boot_tag()
    ));
    fs::rename(t.dir(), &dead).unwrap();
    std::mem::forget(t);
    assert_eq!(
        store
            .cleanup_stale_temps(Duration::from_secs(3600))
            .unwrap(),
        1
    );
    store
        .open("ns", "k")
        .expect("put back for the next restore");
    // A live restorer's is left alone, however old the image.
    let live = store.take("ns", "k").unwrap();
    assert_eq!(store.cleanup_stale_temps(Duration::ZERO).unwrap(), 0);
    assert!(live.dir().exists());
}

fn signed_store(root: &Path, key: u8, allow_unsigned: bool) -> ImageStore {
    ImageStore::new(root).with_trust(Trust {
        key: Some(std::sync::Arc::new(
            SigningKey::from_bytes(&[key; 32]).unwrap(),
        )),
        allow_unsigned,
    })
}

fn commit_into(store: &ImageStore, ns: &str, key: &str) {
    let st = store.begin(ns, key).unwrap();
    fs::create_dir(st.path().join(CRIU_DIR)).unwrap();
    fs::write(st.path().join("criu/pages-1.img"), vec![7u8; 100]).unwrap();
    fs::write(st.path().join(ROOTFS_DIFF), b"tar").unwrap();
    st.commit(info()).unwrap();
}

#[test]
fn signed_images_verify_and_tampered_or_unsigned_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let store = signed_store(&root, 1, false);
    commit_into(&store, "ns", "k");
    let dir = store.image_dir("ns", "k").unwrap();
    assert!(dir.join(SIGNATURE).exists());
    store.open("ns", "k").expect("a signed image verifies");
    assert!(
        signed_store(&root, 2, false).open("ns", "k").is_err(),
        "another fleet's key does not verify it"
    );
    // A forger who rewrites a file and reseals the manifest's hashes.
    fs::write(dir.join("criu/pages-1.img"), vec![6u8; 100]).unwrap();
    rewrite_manifest(&dir, |v| {
        let data = vec![6u8; 100];
        use sha2::Digest;
        v["files"][1]["sha256"] = hex::encode(sha2::Sha256::digest(&data)).into();
    });
    let e = store.open("ns", "k").unwrap_err();
    assert!(matches!(e, Error::BadSignature { .. }), "{e}");
    // Without the signature: refused unless unsigned images are allowed.
    fs::remove_file(dir.join(SIGNATURE)).unwrap();
    let e = store.open("ns", "k").unwrap_err();
    assert!(matches!(e, Error::Unsigned), "{e}");
    let e = signed_store(&root, 1, true).open("ns", "k").unwrap_err();
    assert!(
        matches!(
            e,
            Error::ChecksumMismatch { .. } | Error::InvalidManifest { .. }
        ),
        "allowed unsigned, the hashes still count: {e}"
    );
}

#[test]
fn a_namespace_symlink_out_of_the_root_is_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("ns")).unwrap();
    let store = ImageStore::new(&root);
    let e = store.begin("ns", "k").unwrap_err();
    assert!(matches!(e, Error::UnsafePath { .. }), "{e}");
    assert!(store.open("ns", "k").is_err());
    assert!(store.take("ns", "k").is_err());
    assert!(store.claim("ns", "k", "me").is_err());
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing written through the link"
    );
}

#[test]
fn a_manifest_that_is_a_fifo_or_a_link_to_dev_zero_neither_hangs_nor_escapes() {
    for kind in ["fifo", "zero"] {
        let (_t, store) = committed("ns", "k");
        let dir = store.image_dir("ns", "k").unwrap();
        let m = dir.join(MANIFEST);
        fs::remove_file(&m).unwrap();
        if kind == "fifo" {
            let c = std::ffi::CString::new(m.to_str().unwrap()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        } else {
            std::os::unix::fs::symlink("/dev/zero", &m).unwrap();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let s = store.clone();
        std::thread::spawn(move || {
            let _ = tx.send((s.open("ns", "k").is_err(), s.manifest("ns", "k").is_err()));
        });
        let refused = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{kind}: reading the manifest hung"));
        assert_eq!(refused, (true, true), "{kind}");
    }
}

#[test]
fn a_verified_copy_is_what_restore_reads_whatever_the_root_does_later() {
    let tmp = tempfile::tempdir().unwrap();
    let store = signed_store(&tmp.path().join("root"), 1, false);
    commit_into(&store, "ns", "k");
    let taken = store.take("ns", "k").unwrap();
    let local = tmp.path().join("local");
    let image = taken.verify_into(&local).unwrap();
    assert_eq!(image.dir(), local.as_path());
    // Another host rewrites a page file in the shared root after the check.
    fs::write(taken.dir().join("criu/pages-1.img"), vec![0u8; 100]).unwrap();
    assert_eq!(
        fs::read(image.criu_dir().join("pages-1.img")).unwrap(),
        vec![7u8; 100],
        "the copy holds what was verified"
    );
    // A file changed before the copy is refused, and no copy is left.
    let again = tmp.path().join("again");
    let e = taken.verify_into(&again).unwrap_err();
    assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
    assert!(!again.exists());
}

#[test]
fn an_image_directory_swapped_for_a_link_after_the_take_is_not_read() {
    let (t, store) = committed("ns", "k");
    let taken = store.take("ns", "k").unwrap();
    let elsewhere = t.path().join("elsewhere");
    fs::rename(taken.dir(), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, taken.dir()).unwrap();
    let e = taken.verify_into(&t.path().join("copy")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnsafePath { .. } | Error::Io { .. } | Error::UnexpectedFileType { .. }
        ),
        "{e}"
    );
    assert!(!t.path().join("copy").exists());
    std::mem::forget(taken);
}
