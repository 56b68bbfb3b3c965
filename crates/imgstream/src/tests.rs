//! Capture and serve against a fake CRIU speaking the real socket protocol.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::fake_criu::FakeCriu;
use crate::store::{DirStore, Store, StoredFile};
use crate::wire::{CAPTURE_SOCKET, SERVE_SOCKET};
use crate::{Capture, Codec, FileRecord, Serve, StreamError};

pub(crate) const ZSTD: Codec = Codec::Zstd {
    level: 3,
    threads: 2,
};

pub(crate) fn data(seed: u8, len: usize) -> Vec<u8> {
    // Half compressible, half not: like memory pages.
    let mut x = seed as u32 | 1;
    (0..len)
        .map(|i| {
            if i < len / 2 {
                0
            } else {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            }
        })
        .collect()
}

fn store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(DirStore::open_path(dir).unwrap())
}

pub(crate) fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("inventory.img", data(1, 100)),
        ("pagemap-1.img", data(2, 5000)),
        ("pages-1.img", data(3, 3 << 20)),
    ]
}

/// Captures `files`, the first two interleaved as CRIU does with pagemap and pages.
fn capture(dir: &Path, codec: Codec) -> Vec<FileRecord> {
    capture_with(dir, codec, None)
}

pub(crate) fn capture_with(
    dir: &Path,
    codec: Codec,
    crypt: Option<crate::Crypt>,
) -> Vec<FileRecord> {
    let cap = Capture::start(dir, store(dir), codec, crypt).unwrap();
    let mut criu = FakeCriu::connect(dir, CAPTURE_SOCKET);
    let f = files();
    let mut a = criu.open_write(f[1].0);
    let mut b = criu.open_write(f[2].0);
    for (ca, cb) in f[1].1.chunks(1000).zip(f[2].1.chunks(600_000)) {
        a.write_all(ca).unwrap();
        b.write_all(cb).unwrap();
    }
    b.write_all(&f[2].1[5 * 600_000..]).unwrap();
    drop((a, b));
    criu.open_write(f[0].0).write_all(&f[0].1).unwrap();
    drop(criu);
    cap.finish().unwrap()
}

fn read_back(
    dir: &Path,
    recs: Vec<FileRecord>,
    names: &[&str],
) -> (Vec<Option<Vec<u8>>>, crate::Result<crate::ServeReport>) {
    let serve = Serve::start(dir, store(dir), recs).unwrap();
    let mut criu = FakeCriu::connect(dir, SERVE_SOCKET);
    let got = names
        .iter()
        .map(|n| {
            criu.open_read(n).map(|mut p| {
                let mut v = Vec::new();
                p.read_to_end(&mut v).unwrap();
                v
            })
        })
        .collect();
    drop(criu);
    (got, serve.finish())
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b))
}

#[test]
fn round_trip_both_codecs() {
    for codec in [
        Codec::None,
        ZSTD,
        Codec::Zstd {
            level: 1,
            threads: 1,
        },
    ] {
        let d = tempfile::tempdir().unwrap();
        let recs = capture(d.path(), codec);
        assert_eq!(recs.len(), 3);
        for (name, bytes) in files() {
            let r = recs.iter().find(|r| r.name == name).unwrap();
            assert_eq!(r.original_size, bytes.len() as u64);
            assert_eq!(r.codec, codec.name());
            assert_eq!(r.level, codec.level());
            let on_disk = fs::read(d.path().join(&r.stored_name)).unwrap();
            assert_eq!(on_disk.len() as u64, r.stored_size);
            // Both digests are of the bytes they name, whichever thread took them.
            assert_eq!(r.original_sha256, sha256_hex(&bytes), "{name}");
            assert_eq!(r.stored_sha256, sha256_hex(&on_disk), "{name}");
            if codec == Codec::None {
                assert_eq!(r.stored_sha256, r.original_sha256);
            }
        }
        let pages = recs.iter().find(|r| r.name == "pages-1.img").unwrap();
        if codec != Codec::None {
            assert!(
                pages.stored_size < pages.original_size * 6 / 10,
                "{pages:?}"
            );
        }
        assert!(
            !d.path().join(CAPTURE_SOCKET).exists(),
            "the socket is removed"
        );
        let (got, report) = read_back(
            d.path(),
            recs,
            &["pages-1.img", "inventory.img", "pagemap-1.img"],
        );
        let report = report.unwrap();
        assert_eq!(report.served.len(), 3);
        let f = files();
        assert_eq!(got[0].as_deref(), Some(&f[2].1[..]));
        assert_eq!(got[1].as_deref(), Some(&f[0].1[..]));
        assert_eq!(got[2].as_deref(), Some(&f[1].1[..]));
    }
}

#[test]
fn missing_file_is_answered_no() {
    let d = tempfile::tempdir().unwrap();
    let recs = capture(d.path(), ZSTD);
    let (got, report) = read_back(d.path(), recs, &["ipcns-var-10.img", "inventory.img"]);
    assert!(got[0].is_none());
    assert!(got[1].is_some());
    assert_eq!(report.unwrap().absent, ["ipcns-var-10.img"]);
}

/// A stored file damaged after the capture: CRIU gets an empty pipe, never
/// the damaged bytes, and the serve fails naming the file.
#[test]
fn damaged_stored_files_never_reach_criu() {
    for (codec, damage) in [
        (ZSTD, "flip"),
        (ZSTD, "truncate"),
        (Codec::None, "flip"),
        (Codec::None, "truncate"),
    ] {
        let d = tempfile::tempdir().unwrap();
        let recs = capture(d.path(), codec);
        let r = recs.iter().find(|r| r.name == "pages-1.img").unwrap();
        let path = d.path().join(&r.stored_name);
        let mut b = fs::read(&path).unwrap();
        match damage {
            "flip" => {
                let i = b.len() / 2;
                b[i] ^= 0x40;
            }
            _ => b.truncate(b.len() - 7),
        }
        fs::write(&path, &b).unwrap();
        let (got, report) = read_back(d.path(), recs, &["pages-1.img"]);
        assert_eq!(
            got[0].as_deref(),
            Some(&[][..]),
            "{codec:?} {damage}: CRIU must get nothing"
        );
        let e = report.unwrap_err();
        assert!(
            matches!(
                e,
                StreamError::StoredDigest { .. }
                    | StreamError::StoredSize { .. }
                    | StreamError::Decompress { .. }
            ),
            "{codec:?} {damage}: {e}"
        );
        assert!(e.to_string().contains("pages-1.img"), "{e}");
    }
}

/// A record whose original digest does not match what the stored bytes
/// decode to (a manifest and a store that disagree) is refused too.
#[test]
fn original_digest_is_checked() {
    for codec in [ZSTD, Codec::None] {
        let d = tempfile::tempdir().unwrap();
        let mut recs = capture(d.path(), codec);
        recs.iter_mut()
            .for_each(|r| r.original_sha256 = "00".repeat(32));
        let (got, report) = read_back(d.path(), recs, &["inventory.img"]);
        assert_eq!(got[0].as_deref(), Some(&[][..]), "{codec:?}");
        let e = report.unwrap_err();
        assert!(
            matches!(e, StreamError::OriginalDigest { .. }),
            "{codec:?}: {e}"
        );
    }
}

/// A store that fills up after `room` bytes, as a full disk does.
struct FullDisk {
    inner: DirStore,
    room: usize,
}

struct FullFile {
    inner: Box<dyn StoredFile>,
    room: usize,
}

impl Write for FullFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl StoredFile for FullFile {
    fn sync_all(&mut self) -> io::Result<()> {
        self.inner.sync_all()
    }
}

impl Store for FullDisk {
    fn create(&self, name: &str) -> io::Result<Box<dyn StoredFile>> {
        Ok(Box::new(FullFile {
            inner: self.inner.create(name)?,
            room: self.room,
        }))
    }
    fn open(&self, name: &str) -> io::Result<fs::File> {
        self.inner.open(name)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
}

#[test]
fn full_disk_fails_the_capture_and_breaks_criu_pipe() {
    for codec in [Codec::None, ZSTD] {
        let d = tempfile::tempdir().unwrap();
        let st = Arc::new(FullDisk {
            inner: DirStore::open_path(d.path()).unwrap(),
            room: 64 << 10,
        });
        let cap = Capture::start(d.path(), st, codec, None).unwrap();
        let mut criu = FakeCriu::connect(d.path(), CAPTURE_SOCKET);
        criu.open_write("inventory.img")
            .write_all(b"small")
            .unwrap();
        let mut p = criu.open_write("pages-1.img");
        // zstd with workers keeps whole jobs (several MiB each, a few in
        // flight) before it writes, and zeros hardly reach the store: 64
        // MiB of random bytes, so the store's failure comes while CRIU
        // still writes (48 MiB, half of it zeros, missed 1 run in 12).
        let big = data(9, 128 << 20).split_off(64 << 20);
        let w = p.write_all(&big);
        let Err(broken) = w else {
            panic!("{codec:?}: CRIU wrote all of it; its write must break");
        };
        assert_eq!(
            broken.kind(),
            io::ErrorKind::BrokenPipe,
            "{codec:?}: CRIU's write must break"
        );
        drop((p, criu));
        let e = cap.finish().unwrap_err();
        match &e {
            StreamError::Store { name, source } => {
                assert_eq!(name, "pages-1.img");
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
            other => panic!("{codec:?}: {other}"),
        }
        let left: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "{codec:?}: nothing half-written stays: {left:?}"
        );
    }
}

#[test]
fn connection_cut_before_the_pipe_fails_the_capture() {
    let d = tempfile::tempdir().unwrap();
    let cap = Capture::start(d.path(), store(d.path()), ZSTD, None).unwrap();
    let mut criu = FakeCriu::connect(d.path(), CAPTURE_SOCKET);
    criu.open_write("inventory.img").write_all(b"x").unwrap();
    criu.request("pages-1.img");
    drop(criu);
    assert!(matches!(cap.finish(), Err(StreamError::Protocol(_))));
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
}

#[test]
fn unsafe_and_duplicate_names_fail_the_capture() {
    for names in [&["../escape.img"][..], &["a.img", "a.img"][..]] {
        let d = tempfile::tempdir().unwrap();
        let cap = Capture::start(d.path(), store(d.path()), Codec::None, None).unwrap();
        let mut criu = FakeCriu::connect(d.path(), CAPTURE_SOCKET);
        for n in names {
            // The streamer may already have hung up on the second one.
            criu.request(n);
            let (r, _w) = nix::unistd::pipe().unwrap();
            let raw = [std::os::fd::AsRawFd::as_raw_fd(&r)];
            let _ = nix::sys::socket::sendmsg::<()>(
                std::os::fd::AsRawFd::as_raw_fd(&criu.sock),
                &[io::IoSlice::new(&[0u8])],
                &[nix::sys::socket::ControlMessage::ScmRights(&raw)],
                nix::sys::socket::MsgFlags::empty(),
                None,
            );
        }
        drop(criu);
        let e = cap.finish().unwrap_err();
        assert!(
            matches!(e, StreamError::BadName(_) | StreamError::Duplicate(_)),
            "{names:?}: {e}"
        );
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0, "{names:?}");
    }
}

#[test]
fn criu_that_never_connects() {
    let d = tempfile::tempdir().unwrap();
    let cap = Capture::start(d.path(), store(d.path()), Codec::None, None).unwrap();
    assert!(matches!(cap.finish(), Err(StreamError::NoConnection)));
    let serve = Serve::start(d.path(), store(d.path()), vec![]).unwrap();
    assert!(matches!(serve.finish(), Err(StreamError::NoConnection)));
}

/// CRIU killed before the end of its dump: every pipe ended, but the
/// inventory (written last) never came.
#[test]
fn a_dump_without_inventory_is_incomplete() {
    let d = tempfile::tempdir().unwrap();
    let cap = Capture::start(d.path(), store(d.path()), ZSTD, None).unwrap();
    let mut criu = FakeCriu::connect(d.path(), CAPTURE_SOCKET);
    criu.open_write("pages-1.img")
        .write_all(&data(4, 1 << 20))
        .unwrap();
    drop(criu);
    assert!(matches!(cap.finish(), Err(StreamError::Incomplete)));
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
}

/// The restore's decode into a private copy: what the capture stored
/// decodes to CRIU's bytes; a damaged stored file is refused.
#[test]
fn decode_verified_checks_stored_and_original_bytes() {
    for codec in [ZSTD, Codec::None] {
        let d = tempfile::tempdir().unwrap();
        let recs = capture(d.path(), codec);
        for (name, bytes) in files() {
            let r = recs.iter().find(|r| r.name == name).unwrap();
            let mut f = fs::File::open(d.path().join(&r.stored_name)).unwrap();
            let mut out = Vec::new();
            crate::decode_verified(r, &mut f, &mut out, None).unwrap();
            assert_eq!(out, bytes, "{codec:?} {name}");
        }
        let r = recs.iter().find(|r| r.name == "pages-1.img").unwrap();
        let path = d.path().join(&r.stored_name);
        let mut b = fs::read(&path).unwrap();
        b.truncate(b.len() - 5);
        fs::write(&path, &b).unwrap();
        let e = crate::decode_verified(
            r,
            &mut fs::File::open(&path).unwrap(),
            &mut Vec::new(),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("pages-1.img"), "{codec:?}: {e}");
        // The cause is named, not the decoder's complaint about it.
        assert!(
            matches!(e, StreamError::StoredSize { .. }),
            "{codec:?}: {e}"
        );
        let mut b = fs::read(&path).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
        fs::write(&path, &b).unwrap();
        // Sizes that match the damaged file (both, for a plain file, whose
        // record must agree with itself), so only a digest can tell.
        let r = FileRecord {
            stored_size: b.len() as u64,
            original_size: match codec {
                Codec::None => b.len() as u64,
                _ => r.original_size,
            },
            ..r.clone()
        };
        let e = crate::decode_verified(
            &r,
            &mut fs::File::open(&path).unwrap(),
            &mut Vec::new(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(e, StreamError::StoredDigest { .. }),
            "{codec:?}: {e}"
        );
    }
}
