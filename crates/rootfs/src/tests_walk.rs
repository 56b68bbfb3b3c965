//! The upperdir walk by directory fds (a link swapped in mid-walk gets no
//! outside file into the diff) and the extended attributes it keeps.

use std::ffi::CString;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::write::BEFORE_OPEN;
use crate::*;

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let f = fs::File::open(path).unwrap();
    crate::xattr::set(f.as_fd(), &CString::new(name).unwrap(), value).unwrap();
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let f = fs::File::open(path).unwrap();
    crate::xattr::get_opt(f.as_fd(), &CString::new(name).unwrap()).unwrap()
}

/// `security.capability` granting cap_net_raw (13), effective: the
/// vfs_cap_data v2 layout setcap writes.
fn net_raw_cap() -> Vec<u8> {
    [0x0200_0001u32, 1 << 13, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect()
}

/// Swaps, from the walk's hook, the entry at `rel` for a symlink to `to`.
fn swap_on_open(upper: &Path, rel: &'static str, to: &Path) {
    let (upper, to) = (upper.to_path_buf(), to.to_path_buf());
    BEFORE_OPEN.with(|h| {
        *h.borrow_mut() = Some(Box::new(move |r: &Path| {
            if r == Path::new(rel) {
                let p = upper.join(rel);
                fs::rename(&p, upper.join(format!("{rel}.old"))).unwrap();
                symlink(&to, &p).unwrap();
            }
        }))
    });
}

fn walk_with_swap(rel: &'static str, make: impl Fn(&Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let (upper, outside) = (tmp.path().join("upper"), tmp.path().join("outside"));
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("shadow"), b"host secret").unwrap();
    make(&upper);
    let target = if rel == "f" {
        outside.join("shadow")
    } else {
        outside.clone()
    };
    swap_on_open(&upper, rel, &target);
    let mut tar = Vec::new();
    let res = write_diff(&upper, &mut tar);
    BEFORE_OPEN.with(|h| h.borrow_mut().take());
    let found = tar.windows(11).any(|w| w == b"host secret");
    assert!(!found, "a host file got into the diff");
    match res {
        Err(Error::Changed { path }) => assert_eq!(path, Path::new(rel)),
        other => panic!("expected Changed for {rel}, got {other:?}"),
    }
}

#[test]
fn a_directory_swapped_for_a_link_mid_walk_fails_the_diff() {
    walk_with_swap("d", |upper| {
        fs::create_dir(upper.join("d")).unwrap();
        fs::write(upper.join("d/own"), b"mine").unwrap();
    });
}

#[test]
fn a_file_swapped_for_a_link_mid_walk_fails_the_diff() {
    walk_with_swap("f", |upper| fs::write(upper.join("f"), b"mine").unwrap());
}

#[test]
fn user_and_security_xattrs_round_trip_others_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (upper, root) = (tmp.path().join("upper"), tmp.path().join("rootfs"));
    fs::create_dir_all(upper.join("d")).unwrap();
    fs::create_dir_all(&root).unwrap();
    fs::write(upper.join("d/ping"), b"\x7fELF").unwrap();
    set_xattr(&upper.join("d/ping"), "user.mime", b"app/x");
    set_xattr(&upper.join("d"), "user.dir", b"yes");
    if is_root() {
        set_xattr(&upper.join("d/ping"), "security.capability", &net_raw_cap());
        set_xattr(&upper.join("d"), "trusted.secret", b"kernel's");
    }
    let mut tar = Vec::new();
    let w = write_diff(&upper, &mut tar).unwrap();
    assert_eq!(w.xattrs, if is_root() { 3 } else { 2 });
    let a = apply_diff(tar.as_slice(), &root, Limits::default()).unwrap();
    assert_eq!(a.xattrs, w.xattrs);
    assert_eq!(
        get_xattr(&root.join("d/ping"), "user.mime").unwrap(),
        b"app/x"
    );
    assert_eq!(get_xattr(&root.join("d"), "user.dir").unwrap(), b"yes");
    assert_eq!(fs::read(root.join("d/ping")).unwrap(), b"\x7fELF");
    if is_root() {
        // Set after chown and the content, which would clear it.
        assert_eq!(
            get_xattr(&root.join("d/ping"), "security.capability").unwrap(),
            net_raw_cap()
        );
        assert_eq!(get_xattr(&root.join("d"), "trusted.secret"), None);
    }
}

#[test]
fn an_archive_with_an_xattr_no_diff_keeps_is_refused() {
    for name in [
        "trusted.overlay.opaque",
        "user.overlay.redirect",
        "security.selinux",
    ] {
        let mut b = tar::Builder::new(Vec::new());
        let key = format!("SCHILY.xattr.{name}");
        b.append_pax_extensions([(key.as_str(), b"y".as_slice())])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "d", std::io::empty()).unwrap();
        let tar = b.into_inner().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        match apply_diff(tar.as_slice(), tmp.path(), Limits::default()) {
            Err(Error::Entry {
                kind: EntryError::Xattr(n),
                ..
            }) => assert_eq!(n, name),
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
    }
}
