use std::io::Read;
use std::path::Path;

use arch_image::{CgroupVersion, CommitInfo, Image, ImageStore};

use crate::*;

fn image(root: &Path, key: &str) -> Image {
    image_in(&ImageStore::new(root), key)
}

fn image_in(store: &ImageStore, key: &str) -> Image {
    let staging = store.begin("ns", key).unwrap();
    std::fs::create_dir(staging.path().join("criu")).unwrap();
    std::fs::write(staging.path().join("criu/pages-1.img"), vec![7u8; 300_000]).unwrap();
    std::fs::write(staging.path().join("criu/core-1.img"), b"core").unwrap();
    std::fs::write(staging.path().join("rootfs-diff.tar"), vec![0u8; 1024]).unwrap();
    std::fs::write(
        staging.path().join("config.json"),
        b"{\"ociVersion\":\"1.0.2\"}",
    )
    .unwrap();
    staging.commit(commit_info()).unwrap()
}

/// What a commit records of its container and host, for the tests.
pub(crate) fn commit_info() -> CommitInfo {
    CommitInfo {
        container_id: "c1".into(),
        durations_ms: Default::default(),
        criu_version: "4.1.1".into(),
        kernel: "6.18".into(),
        arch: "x86_64".into(),
        cgroup_version: CgroupVersion::V1,
        profile: arch_image::ProfileDigest {
            digest: "0".repeat(64),
            fields: Default::default(),
        },
    }
}

fn exported(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let stats = export(&image(root, "job"), &mut out, 3).unwrap();
    assert_eq!(stats.archive_bytes, out.len() as u64);
    assert!(stats.image_bytes > 300_000 && stats.archive_bytes < stats.image_bytes / 10);
    out
}

/// The names under `root` that are not the committed image: temporaries or
/// anything else an import may have left behind.
fn leftovers(root: &Path) -> Vec<String> {
    let ns = root.join("ns");
    let Ok(dir) = std::fs::read_dir(&ns) else {
        return vec![];
    };
    dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn an_exported_image_imports_elsewhere_unchanged() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let archive = exported(a.path());
    let target = ImportTarget {
        namespace: Some("other".into()),
        key: Some("moved".into()),
        ..Default::default()
    };
    let imported = import(
        &ImageStore::new(b.path()),
        &archive[..],
        &target,
        &Default::default(),
        None,
    )
    .unwrap();
    let original = ImageStore::new(a.path()).open("ns", "job").unwrap();
    assert_eq!(imported.manifest().files, original.manifest().files);
    assert_eq!(imported.manifest().container_id, "c1");
    assert_eq!(
        (
            imported.manifest().namespace.as_str(),
            imported.manifest().key.as_str()
        ),
        ("other", "moved")
    );
    ImageStore::new(b.path()).open("other", "moved").unwrap();
}

#[test]
fn the_layout_is_the_cri_o_one_with_the_manifest_first() {
    let a = tempfile::tempdir().unwrap();
    let archive = exported(a.path());
    let mut tar = tar::Archive::new(zstd::Decoder::new(&archive[..]).unwrap());
    let names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names[0], ARCH_MANIFEST);
    for want in [
        "checkpoint/pages-1.img",
        "checkpoint/core-1.img",
        "rootfs-diff.tar",
        "spec.dump",
        "config.dump",
        "deleted.files",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
}

/// What `checkpointctl show` needs: the `checkpoint/` directory's own entry,
/// and config.dump times as RFC 3339 (it parses them as Go's time.Time).
#[test]
fn checkpointctl_finds_its_directory_and_parses_the_times() {
    let a = tempfile::tempdir().unwrap();
    let archive = exported(a.path());
    let mut tar = tar::Archive::new(zstd::Decoder::new(&archive[..]).unwrap());
    let mut dir_first = None;
    let mut config = None;
    for (i, e) in tar.entries().unwrap().enumerate() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if e.header().entry_type().is_dir() && name.trim_end_matches('/') == CHECKPOINT_DIR {
            dir_first.get_or_insert(i);
        }
        if name.starts_with("checkpoint/") && !e.header().entry_type().is_dir() {
            assert!(dir_first.is_some(), "{name} before its directory");
        }
        if name == CONFIG_DUMP {
            let mut text = String::new();
            e.read_to_string(&mut text).unwrap();
            config = Some(serde_json::from_str::<serde_json::Value>(&text).unwrap());
        }
    }
    assert!(dir_first.is_some(), "no checkpoint/ directory entry");
    let config = config.unwrap();
    for field in ["createdTime", "checkpointedTime"] {
        let t = config[field].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{field} {t}: {e}"));
    }
}

#[test]
fn a_truncated_archive_lands_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let archive = exported(a.path());
    for cut in [archive.len() / 3, archive.len() / 2, archive.len() - 20] {
        let err = import(
            &ImageStore::new(b.path()),
            &archive[..cut],
            &Default::default(),
            &Default::default(),
            None,
        );
        assert!(err.is_err(), "cut at {cut} accepted");
        assert!(leftovers(b.path()).is_empty(), "{:?}", leftovers(b.path()));
    }
}

#[test]
fn an_existing_image_is_not_overwritten() {
    let a = tempfile::tempdir().unwrap();
    let archive = exported(a.path());
    let err = import(
        &ImageStore::new(a.path()),
        &archive[..],
        &Default::default(),
        &Default::default(),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
}

#[test]
fn an_image_over_the_limit_is_refused_before_anything_is_written() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let archive = exported(a.path());
    let limits = ImportLimits {
        max_total: 1000,
        ..Default::default()
    };
    let err = import(
        &ImageStore::new(b.path()),
        &archive[..],
        &Default::default(),
        &limits,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::TooLarge(_)), "{err}");
    assert!(leftovers(b.path()).is_empty());
}

/// New entries for one entry of an archive (name, kind, data).
type Entries = Vec<(String, tar::EntryType, Vec<u8>)>;
type Edit = Box<dyn Fn(String, Vec<u8>) -> Entries>;

/// Rewrites the archive's entries with `edit` (name, data) → entries; the
/// names go into the header raw, so `..` and absolute paths can be made.
fn rewritten(archive: &[u8], edit: impl Fn(String, Vec<u8>) -> Entries) -> Vec<u8> {
    let mut tar = tar::Archive::new(zstd::Decoder::new(archive).unwrap());
    let mut out = tar::Builder::new(zstd::Encoder::new(Vec::new(), 1).unwrap());
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if e.header().entry_type().is_dir() {
            // Directory entries pass through; the cases edit files.
            let h = e.header().clone();
            out.append(&h, std::io::empty()).unwrap();
            continue;
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        for (name, kind, data) in edit(name, data) {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(data.len() as u64);
            h.set_entry_type(kind);
            h.set_mode(0o600);
            if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
                h.set_link_name("/etc/shadow").unwrap();
                h.set_size(0);
            }
            h.set_cksum();
            out.append(&h, &data[..]).unwrap();
        }
    }
    out.into_inner().unwrap().finish().unwrap()
}

fn refused(archive: Vec<u8>, what: &str) -> String {
    let b = tempfile::tempdir().unwrap();
    let err = import(
        &ImageStore::new(b.path()),
        &archive[..],
        &Default::default(),
        &Default::default(),
        None,
    )
    .map(|_| ())
    .expect_err(what);
    assert!(
        leftovers(b.path()).is_empty(),
        "{what}: left {:?}",
        leftovers(b.path())
    );
    assert!(!b.path().join("etc").exists() && !b.path().parent().unwrap().join("evil").exists());
    err.to_string()
}

#[test]
fn hostile_entries_are_refused_and_land_nothing() {
    let a = tempfile::tempdir().unwrap();
    let archive = exported(a.path());
    let regular = tar::EntryType::Regular;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "traversal",
            Box::new(move |n, d| {
                let extra = if n == "spec.dump" {
                    vec![("../evil".to_string(), regular, b"x".to_vec())]
                } else {
                    vec![]
                };
                [vec![(n, regular, d)], extra].concat()
            }),
        ),
        (
            "absolute",
            Box::new(move |n, d| {
                let n = if n == "spec.dump" {
                    "/etc/evil".to_string()
                } else {
                    n
                };
                vec![(n, regular, d)]
            }),
        ),
        (
            "symlink",
            Box::new(move |n, d| {
                if n == "checkpoint/core-1.img" {
                    vec![(n, tar::EntryType::Symlink, vec![])]
                } else {
                    vec![(n, regular, d)]
                }
            }),
        ),
        (
            "hardlink",
            Box::new(move |n, d| {
                if n == "rootfs-diff.tar" {
                    vec![(n, tar::EntryType::Link, vec![])]
                } else {
                    vec![(n, regular, d)]
                }
            }),
        ),
        (
            "nested",
            Box::new(move |n, d| {
                let n = if n == "checkpoint/core-1.img" {
                    "checkpoint/x/core-1.img".to_string()
                } else {
                    n
                };
                vec![(n, regular, d)]
            }),
        ),
        (
            "flipped byte",
            Box::new(move |n, mut d| {
                if n == "checkpoint/pages-1.img" {
                    d[1000] ^= 1;
                }
                vec![(n, regular, d)]
            }),
        ),
        (
            "duplicate",
            Box::new(move |n, d| {
                if n == "checkpoint/core-1.img" {
                    vec![(n.clone(), regular, d.clone()), (n, regular, d)]
                } else {
                    vec![(n, regular, d)]
                }
            }),
        ),
        (
            "missing file",
            Box::new(move |n, d| {
                if n == "checkpoint/core-1.img" {
                    vec![]
                } else {
                    vec![(n, regular, d)]
                }
            }),
        ),
        (
            "manifest not first",
            Box::new(move |n, d| {
                if n == ARCH_MANIFEST {
                    vec![]
                } else {
                    vec![(n, regular, d)]
                }
            }),
        ),
        (
            "deleted files",
            Box::new(move |n, d| {
                if n == DELETED_FILES {
                    vec![(n, regular, b"[\"/etc/passwd\"]".to_vec())]
                } else {
                    vec![(n, regular, d)]
                }
            }),
        ),
    ];
    for (what, edit) in cases {
        let msg = refused(rewritten(&archive, edit), what);
        let expect = match what {
            "traversal" | "absolute" => "not a plain relative path",
            "symlink" | "hardlink" => "only regular files",
            "nested" => "not a file of a checkpoint archive",
            "flipped byte" => "sha256 differs",
            "duplicate" => "a second entry",
            "missing file" => "not in the archive",
            "manifest not first" => "not an ARCH archive",
            _ => "not supported",
        };
        assert!(msg.contains(expect), "{what}: {msg}");
    }
}

fn signed(root: &Path, key: u8, allow_unsigned: bool) -> ImageStore {
    ImageStore::new(root).with_trust(arch_image::Trust {
        key: Some(std::sync::Arc::new(
            arch_image::SigningKey::from_bytes(&[key; 32]).unwrap(),
        )),
        allow_unsigned,
    })
}

fn export_of(image: &Image) -> Vec<u8> {
    let mut out = Vec::new();
    export(image, &mut out, 1).unwrap();
    out
}

/// Issue 16 §2: an archive carries the image's signature; an importing host
/// with the fleet key verifies it before anything lands.
#[test]
fn a_signed_image_imports_only_where_its_signature_verifies() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let archive = export_of(&image_in(&signed(a.path(), 1, false), "job"));
    let import_into = |store: &ImageStore, archive: &[u8]| {
        import(
            store,
            archive,
            &Default::default(),
            &Default::default(),
            None,
        )
    };

    let other_key = import_into(&signed(b.path(), 2, false), &archive).unwrap_err();
    assert!(
        matches!(other_key, ArchiveError::Signature(_)),
        "{other_key}"
    );
    assert!(
        other_key.to_string().contains("signed with key"),
        "{other_key}"
    );
    assert!(leftovers(b.path()).is_empty());

    let forged = rewritten(&archive, |n, mut d| {
        if n == ARCH_MANIFEST {
            let text = String::from_utf8(d).unwrap();
            d = text.replacen("\"c1\"", "\"c2\"", 1).into_bytes();
        }
        vec![(n, tar::EntryType::Regular, d)]
    });
    let e = import_into(&signed(b.path(), 1, false), &forged).unwrap_err();
    assert!(
        e.to_string().contains("does not match its signature"),
        "{e}"
    );
    assert!(leftovers(b.path()).is_empty());

    let unsigned = rewritten(&archive, |n, d| {
        if n == ARCH_SIGNATURE {
            vec![]
        } else {
            vec![(n, tar::EntryType::Regular, d)]
        }
    });
    let e = import_into(&signed(b.path(), 1, false), &unsigned).unwrap_err();
    assert!(
        matches!(e, ArchiveError::Signature(arch_image::Error::Unsigned)),
        "{e}"
    );
    import_into(&signed(b.path(), 1, true), &unsigned).expect("unsigned allowed by choice");
    let vouched = ImportTarget {
        key: Some("vouched".into()),
        skip_signature: true,
        ..Default::default()
    };
    import(
        &signed(b.path(), 2, false),
        &archive[..],
        &vouched,
        &Default::default(),
        None,
    )
    .expect("another host's signature, vouched for by the operator");
    signed(b.path(), 2, false)
        .open("ns", "vouched")
        .expect("re-signed with this host's key");

    let c = tempfile::tempdir().unwrap();
    let imported = import_into(&signed(c.path(), 1, false), &archive).unwrap();
    assert_eq!(imported.manifest().container_id, "c1");
    signed(c.path(), 1, false)
        .open("ns", "job")
        .expect("re-signed on commit");
}

/// A plain tar as the kubelet (through CRI-O) writes a checkpoint archive.
fn cri_o_archive(extra: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    b.append_data(&mut dir, "checkpoint/", std::io::empty())
        .unwrap();
    let files: Vec<(&str, tar::EntryType, &[u8])> = vec![
        (
            "config.dump",
            tar::EntryType::Regular,
            br#"{"id":"abc123","name":"counter"}"#,
        ),
        (
            "spec.dump",
            tar::EntryType::Regular,
            br#"{"ociVersion":"1.0.2"}"#,
        ),
        ("checkpoint/inventory.img", tar::EntryType::Regular, b"inv"),
        (
            "checkpoint/pages-1.img",
            tar::EntryType::Regular,
            &[9u8; 4096],
        ),
        ("stats-dump", tar::EntryType::Regular, b"{}"),
        ("bind.mounts", tar::EntryType::Regular, b"[]"),
    ];
    for (name, kind, data) in files.into_iter().chain(extra.iter().copied()) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o600);
        h.set_size(data.len() as u64);
        if kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/shadow").unwrap();
            h.set_size(0);
        }
        b.append_data(&mut h, name, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn profile_of(version: &str, id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("{version}-{id}")))
}

fn facts() -> ForeignFacts<'static> {
    ForeignFacts {
        profile: &|spec, id| arch_image::ProfileDigest {
            digest: profile_of(spec["ociVersion"].as_str().unwrap(), id),
            fields: Default::default(),
        },
        arch: "x86_64".into(),
        cgroup_version: CgroupVersion::V1,
        criu_version: "4.1.1".into(),
        kernel: "6.18".into(),
    }
}

fn vouched(key: &str) -> ImportTarget {
    ImportTarget {
        namespace: Some("k8s.io".into()),
        key: Some(key.into()),
        skip_signature: true,
    }
}

/// Issue 16 §2: an archive in the kubelet/CRI-O layout, without ARCH's
/// manifest, imports when the operator vouches for it and names its place.
#[test]
fn a_cri_o_archive_imports_when_vouched_for() {
    let b = tempfile::tempdir().unwrap();
    let store = signed(b.path(), 1, false);
    let archive = cri_o_archive(&[]);
    let not_vouched = ImportTarget {
        skip_signature: false,
        ..vouched("job")
    };
    let e = import(
        &store,
        &archive[..],
        &not_vouched,
        &Default::default(),
        Some(&facts()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("--allow-unsigned"), "{e}");
    assert!(leftovers(b.path()).is_empty());

    let image = import(
        &store,
        &archive[..],
        &vouched("job"),
        &Default::default(),
        Some(&facts()),
    )
    .unwrap();
    let m = image.manifest();
    assert_eq!((m.namespace.as_str(), m.key.as_str()), ("k8s.io", "job"));
    assert_eq!(m.container_id, "abc123");
    assert_eq!(
        m.profile.digest,
        profile_of("1.0.2", "abc123"),
        "the profile of spec.dump's container"
    );
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    for want in [
        "criu/inventory.img",
        "criu/pages-1.img",
        "config.json",
        "rootfs-diff.tar",
    ] {
        assert!(paths.contains(&want), "{want} in {paths:?}");
    }
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("stats") || p.contains("bind")),
        "{paths:?}"
    );
    store
        .open("k8s.io", "job")
        .expect("committed and signed by this host");
}

#[test]
fn hostile_cri_o_archives_land_nothing() {
    let regular = tar::EntryType::Regular;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "symlink",
            cri_o_archive(&[("rootfs-diff.tar", tar::EntryType::Symlink, b"")]),
            "only regular files",
        ),
        (
            "nested",
            cri_o_archive(&[("volumes/data/x", regular, b"x")]),
            "not a file of a checkpoint archive",
        ),
        (
            "deletions",
            cri_o_archive(&[("deleted.files", regular, br#"["/etc/passwd"]"#)]),
            "not supported",
        ),
        (
            "duplicate",
            cri_o_archive(&[("checkpoint/pages-1.img", regular, b"again")]),
            "a second entry",
        ),
    ];
    for (what, archive, expect) in cases {
        let b = tempfile::tempdir().unwrap();
        let e = import(
            &ImageStore::new(b.path()),
            &archive[..],
            &vouched("job"),
            &Default::default(),
            Some(&facts()),
        )
        .map(|_| ())
        .unwrap_err();
        assert!(e.to_string().contains(expect), "{what}: {e}");
        assert!(
            leftovers(b.path()).is_empty(),
            "{what}: {:?}",
            leftovers(b.path())
        );
    }
    // No CRIU inventory: not a checkpoint at all.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o600);
    b.append_data(&mut h, "spec.dump", &b"{}"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o600);
    b.append_data(&mut h, "config.dump", &b"{}"[..]).unwrap();
    let archive = b.into_inner().unwrap();
    let root = tempfile::tempdir().unwrap();
    let e = import(
        &ImageStore::new(root.path()),
        &archive[..],
        &vouched("job"),
        &Default::default(),
        Some(&facts()),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(e.to_string().contains("inventory.img"), "{e}");
    assert!(leftovers(root.path()).is_empty());
}

/// Issue 14 §4: an image with pre-dumps (`pre-N/`, whose pages the final
/// dump refers to) travels whole, and imports verified.
#[test]
fn predump_directories_travel_with_the_image() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = ImageStore::new(a.path());
    let staging = store.begin("ns", "pre").unwrap();
    for dir in ["criu", "pre-1", "pre-2"] {
        std::fs::create_dir(staging.path().join(dir)).unwrap();
        std::fs::write(staging.path().join(dir).join("pages-1.img"), dir.as_bytes()).unwrap();
    }
    std::fs::write(staging.path().join("rootfs-diff.tar"), vec![0u8; 1024]).unwrap();
    std::fs::write(staging.path().join("config.json"), b"{}").unwrap();
    let info = image(a.path(), "job").manifest().clone();
    let original = staging
        .commit(CommitInfo {
            container_id: info.container_id,
            durations_ms: Default::default(),
            criu_version: info.criu_version,
            kernel: info.kernel,
            arch: info.arch,
            cgroup_version: info.cgroup_version,
            profile: info.profile,
        })
        .unwrap();
    let mut out = Vec::new();
    export(&original, &mut out, 3).unwrap();
    let imported = import(
        &ImageStore::new(b.path()),
        &out[..],
        &Default::default(),
        &Default::default(),
        None,
    )
    .unwrap();
    assert_eq!(imported.manifest().files, original.manifest().files);
    let copied = std::fs::read(imported.dir().join("pre-2/pages-1.img")).unwrap();
    assert_eq!(copied, b"pre-2");
}
