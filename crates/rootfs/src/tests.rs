//! Round trip and hostile-archive tests on tempdirs. Each hostile case
//! asserts the apply fails with the expected error and that a sentinel
//! directory outside the rootfs is untouched.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use crate::*;

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Header with raw name bytes, bypassing the tar crate's `..`/absolute checks.
fn raw_header(name: &str, etype: EntryType, size: u64) -> Header {
    let mut h = Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(etype);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn raw_link(h: &mut Header, target: &str) {
    h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
}

fn archive(entries: Vec<(Header, Vec<u8>)>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (mut h, data) in entries {
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Apply `tar` into `tmp/rootfs` with `tmp/outside/sentinel` present; assert
/// failure and an intact sentinel dir.
fn expect_rejected(tar: &[u8], limits: Limits) -> EntryError {
    let tmp = tempfile::tempdir().unwrap();
    let (root, outside) = (tmp.path().join("rootfs"), tmp.path().join("outside"));
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("sentinel"), b"keep").unwrap();
    symlink(&outside, root.join("link")).unwrap(); // a planted escape route
    let err = apply_diff(tar, &root, limits).unwrap_err();
    let names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["sentinel"], "outside dir changed");
    assert_eq!(fs::read(outside.join("sentinel")).unwrap(), b"keep");
    match err {
        Error::Entry { kind, .. } => kind,
        other => panic!("expected entry error, got {other}"),
    }
}

#[test]
fn round_trip_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("etc/conf.d")).unwrap();
    fs::write(upper.join("etc/conf.d/a.conf"), b"alpha").unwrap();
    fs::write(upper.join("data.bin"), vec![3u8; 70_000]).unwrap();
    fs::set_permissions(upper.join("data.bin"), fs::Permissions::from_mode(0o751)).unwrap();
    fs::hard_link(upper.join("data.bin"), upper.join("etc/data-link")).unwrap();
    symlink("/etc/passwd", upper.join("abs-link")).unwrap();
    symlink("conf.d/a.conf", upper.join("etc/rel-link")).unwrap();
    let long = "d".repeat(120);
    fs::create_dir_all(upper.join(&long).join(&long)).unwrap();
    fs::write(upper.join(&long).join(&long).join("f"), b"deep").unwrap();
    let c = std::ffi::CString::new(upper.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: valid path string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0);
    let mut tar = Vec::new();
    let ws = write_diff(&upper, &mut tar).unwrap();
    assert_eq!(
        (ws.files, ws.hardlinks, ws.symlinks, ws.fifos),
        (3, 1, 2, 1)
    );
    assert_eq!(ws.bytes, 70_000 + 5 + 4);

    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let st = apply_diff(tar.as_slice(), &dest, Limits::default()).unwrap();
    assert_eq!(
        (st.files, st.hardlinks, st.symlinks, st.fifos, st.bytes),
        (3, 1, 2, 1, ws.bytes)
    );
    assert_eq!(fs::read(dest.join("etc/conf.d/a.conf")).unwrap(), b"alpha");
    assert_eq!(
        fs::read(dest.join(&long).join(&long).join("f")).unwrap(),
        b"deep"
    );
    assert_eq!(
        fs::read_link(dest.join("abs-link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(dest.join("etc/rel-link")).unwrap(),
        Path::new("conf.d/a.conf")
    );
    let (a, b) = (
        fs::metadata(dest.join("data.bin")).unwrap(),
        fs::metadata(dest.join("etc/data-link")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hardlink preserved");
    assert_eq!(a.mode() & 0o7777, 0o751);
    let src = fs::metadata(upper.join("data.bin")).unwrap();
    assert_eq!(
        (a.mtime(), a.uid(), a.gid()),
        (src.mtime(), src.uid(), src.gid())
    );
    assert_eq!(
        fs::metadata(dest.join("etc")).unwrap().mtime(),
        fs::metadata(upper.join("etc")).unwrap().mtime()
    );
    assert!(fs::symlink_metadata(dest.join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo_like());
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn whiteouts_and_opaque_dirs() {
    if !is_root() {
        println!("skipping whiteouts_and_opaque_dirs: mknod 0:0 needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("opq")).unwrap();
    fs::write(upper.join("opq/new"), b"n").unwrap();
    let wh = std::ffi::CString::new(upper.join("gone").to_str().unwrap()).unwrap();
    // SAFETY: valid path; char device 0:0 is overlay's whiteout.
    assert_eq!(
        unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR | 0o600, 0) },
        0
    );
    let opq = std::ffi::CString::new(upper.join("opq").to_str().unwrap()).unwrap();
    // SAFETY: valid strings and a 1-byte value.
    let set = unsafe {
        libc::lsetxattr(
            opq.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            c"y".as_ptr().cast(),
            1,
            0,
        )
    };
    let mut tar = Vec::new();
    let ws = write_diff(&upper, &mut tar).unwrap();
    assert_eq!(ws.deletions, 1);

    // "lower" content the diff must delete / hide.
    let dest = tmp.path().join("dest");
    fs::create_dir_all(dest.join("gone/sub")).unwrap();
    fs::create_dir_all(dest.join("opq")).unwrap();
    fs::write(dest.join("opq/old"), b"o").unwrap();
    let st = apply_diff(tar.as_slice(), &dest, Limits::default()).unwrap();
    assert_eq!(st.deletions, 1);
    assert!(!dest.join("gone").exists());
    assert_eq!(fs::read(dest.join("opq/new")).unwrap(), b"n");
    if set == 0 {
        assert_eq!(ws.opaque_dirs, 1);
        assert!(!dest.join("opq/old").exists(), "opaque dir cleared");
    } else {
        println!("trusted xattrs unsupported here; opaque part skipped");
    }
}

#[test]
fn sockets_skipped_and_reserved_names_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir(&upper).unwrap();
    let _l = std::os::unix::net::UnixListener::bind(upper.join("sock")).unwrap();
    let ws = write_diff(&upper, std::io::sink()).unwrap();
    assert_eq!(ws.skipped, [Path::new("sock")]);
    fs::write(upper.join(".wh.sneaky"), b"").unwrap();
    assert!(matches!(
        write_diff(&upper, std::io::sink()),
        Err(Error::ReservedName { .. })
    ));
}

#[test]
fn rejects_parent_and_absolute_paths() {
    let t = archive(vec![(
        raw_header("../outside/evil", EntryType::Regular, 1),
        b"x".to_vec(),
    )]);
    assert!(matches!(
        expect_rejected(&t, Limits::default()),
        EntryError::ParentComponent
    ));
    let t = archive(vec![(
        raw_header("/abs/evil", EntryType::Regular, 1),
        b"x".to_vec(),
    )]);
    assert!(matches!(
        expect_rejected(&t, Limits::default()),
        EntryError::AbsolutePath
    ));
    let t = archive(vec![(
        raw_header("ok/../../x", EntryType::Directory, 0),
        vec![],
    )]);
    assert!(matches!(
        expect_rejected(&t, Limits::default()),
        EntryError::ParentComponent
    ));
}

#[test]
fn rejects_writes_through_symlinks() {
    // The archive itself creates the link, then writes through it.
    let mut l = raw_header("esc", EntryType::Symlink, 0);
    raw_link(&mut l, "../outside");
    let t = archive(vec![
        (l, vec![]),
        (raw_header("esc/evil", EntryType::Regular, 1), b"x".to_vec()),
    ]);
    assert!(matches!(
        expect_rejected(&t, Limits::default()),
        EntryError::ThroughSymlink { .. }
    ));
    // Pre-existing link in the target, and a whiteout through it.
    let t = archive(vec![(
        raw_header("link/evil", EntryType::Regular, 1),
        b"x".to_vec(),
    )]);
    assert!(matches!(
        expect_rejected(&t, Limits::default()),
        EntryError::ThroughSymlink { .. }
    ));
    let t = archive(vec![(
        raw_header("link/.wh.sentinel", EntryType::Regular, 0),
        vec![],
    )]);
    assert!(matches!(
        expect_rejected(&t, Limits::default()),
        EntryError::ThroughSymlink { .. }
    ));
    let t = archive(vec![(
        raw_header("link/.wh..wh..opq", EntryType::Regular, 0),
        vec![],
    )]);
    assert!(matches!(
        expect_rejected(&t, Limits::default()),
        EntryError::ThroughSymlink { .. }
    ));
}

#[test]
fn whiteout_of_symlink_removes_link_only() {
    let t = archive(vec![(
        raw_header(".wh.link", EntryType::Regular, 0),
        vec![],
    )]);
    let tmp = tempfile::tempdir().unwrap();
    let (root, outside) = (tmp.path().join("rootfs"), tmp.path().join("outside"));
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("sentinel"), b"keep").unwrap();
    symlink(&outside, root.join("link")).unwrap();
    assert_eq!(
        apply_diff(t.as_slice(), &root, Limits::default())
            .unwrap()
            .deletions,
        1
    );
    assert!(fs::symlink_metadata(root.join("link")).is_err());
    assert!(outside.join("sentinel").exists());
}

#[test]
fn rejects_escaping_hardlinks() {
    for target in [
        "/etc/passwd",
        "../outside/sentinel",
        "link/sentinel",
        "missing",
    ] {
        let mut h = raw_header("hl", EntryType::Link, 0);
        raw_link(&mut h, target);
        let kind = expect_rejected(&archive(vec![(h, vec![])]), Limits::default());
        assert!(
            matches!(
                kind,
                EntryError::LinkEscapes { .. }
                    | EntryError::ThroughSymlink { .. }
                    | EntryError::LinkTargetInvalid { .. }
            ),
            "{target}: {kind}"
        );
    }
}

#[test]
fn rejects_devices_and_oversize() {
    for et in [EntryType::Char, EntryType::Block] {
        let t = archive(vec![(raw_header("dev", et, 0), vec![])]);
        assert!(matches!(
            expect_rejected(&t, Limits::default()),
            EntryError::DeviceNode
        ));
    }
    // Header claims 1 TiB with no data behind it: refused before reading.
    let t = archive(vec![(
        raw_header("huge", EntryType::Regular, 1 << 40),
        vec![],
    )]);
    assert!(matches!(
        expect_rejected(&t, Limits::default()),
        EntryError::TooLarge { .. }
    ));
    let small = Limits {
        max_entry_size: 10,
        max_total: 15,
        max_entries: 100,
    };
    let f = |n: &str| (raw_header(n, EntryType::Regular, 8), vec![1u8; 8]);
    let t = archive(vec![f("a"), f("b")]);
    assert!(matches!(
        expect_rejected(&t, small),
        EntryError::TotalTooLarge { limit: 15 }
    ));
    let t = archive(vec![f("a"), f("b")]);
    let few = Limits {
        max_entries: 1,
        ..Limits::default()
    };
    assert!(matches!(
        expect_rejected(&t, few),
        EntryError::TooManyEntries { limit: 1 }
    ));
}
