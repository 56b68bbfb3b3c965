//! The restore side: answers CRIU's requests on `streamer-serve.sock` from
//! a store a capture filled, one worker thread per file.
//!
//! CRIU must never read bad bytes, and a pipe has no way to say "error":
//! its EOF reads as the end of the file, and a protobuf image cut at an
//! entry boundary would pass as a shorter one. So each file is checked in
//! full first (stored size and sha256, then decoded: original size and
//! sha256) before its first byte goes to CRIU; a file that fails gets an
//! empty pipe (CRIU's magic check fails on it) and the connection is
//! closed, so CRIU's next request fails too. The file is then decoded
//! again into the pipe, its stored bytes hashed again (decoding is
//! deterministic), and its last chunk is held back until that second
//! digest matched too (the store is private, so a mismatch there means
//! the disk changed under us). With codec `none` the stored bytes are the
//! original ones and one digest serves both. `finish` returns the
//! first error: the caller must then treat the restore as failed (and kill
//! CRIU if it is still running), whatever CRIU says.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::chunks::OwnedWrite;
use crate::codec::{self, Codec, Source};
use crate::crypt::Opened;
use crate::error::{Result, StreamError};
use crate::failure::Failure;
use crate::hash_behind::hashed_behind;
use crate::hashing::{Counted, HashingReader, OriginalDigest};
use crate::listener::{wait_readable, Socket};
use crate::record::FileRecord;
use crate::store::{valid_name, Store};
use crate::{pipe, wire};

/// What CRIU asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServeReport {
    /// Files sent in full, in the order CRIU asked.
    pub served: Vec<String>,
    /// Files CRIU asked for that the capture does not have (answered "no").
    pub absent: Vec<String>,
}

pub struct Serve {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<ServeReport>>,
}

struct Shared {
    store: Arc<dyn Store>,
    failure: Failure,
}

impl Shared {
    fn fail(&self, e: StreamError) {
        self.failure.fail(e);
    }
}

impl Serve {
    /// Binds `images_dir/streamer-serve.sock` (CRIU's `-D`) and serves the
    /// files `records` list from `store`.
    pub fn start(
        images_dir: &Path,
        store: Arc<dyn Store>,
        records: Vec<FileRecord>,
    ) -> Result<Self> {
        let socket = Socket::bind(images_dir, wire::SERVE_SOCKET)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let shared = Arc::new(Shared {
            store,
            failure: Failure::default(),
        });
        let by_name: HashMap<String, FileRecord> =
            records.into_iter().map(|r| (r.name.clone(), r)).collect();
        let thread = thread::Builder::new()
            .name("imgstream-serve".into())
            .spawn(move || run(socket, &stop2, shared, by_name))
            .map_err(StreamError::Socket)?;
        Ok(Serve { stop, thread })
    }

    /// Call once CRIU has exited.
    pub fn finish(self) -> Result<ServeReport> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .map_err(|_| StreamError::Panicked("the serve".into()))?
    }
}

fn run(
    socket: Socket,
    stop: &AtomicBool,
    shared: Arc<Shared>,
    records: HashMap<String, FileRecord>,
) -> Result<ServeReport> {
    let mut report = ServeReport::default();
    let Some(mut conn) = socket.accept(stop)? else {
        return Err(StreamError::NoConnection);
    };
    let mut workers = Vec::new();
    loop {
        match wait_readable(&conn, stop, &shared.failure.flag) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                shared.fail(e);
                break;
            }
        }
        let name = match wire::read_request(&mut conn) {
            Ok(Some(r)) => r.filename,
            Ok(None) => break,
            Err(e) => {
                shared.fail(e);
                break;
            }
        };
        let Some(rec) = records.get(&name).filter(|_| valid_name(&name)) else {
            report.absent.push(name);
            if let Err(e) = wire::write_reply(&mut conn, false) {
                shared.fail(e);
                break;
            }
            continue;
        };
        let pipe = wire::write_reply(&mut conn, true).and_then(|_| wire::recv_pipe(&conn));
        let pipe = match pipe {
            Ok(p) => p,
            Err(e) => {
                shared.fail(e);
                break;
            }
        };
        let (rec, sh) = (rec.clone(), shared.clone());
        let w = thread::Builder::new()
            .name(format!("imgstream-serve-{}", workers.len()))
            .spawn(move || {
                serve_file(&rec, pipe, sh.store.as_ref())
                    .map_err(|e| sh.fail(e))
                    .is_ok()
            });
        match w {
            Ok(w) => workers.push((name, w)),
            Err(e) => {
                shared.fail(StreamError::Socket(e));
                break;
            }
        }
    }
    drop(conn);
    drop(socket);
    for (name, w) in workers {
        match w.join() {
            Ok(true) => report.served.push(name),
            Ok(false) => {}
            Err(_) => shared.fail(StreamError::Panicked(name)),
        }
    }
    let first = shared.failure.take();
    match first {
        None => Ok(report),
        Some(e) => Err(e),
    }
}

fn serve_file(rec: &FileRecord, pipe_fd: OwnedFd, store: &dyn Store) -> Result<()> {
    let name = rec.name.as_str();
    let codec =
        codec::from_record(&rec.codec, rec.level).ok_or_else(|| StreamError::UnknownCodec {
            name: name.into(),
            codec: rec.codec.clone(),
        })?;
    if rec.encryption.is_some() {
        // Only the shim's decoded private copy (decode_verified) holds
        // the key; this server is for a CRIU whose RPC can stream.
        return Err(StreamError::Crypt {
            name: name.into(),
            source: io::Error::other("an encrypted file is not served over the streamer socket"),
        });
    }
    let mut file = store
        .open(&rec.stored_name)
        .map_err(|source| StreamError::Store {
            name: name.into(),
            source,
        })?;
    // Stored bytes are the original ones: one digest covers both.
    let plain = codec == Codec::None;
    if plain {
        check_plain_record(rec)?;
    }
    // First pass: nothing reaches CRIU before the whole file checked out.
    let (stored, original) = decode(
        &mut file,
        codec,
        None,
        name,
        &mut io::sink(),
        (!plain).then(Counted::new),
        true,
    )?;
    check_stored(rec, stored)?;
    if let Some(original) = original {
        check_original(rec, original)?;
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|source| StreamError::Store {
            name: name.into(),
            source,
        })?;
    pipe::enlarge(&pipe_fd);
    let mut out = HoldLast::new(File::from(pipe_fd));
    // Second pass: decoding is deterministic, so the same stored bytes give
    // the original bytes pass one checked; only the stored ones are hashed.
    let (stored, _) = decode(&mut file, codec, None, name, &mut out, None, true)?;
    if check_stored(rec, stored).is_err() {
        return Err(StreamError::Changed { name: name.into() });
    }
    out.release().map_err(|source| StreamError::PipeWrite {
        name: name.into(),
        source,
    })
}

/// Decodes the stored file `file` of `rec` into `out` in one pass and
/// checks the decoded bytes (size, sha256) and the stored size; a damaged
/// file is named by its stored digest when that differs too. For
/// a restore that reads decoded files by name (CRIU's RPC cannot stream):
/// `out` must be private to the caller, and discarded on an error, since
/// the bytes are written before the end is checked.
///
/// An encrypted file (`rec.encryption`) needs `key` and its `identity`
/// ([`crate::identity`]); its tags are checked as it is read, the final
/// one before this returns, as well as the stored digest.
pub fn decode_verified(
    rec: &FileRecord,
    file: &mut File,
    out: &mut impl OwnedWrite,
    crypt: Option<(&arch_imgcrypt::Key, &str)>,
) -> Result<()> {
    let name = rec.name.as_str();
    let (codec, crypt) = decoding(rec, crypt)?;
    // One digest per byte, taken on a thread of its own (hash_behind.rs):
    // the original digest proves what CRIU will read; a plain file's stored
    // bytes are its original ones (`decoding` checked the record agrees
    // with itself), and otherwise the stored bytes are only hashed again to
    // name the cause of a failure.
    let digest = OriginalDigest::for_record(rec, crypt);
    let checked = hashed_behind(name, out, digest, |mut to_hasher| {
        decode(file, codec, crypt, name, &mut to_hasher, None, false)
    })
    .and_then(|((stored, _), original)| {
        check_stored(rec, stored)?;
        check_original(rec, original)
    });
    if let Err(e) = checked {
        // Damaged stored bytes make the decoder fail first, or the
        // original digest: name the cause (the stored size or digest)
        // when it is that.
        return Err(match e {
            StreamError::Decompress { .. } | StreamError::OriginalDigest { .. } => {
                stored_cause(rec, file).unwrap_or(e)
            }
            e => e,
        });
    }
    out.flush().map_err(|source| StreamError::Store {
        name: name.into(),
        source,
    })
}

/// Decodes `rec`'s stored file into `out` like [`decode_verified`], but
/// takes no digest: only the stored and decoded sizes are checked (and an
/// encrypted file's tags, which the cipher checks as it reads). For a file
/// whose decoded copy the caller hashes later against
/// `rec.original_sha256`, before anything uses what it holds (the shim's
/// CRIU page images, checked while CRIU restores and before the restored
/// tree runs).
pub fn decode_unhashed(
    rec: &FileRecord,
    file: &mut File,
    out: &mut impl Write,
    crypt: Option<(&arch_imgcrypt::Key, &str)>,
) -> Result<()> {
    let name = rec.name.as_str();
    let (codec, crypt) = decoding(rec, crypt)?;
    let counted = Some(Counted::size_only());
    let (stored, original) = decode(file, codec, crypt, name, out, counted, false)?;
    check_stored(rec, stored)?;
    let found = original.map_or(0, |o| o.size);
    if found != rec.original_size {
        return Err(StreamError::OriginalSize {
            name: name.into(),
            expected: rec.original_size,
            found,
        });
    }
    out.flush().map_err(|source| StreamError::Store {
        name: name.into(),
        source,
    })
}

/// How `rec` is decoded: its codec, and the key and identity its cipher
/// needs (an encrypted file without a key is refused here, and so is a
/// plain file whose record gives it two sizes or two digests).
fn decoding<'k>(
    rec: &FileRecord,
    crypt: Option<(&'k arch_imgcrypt::Key, &'k str)>,
) -> Result<(Codec, Option<(&'k arch_imgcrypt::Key, &'k str)>)> {
    let name = rec.name.as_str();
    let crypt = match (&rec.encryption, crypt) {
        (None, _) => None,
        (Some(_), Some(c)) => Some(c),
        (Some(e), None) => {
            return Err(StreamError::Crypt {
                name: name.into(),
                source: io::Error::other(format!(
                    "encrypted with key id {}, and no key was given",
                    e.key_id
                )),
            })
        }
    };
    let codec =
        codec::from_record(&rec.codec, rec.level).ok_or_else(|| StreamError::UnknownCodec {
            name: name.into(),
            codec: rec.codec.clone(),
        })?;
    if codec == Codec::None && crypt.is_none() {
        check_plain_record(rec)?;
    }
    Ok((codec, crypt))
}

/// The stored file's own mismatch with its record, if it has one.
fn stored_cause(rec: &FileRecord, file: &mut File) -> Option<StreamError> {
    file.seek(SeekFrom::Start(0)).ok()?;
    let mut r = HashingReader::new(&mut *file);
    io::copy(&mut r, &mut io::sink()).ok()?;
    check_stored(rec, r.count).err()
}

/// Decodes `file` into `out`; returns the stored count, and the decoded
/// bytes counted into `original` when given one (`Counted::new` hashes
/// them, `Counted::size_only` only counts).
fn decode(
    file: &mut File,
    codec: Codec,
    crypt: Option<(&arch_imgcrypt::Key, &str)>,
    name: &str,
    out: &mut impl Write,
    original: Option<Counted>,
    hash_stored: bool,
) -> Result<(Counted, Option<Counted>)> {
    let dec_err = |source| StreamError::Decompress {
        name: name.into(),
        source,
    };
    let crypt_err = |source| StreamError::Crypt {
        name: name.into(),
        source,
    };
    let stored = match hash_stored {
        true => Counted::new(),
        false => Counted::size_only(),
    };
    let opened = Opened::new(HashingReader::with(&mut *file, stored), crypt).map_err(crypt_err)?;
    let mut src = Source::new(codec, opened).map_err(dec_err)?;
    let mut original = original;
    let mut buf = vec![0u8; pipe::CHUNK];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The cipher's fault (a failed tag) is the cause, not zstd's.
            Err(e) if arch_imgcrypt::Error::of(&e).is_some() => return Err(crypt_err(e)),
            Err(e) => return Err(dec_err(e)),
        };
        if let Some(o) = original.as_mut() {
            o.update(&buf[..n]);
        }
        out.write_all(&buf[..n])
            .map_err(|source| StreamError::PipeWrite {
                name: name.into(),
                source,
            })?;
    }
    // Bytes after the last frame still count for the stored digest; an
    // encrypted file is read to its authenticated final chunk.
    let mut rest = src.into_inner().drain().map_err(crypt_err)?;
    io::copy(&mut rest, &mut io::sink()).map_err(|source| StreamError::Store {
        name: name.into(),
        source,
    })?;
    Ok((rest.count, original))
}

/// A file stored as it was (no codec, no cipher) has one digest and one
/// size: a record that says otherwise is refused before any byte is read.
fn check_plain_record(rec: &FileRecord) -> Result<()> {
    if rec.original_sha256 != rec.stored_sha256 || rec.original_size != rec.stored_size {
        return Err(StreamError::OriginalDigest {
            name: rec.name.clone(),
            expected: rec.original_sha256.clone(),
            found: rec.stored_sha256.clone(),
        });
    }
    Ok(())
}

fn check_stored(rec: &FileRecord, stored: Counted) -> Result<()> {
    let name = rec.name.clone();
    if stored.size != rec.stored_size {
        return Err(StreamError::StoredSize {
            name,
            expected: rec.stored_size,
            found: stored.size,
        });
    }
    if !stored.hashed() {
        return Ok(());
    }
    let found = stored.hex();
    if found != rec.stored_sha256 {
        return Err(StreamError::StoredDigest {
            name,
            expected: rec.stored_sha256.clone(),
            found,
        });
    }
    Ok(())
}

fn check_original(rec: &FileRecord, original: Counted) -> Result<()> {
    let name = rec.name.clone();
    if original.size != rec.original_size {
        return Err(StreamError::OriginalSize {
            name,
            expected: rec.original_size,
            found: original.size,
        });
    }
    let found = original.hex();
    if found != rec.original_sha256 {
        return Err(StreamError::OriginalDigest {
            name,
            expected: rec.original_sha256.clone(),
            found,
        });
    }
    Ok(())
}

/// Writes everything but the last chunk until `release`: a file that fails
/// its second check never reaches CRIU whole.
struct HoldLast<W: Write> {
    inner: W,
    held: Vec<u8>,
}

impl<W: Write> HoldLast<W> {
    fn new(inner: W) -> Self {
        HoldLast {
            inner,
            held: Vec::new(),
        }
    }

    fn release(mut self) -> io::Result<()> {
        self.inner.write_all(&self.held)?;
        self.inner.flush()
    }
}

impl<W: Write> Write for HoldLast<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(&self.held)?;
        self.held.clear();
        self.held.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
