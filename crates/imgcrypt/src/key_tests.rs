use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;

use super::*;

const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A key file owned by whoever runs the test, with `mode`.
fn key_file(dir: &tempfile::TempDir, content: &[u8], mode: u32) -> PathBuf {
    let path = dir.path().join("key");
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn problem(r: Result<Key, Error>) -> KeyFileProblem {
    match r {
        Err(Error::KeyFile { reason, .. }) => reason,
        other => panic!("want a key file error, got {other:?}"),
    }
}

fn expected() -> Key {
    let mut b = [0u8; KEY_LEN];
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8;
    }
    Key::from_bytes(b)
}

#[test]
fn metadata_rules() {
    for mode in [0o600, 0o400, 0o200, 0o000, 0o100600] {
        assert!(check_metadata(true, 0, mode, 0).is_ok(), "{mode:o}");
    }
    for mode in [
        0o644, 0o640, 0o604, 0o660, 0o601, 0o610, 0o700, 0o4600, 0o2600, 0o1600, 0o666,
    ] {
        match check_metadata(true, 0, mode, 0) {
            Err(KeyFileProblem::TooOpen { mode: m }) => assert_eq!(m, mode & 0o7777),
            other => panic!("{mode:o}: {other:?}"),
        }
    }
    assert!(matches!(
        check_metadata(true, 1000, 0o600, 0),
        Err(KeyFileProblem::NotRootOwned { uid: 1000 })
    ));
    assert!(matches!(
        check_metadata(false, 0, 0o600, 0),
        Err(KeyFileProblem::NotRegular)
    ));
}

#[test]
fn good_files_load() {
    let dir = tempfile::tempdir().unwrap();
    for content in [HEX.to_string(), format!("{HEX}\n"), HEX.to_uppercase()] {
        for mode in [0o600, 0o400] {
            let path = key_file(&dir, content.as_bytes(), mode);
            let key = load_owned_by(&path, euid()).unwrap();
            assert_eq!(key.bytes(), expected().bytes(), "{content:?} {mode:o}");
            fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn open_modes_refused() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604, 0o700] {
        let path = key_file(&dir, HEX.as_bytes(), mode);
        match problem(load_owned_by(&path, euid())) {
            KeyFileProblem::TooOpen { mode: m } => assert_eq!(m, mode),
            other => panic!("{mode:o}: {other:?}"),
        }
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn symlink_refused_even_to_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = key_file(&dir, HEX.as_bytes(), 0o600);
    let link = dir.path().join("link");
    symlink(&target, &link).unwrap();
    assert!(matches!(
        problem(load_owned_by(&link, euid())),
        KeyFileProblem::Symlink
    ));
}

#[test]
fn directory_and_fifo_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("d");
    fs::create_dir(&sub).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
    assert!(matches!(
        problem(load_owned_by(&sub, euid())),
        KeyFileProblem::NotRegular
    ));
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Must return (O_NONBLOCK), not wait for a writer.
    assert!(matches!(
        problem(load_owned_by(&fifo, euid())),
        KeyFileProblem::NotRegular
    ));
}

#[test]
fn bad_contents_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = [7u8; 32];
    let cases: Vec<(Vec<u8>, usize)> = vec![
        (vec![], 0),
        (raw.to_vec(), 32),
        (HEX[..63].into(), 63),
        (format!("{}\n", &HEX[..63]).into(), 64),
        (format!("{HEX}0").into(), 65),
        (format!("{HEX}\n\n").into(), 66),
        (format!("{HEX}\r\n").into(), 66),
        (format!("{HEX}{HEX}").into(), 66),
    ];
    for (content, len) in cases {
        let path = key_file(&dir, &content, 0o600);
        match problem(load_owned_by(&path, euid())) {
            KeyFileProblem::BadLength { len: l } => assert_eq!(l, len, "{content:?}"),
            other => panic!("{content:?}: {other:?}"),
        }
        fs::remove_file(&path).unwrap();
    }
    let not_hex = format!("{}g", &HEX[..63]);
    let path = key_file(&dir, not_hex.as_bytes(), 0o600);
    assert!(matches!(
        problem(load_owned_by(&path, euid())),
        KeyFileProblem::NotHex
    ));
}

#[test]
fn missing_file_is_an_io_problem_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent");
    match Key::load(&path) {
        Err(e @ Error::KeyFile { .. }) => {
            assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
            match e {
                Error::KeyFile {
                    reason: KeyFileProblem::Io(io),
                    ..
                } => assert_eq!(io.kind(), std::io::ErrorKind::NotFound),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

/// `Key::load` itself wants root: as root, a file given to another uid is
/// refused; as anyone else, their own file is.
#[test]
fn load_wants_root_ownership() {
    let dir = tempfile::tempdir().unwrap();
    let path = key_file(&dir, HEX.as_bytes(), 0o600);
    let owner = if euid() == 0 {
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        65534
    } else {
        euid()
    };
    match problem(Key::load(&path)) {
        KeyFileProblem::NotRootOwned { uid } => assert_eq!(uid, owner),
        other => panic!("{other:?}"),
    }
    if euid() == 0 {
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        assert_eq!(Key::load(&path).unwrap().id(), expected().id());
    }
}

/// Pinned: manifests record key ids, so the derivation must never change.
#[test]
fn key_id_is_stable_and_parses() {
    let id = expected().id();
    assert_eq!(id.to_string(), PINNED_ID);
    assert_eq!(PINNED_ID.parse::<KeyId>().unwrap(), id);
    assert!("00".parse::<KeyId>().is_err());
    assert_ne!(Key::from_bytes([1; KEY_LEN]).id(), id);
}

// python3: sha256(b"arch-imgcrypt key id v1\0" + bytes(range(32))).hexdigest()[:16]
const PINNED_ID: &str = "c6dc69819e8e0fd6";

#[test]
fn key_id_is_domain_separated() {
    // Not the plain sha256 of the key, which other tools might publish.
    let plain = Sha256::digest(expected().bytes());
    assert_ne!(&plain[..KEY_ID_LEN], &expected().id().0[..]);
}

#[test]
fn debug_never_shows_the_key() {
    let key = expected();
    let shown = format!("{key:?}");
    assert!(!shown.contains(&HEX[..8]), "{shown}");
    assert!(!shown.contains("[0, 1, 2"), "{shown}");
    assert!(shown.contains(&key.id().to_string()), "{shown}");
}
