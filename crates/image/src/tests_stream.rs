//! Format 3: streamed files in the manifest, committed without a second
//! read, decoded into the verified restore copy; format 2 still reads.

use std::fs;

use arch_imgstream::{Codec, FileRecord, Store};
use sha2::{Digest, Sha256};

use crate::tests::info;
use crate::*;

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Past the 4 MiB where a copy's digest moves to a thread of its own, with
/// zero MiBs (holes in the copy) between patterned ones, and a ragged end.
const PAGES_LEN: usize = (9 << 20) + 12345;

fn pages() -> Vec<u8> {
    (0..PAGES_LEN)
        .map(|i| match (i >> 20) % 3 {
            1 => 0,
            _ => (i % 251) as u8 ^ (i >> 20) as u8,
        })
        .collect()
}

/// zstd level 1 on the file's own thread, as the host default.
pub(crate) const ZSTD_1: Codec = Codec::Zstd {
    level: 1,
    threads: 0,
};

/// Stores `data` as CRIU's file `name` in `dir` through the capture's own
/// code; its record.
pub(crate) fn store_in(
    dir: &std::path::Path,
    name: &str,
    data: &[u8],
    codec: Codec,
    crypt: Option<&arch_imgstream::Crypt>,
) -> FileRecord {
    let store = arch_imgstream::DirStore::open_path(dir).unwrap();
    let create = |stored: &str| store.create(stored);
    arch_imgstream::store_file(name, data, create, codec, crypt, || false).unwrap()
}

/// What a capture of `pages-1.img` (zstd) and `inventory.img` (none)
/// leaves in `criu/`, and its records.
fn streamed_files(criu: &std::path::Path) -> Vec<FileRecord> {
    vec![
        store_in(criu, "pages-1.img", &pages(), ZSTD_1, None),
        store_in(criu, "inventory.img", b"inv", Codec::None, None),
    ]
}

fn commit_streamed(store: &ImageStore, edit: impl FnOnce(&mut Vec<FileRecord>)) -> Result<Image> {
    let mut st = store.begin("ns", "k").unwrap();
    fs::create_dir(st.path().join(CRIU_DIR)).unwrap();
    fs::write(st.path().join("criu/dump.log"), b"ok\n").unwrap();
    let mut recs = streamed_files(&st.path().join(CRIU_DIR));
    edit(&mut recs);
    st.add_streamed(&recs);
    st.commit(info())
}

#[test]
fn a_streamed_commit_lists_the_records_and_restores_decoded() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    let img = commit_streamed(&store, |_| {}).unwrap();
    let m = img.manifest();
    // Nothing sealed at the top: a version 3 reader still takes it.
    assert_eq!(m.format_version, 3);
    assert!(m.streamed());
    let e = m
        .files
        .iter()
        .find(|f| f.path == "criu/pages-1.img.zst")
        .unwrap();
    let s = e.stream.as_ref().unwrap();
    assert_eq!((s.codec.as_str(), s.level), ("zstd", Some(1)));
    assert_eq!(s.original_sha256, sha(&pages()));
    assert_eq!(m.streamed_sizes(), (PAGES_LEN as u64 + 3, e.size + 3));
    // The log is not streamed: hashed at commit as before.
    assert!(m
        .files
        .iter()
        .any(|f| f.path == "criu/dump.log" && f.stream.is_none()));
    // The stored image verifies as stored, and its copy is decoded.
    store.open("ns", "k").unwrap();
    let taken = store.take("ns", "k").unwrap();
    let copy = taken.verify_into(&tmp.path().join("copy")).unwrap();
    assert_eq!(
        fs::read(copy.criu_dir().join("pages-1.img")).unwrap(),
        pages()
    );
    assert_eq!(
        fs::read(copy.criu_dir().join("inventory.img")).unwrap(),
        b"inv"
    );
    assert!(!copy.criu_dir().join("pages-1.img.zst").exists());
}

#[test]
fn the_commit_does_not_read_streamed_files_again() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    // A record whose digest is not the file's: listed as recorded (the
    // commit trusted the streamer), so the image then fails verification.
    let img = commit_streamed(&store, |r| r[0].stored_sha256 = "0".repeat(64)).unwrap();
    let e = img
        .manifest()
        .files
        .iter()
        .find(|f| f.path == "criu/pages-1.img.zst")
        .unwrap();
    assert_eq!(e.sha256, "0".repeat(64));
    assert!(matches!(
        store.open("ns", "k").unwrap_err(),
        Error::ChecksumMismatch { .. }
    ));
}

#[test]
fn a_streamed_file_missing_or_resized_fails_the_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    let e = commit_streamed(&store, |r| r[1].stored_name = "gone.img".into()).unwrap_err();
    assert!(matches!(e, Error::MissingFile { .. }), "{e}");
    let e = commit_streamed(&store, |r| r[0].stored_size += 1).unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_damaged_stored_file_fails_the_restore_copy() {
    for damage in ["flip", "truncate"] {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path().join("root"));
        let img = commit_streamed(&store, |_| {}).unwrap();
        let p = img.criu_dir().join("pages-1.img.zst");
        let mut b = fs::read(&p).unwrap();
        match damage {
            "flip" => {
                let i = b.len() / 2;
                b[i] ^= 1
            }
            _ => b.truncate(b.len() - 4),
        }
        fs::write(&p, &b).unwrap();
        let taken = store.take("ns", "k").unwrap();
        let copy = tmp.path().join("copy");
        let e = taken.verify_into(&copy).unwrap_err();
        assert!(matches!(e, Error::Stream { .. }), "{damage}: {e}");
        assert!(e.to_string().contains("pages-1.img"), "{e}");
        assert!(!copy.exists());
    }
}

fn manifest_json(img: &Image) -> serde_json::Value {
    serde_json::from_slice(&fs::read(img.dir().join(MANIFEST)).unwrap()).unwrap()
}

fn parse(v: &serde_json::Value) -> Result<Manifest> {
    Manifest::parse(&serde_json::to_vec(v).unwrap(), std::path::Path::new("/m"))
}

#[test]
fn version_2_reads_and_streamed_entries_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    let img = commit_streamed(&store, |_| {}).unwrap();
    let v3 = manifest_json(&img);
    parse(&v3).unwrap();
    // A version 2 manifest (no streamed entry) still reads.
    let mut v2 = v3.clone();
    v2["format_version"] = 2.into();
    for f in v2["files"].as_array_mut().unwrap() {
        f.as_object_mut().unwrap().remove("stream");
    }
    assert!(!parse(&v2).unwrap().streamed());
    // ... but not with streamed entries, nor version 1.
    let mut bad = v3.clone();
    bad["format_version"] = 2.into();
    assert!(parse(&bad).is_err());
    let mut v1 = v2.clone();
    v1["format_version"] = 1.into();
    assert!(matches!(
        parse(&v1),
        Err(Error::UnsupportedVersion { found: 1, .. })
    ));
    let idx = |v: &serde_json::Value, p: &str| {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .position(|f| f["path"] == p)
            .unwrap()
    };
    let z = idx(&v3, "criu/pages-1.img.zst");
    let n = idx(&v3, "criu/inventory.img");
    for (what, edit) in [
        (
            "zstd without its suffix",
            (z, "path", "criu/pages-1.img".into()),
        ),
        ("outside criu/", (z, "path", "pages-1.img.zst".into())),
        ("unknown codec", (z, "codec", "lz4".into())),
        ("bad original digest", (z, "original_sha256", "xy".into())),
        ("none with other bytes", (n, "original_size", 4.into())),
        ("hidden name", (n, "path", "criu/.inventory.img".into())),
    ] {
        let mut v = v3.clone();
        let (i, field, value): (usize, &str, serde_json::Value) = edit;
        if field == "path" {
            v["files"][i]["path"] = value;
        } else {
            v["files"][i]["stream"][field] = value;
        }
        assert!(parse(&v).is_err(), "{what} accepted");
    }
}

/// A copy whose large page image is checked behind it: the copy succeeds,
/// the digest taken after it refuses the bytes, naming the file.
#[test]
fn a_large_page_image_is_checked_behind_the_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    // The record's original digest is not the bytes': as if the stored
    // file had been replaced by another valid stream of the same size.
    let wrong = sha(b"other memory");
    commit_streamed(&store, |recs| recs[0].original_sha256 = wrong.clone()).unwrap();
    let taken = store.take("ns", "k").unwrap();
    let e = taken.verify_into(&tmp.path().join("now")).unwrap_err();
    assert!(e.to_string().contains("pages-1.img"), "{e}");

    let (copy, deferred) = taken
        .verify_into_deferring(&tmp.path().join("behind"))
        .unwrap();
    assert_eq!(deferred.pending.len(), 1, "only the large page image waits");
    assert_eq!(
        fs::read(copy.criu_dir().join("pages-1.img")).unwrap(),
        pages()
    );
    match deferred.start().wait().unwrap_err() {
        Error::ChecksumMismatch { path, expected, .. } => {
            assert_eq!((path.as_str(), expected), ("criu/pages-1.img.zst", wrong))
        }
        e => panic!("{e}"),
    }
}

#[test]
fn a_good_copy_checks_out_behind_and_small_pages_are_checked_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    commit_streamed(&store, |_| {}).unwrap();
    let taken = store.take("ns", "k").unwrap();
    let (_, deferred) = taken
        .verify_into_deferring(&tmp.path().join("good"))
        .unwrap();
    deferred.start().wait().unwrap();

    // Under DEFER_FROM a page image is hashed as it is copied.
    let small = ImageStore::new(tmp.path().join("small"));
    let mut st = small.begin("ns", "k").unwrap();
    fs::create_dir(st.path().join(CRIU_DIR)).unwrap();
    let mut rec = store_in(
        &st.path().join(CRIU_DIR),
        "pages-1.img",
        &[5u8; 4096],
        ZSTD_1,
        None,
    );
    rec.original_sha256 = sha(b"not these pages");
    st.add_streamed(&[rec]);
    st.commit(info()).unwrap();
    let taken = small.take("ns", "k").unwrap();
    let e = taken
        .verify_into_deferring(&tmp.path().join("s"))
        .unwrap_err();
    assert!(e.to_string().contains("pages-1.img"), "{e}");
}

/// A page image stored as CRIU wrote it (format 2, unstreamed) and changed
/// on disk: copied, then refused behind the copy.
#[test]
fn an_unstreamed_page_image_is_checked_behind_too() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    let st = store.begin("ns", "k").unwrap();
    fs::create_dir(st.path().join(CRIU_DIR)).unwrap();
    fs::write(st.path().join("criu/pages-1.img"), pages()).unwrap();
    fs::write(st.path().join("criu/inventory.img"), b"inv").unwrap();
    let img = st.commit(info()).unwrap();
    let mut changed = pages();
    changed[PAGES_LEN / 2] ^= 1;
    fs::write(img.dir().join("criu/pages-1.img"), changed).unwrap();
    let taken = store.take("ns", "k").unwrap();
    let (_, deferred) = taken.verify_into_deferring(&tmp.path().join("c")).unwrap();
    let e = deferred.start().wait().unwrap_err();
    assert!(
        matches!(e, Error::ChecksumMismatch { ref path, .. } if path == "criu/pages-1.img"),
        "{e}"
    );
}

/// Dropped unwaited (the restore abandoned), the check stops and its
/// thread is gone before the copy is removed.
#[test]
fn an_unwaited_check_is_cancelled_on_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    commit_streamed(&store, |_| {}).unwrap();
    let taken = store.take("ns", "k").unwrap();
    let (_, deferred) = taken.verify_into_deferring(&tmp.path().join("d")).unwrap();
    drop(deferred.start());
    fs::remove_dir_all(tmp.path().join("d")).unwrap();
}

/// A destination that is full, as a tmpfs at its size.
struct Full;

impl std::io::Write for Full {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::StorageFull.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl arch_imgstream::OwnedWrite for Full {}

/// A restore copy that cannot be written is I/O (the shim makes it again
/// elsewhere); a damaged stored file is not, whoever decodes it.
#[test]
fn a_full_destination_is_io_and_a_damaged_file_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = store_in(tmp.path(), "pages-1.img", &pages(), ZSTD_1, None);
    let stored = tmp.path().join(&rec.stored_name);
    let open = || fs::File::open(&stored).unwrap();
    let wrap = |source| Error::Stream {
        path: stored.clone(),
        source,
    };
    let full = arch_imgstream::decode_verified(&rec, &mut open(), &mut Full, None).unwrap_err();
    assert!(wrap(full).is_io());
    let full = arch_imgstream::decode_unhashed(&rec, &mut open(), &mut Full, None).unwrap_err();
    assert!(wrap(full).is_io());
    let mut bytes = fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&stored, &bytes).unwrap();
    let damaged = arch_imgstream::decode_verified(&rec, &mut open(), &mut Vec::new(), None);
    let damaged = wrap(damaged.unwrap_err());
    assert!(!damaged.is_io(), "{damaged}");
}
