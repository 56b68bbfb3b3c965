//! The dump side: accepts CRIU's connection on `streamer-capture.sock` and
//! stores each file as it arrives, one worker thread per file (CRIU writes
//! some files interleaved, e.g. pagemap and pages, so one file must never
//! wait for another). Per file: sha256 of the original bytes → codec →
//! sha256 of the stored bytes → a new file in the store, fsync'd.
//!
//! A failure closes that file's pipe and the connection, so CRIU's next
//! write or request breaks and the dump fails; `finish` returns the first
//! error and removes every file this capture created.
//!
//! What the protocol cannot tell: a pipe's EOF is the only end of a file,
//! so CRIU dying mid-file looks like a short file. A capture without
//! `inventory.img` (written last by a dump) fails; past that, the records
//! are only valid together with CRIU's own success (its exit status).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::codec::{Codec, Sink};
use crate::crypt::{Crypt, Sealed, SUFFIX};
use crate::error::{Result, StreamError};
use crate::failure::Failure;
use crate::hash_behind::hashed_behind;
use crate::hashing::{Counted, HashingWriter, OriginalDigest};
use crate::listener::{wait_readable, Socket};
use crate::record::FileRecord;
use crate::store::{valid_name, Store, StoredFile};
use crate::{pipe, wire};

/// The image CRIU writes last in a dump.
const INVENTORY: &str = "inventory.img";

/// A capture in progress. Start it before CRIU, `finish` it after CRIU exited.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Vec<FileRecord>>>,
}

struct Shared {
    store: Arc<dyn Store>,
    codec: Codec,
    /// Set when every file is encrypted after the codec.
    crypt: Option<Crypt>,
    failure: Failure,
    /// Stored names this capture created, for removal on failure.
    created: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, e: StreamError) {
        self.failure.fail(e);
    }
}

impl Capture {
    /// Binds `images_dir/streamer-capture.sock` (CRIU's `-D`) and starts
    /// waiting for CRIU. Stored files go to `store`, which may be another
    /// directory than `images_dir`. With `crypt`, every file is encrypted
    /// after the codec (stored as `{name}{codec suffix}.enc`).
    pub fn start(
        images_dir: &Path,
        store: Arc<dyn Store>,
        codec: Codec,
        crypt: Option<Crypt>,
    ) -> Result<Self> {
        let socket = Socket::bind(images_dir, wire::CAPTURE_SOCKET)?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            store,
            codec,
            crypt,
            failure: Failure::default(),
            created: Mutex::new(Vec::new()),
        });
        let stop2 = stop.clone();
        let thread = thread::Builder::new()
            .name("imgstream-capture".into())
            .spawn(move || run(socket, &stop2, shared))
            .map_err(StreamError::Socket)?;
        Ok(Capture { stop, thread })
    }

    /// Call once CRIU has exited: waits for the connection's end and every
    /// file, then returns the records, in the order CRIU sent the files.
    pub fn finish(self) -> Result<Vec<FileRecord>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .map_err(|_| StreamError::Panicked("the capture".into()))?
    }
}

fn run(socket: Socket, stop: &AtomicBool, shared: Arc<Shared>) -> Result<Vec<FileRecord>> {
    let outcome = serve_connection(&socket, stop, &shared);
    drop(socket);
    match outcome {
        Ok(workers) => {
            let mut records = Vec::with_capacity(workers.len());
            for (name, w) in workers {
                match w.join() {
                    Ok(Some(r)) => records.push(r),
                    Ok(None) => {} // its error is recorded
                    Err(_) => shared.fail(StreamError::Panicked(name)),
                }
            }
            let first = shared.failure.take();
            match first {
                // CRIU writes inventory.img after everything else of a
                // dump (cr-dump.c, cr_dump_tasks): without it CRIU died or
                // failed before the end, whatever the pipes' EOFs said.
                None if !records.iter().any(|r| r.name == INVENTORY) => {
                    Err(cleanup(&shared, StreamError::Incomplete))
                }
                None => match shared.store.sync_dir() {
                    Ok(()) => Ok(records),
                    Err(source) => Err(cleanup(
                        &shared,
                        StreamError::Store {
                            name: ".".into(),
                            source,
                        },
                    )),
                },
                Some(e) => Err(cleanup(&shared, e)),
            }
        }
        Err(e) => Err(cleanup(&shared, e)),
    }
}

/// Reads requests until CRIU closes the connection; returns the workers.
fn serve_connection(
    socket: &Socket,
    stop: &AtomicBool,
    shared: &Arc<Shared>,
) -> Result<Vec<(String, JoinHandle<Option<FileRecord>>)>> {
    let mut workers = Vec::new();
    let Some(mut conn) = socket.accept(stop)? else {
        return Err(StreamError::NoConnection);
    };
    let mut seen = HashSet::new();
    let result = loop {
        // A worker's failure ends the connection: CRIU's next request or
        // write then fails instead of dumping into a capture already lost.
        // Errors break out (never `?`): the workers already started must be
        // joined before their files are removed.
        match wait_readable(&conn, stop, &shared.failure.flag) {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
        let req = match wire::read_request(&mut conn) {
            Ok(Some(r)) => r,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let name = req.filename;
        if !valid_name(&name) {
            break Err(StreamError::BadName(name));
        }
        if !seen.insert(name.clone()) {
            break Err(StreamError::Duplicate(name));
        }
        let pipe = match wire::recv_pipe(&conn) {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        let sh = shared.clone();
        let n2 = name.clone();
        let w = thread::Builder::new()
            .name(format!("imgstream-{}", workers.len()))
            .spawn(move || {
                // Only the first failure is kept: it is the cause, the
                // others follow from it.
                capture_file(&n2, pipe, &sh).map_err(|e| sh.fail(e)).ok()
            })
            .map_err(StreamError::Socket);
        match w {
            Ok(w) => workers.push((name, w)),
            Err(e) => break Err(e),
        }
    };
    drop(conn);
    if let Err(e) = result {
        shared.fail(e);
    }
    Ok(workers)
}

fn capture_file(name: &str, pipe_fd: OwnedFd, shared: &Shared) -> Result<FileRecord> {
    pipe::enlarge(&pipe_fd);
    let file = |stored_name: &str| {
        let file = shared.store.create(stored_name)?;
        shared
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stored_name.to_string());
        Ok(file)
    };
    let pipe = File::from(pipe_fd);
    // Another file failed: stop reading, so CRIU's writes break.
    let abandoned = || shared.failure.failed();
    store_file(
        name,
        pipe,
        file,
        shared.codec,
        shared.crypt.as_ref(),
        abandoned,
    )
}

/// Stores file `name`, read from `src` to its end, as a capture does:
/// the digest of the original bytes (sha256, keyed if encrypted), the
/// codec, the cipher if any, sha256 of the stored bytes, into a new file
/// `create` makes under the stored name, fsync'd. `abandoned` is asked
/// before each chunk. Public for tests and tools that make streamed images
/// without CRIU: the same code path.
pub fn store_file(
    name: &str,
    mut src: impl Read,
    create: impl FnOnce(&str) -> io::Result<Box<dyn StoredFile>>,
    codec: Codec,
    crypt: Option<&Crypt>,
    abandoned: impl Fn() -> bool,
) -> Result<FileRecord> {
    let mut stored_name = codec.stored_name(name);
    if crypt.is_some() {
        stored_name.push_str(SUFFIX);
    }
    let identity = crypt.map(|c| c.identity(name));
    let store_err = |source| StreamError::Store {
        name: name.to_string(),
        source,
    };
    let file = create(&stored_name).map_err(store_err)?;
    let crypt_err = |source| StreamError::Crypt {
        name: name.to_string(),
        source,
    };
    // The stored digest hashes what reaches the file: the ciphertext. A
    // plain file's stored bytes are its original ones: one digest for both.
    let plain = codec == Codec::None && crypt.is_none();
    let stored_count = match plain {
        true => Counted::size_only(),
        false => Counted::new(),
    };
    let sealed = Sealed::new(
        HashingWriter::with(file, stored_count),
        crypt.map(|c| (&*c.key, identity.as_deref().unwrap_or_default())),
    )
    .map_err(crypt_err)?;
    let mut sink = Sink::new(codec, sealed).map_err(|source| StreamError::Compress {
        name: name.to_string(),
        source,
    })?;
    // The original digest of a large file is taken on a thread of its own
    // (hash_behind.rs), beside the compression and the stored digest; the
    // writes stay here, so a full disk breaks CRIU's writes as it happens.
    // Keyed when encrypted: a plain digest of the plaintext would let a
    // reader of the store confirm a guess of a whole file.
    let digest = OriginalDigest::for_writing(
        crypt.map(|c| (&*c.key, identity.as_deref().unwrap_or_default())),
    );
    let ((), original) = hashed_behind(name, &mut io::sink(), digest, |to_hasher| {
        let mut buf = vec![0u8; pipe::CHUNK];
        loop {
            if abandoned() {
                return Err(StreamError::Protocol(format!(
                    "{name}: abandoned after another file failed"
                )));
            }
            let n = match src.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(StreamError::PipeRead {
                        name: name.to_string(),
                        source,
                    })
                }
            };
            sink.write_all(&buf[..n]).map_err(store_err)?;
            to_hasher.write_all(&buf[..n]).map_err(store_err)?;
        }
    })?;
    drop(src);
    let sealed = sink.finish().map_err(store_err)?;
    let (mut file, stored) = sealed.finish().map_err(store_err)?.into_parts();
    file.sync_all().map_err(store_err)?;
    let (original_size, stored_size) = (original.size, stored.size);
    let original_sha256 = original.hex();
    Ok(FileRecord {
        name: name.to_string(),
        stored_name,
        original_size,
        stored_sha256: match stored.hashed() {
            true => stored.hex(),
            false => original_sha256.clone(),
        },
        original_sha256,
        stored_size,
        codec: codec.name().to_string(),
        level: codec.level(),
        encryption: crypt.map(Crypt::record),
    })
}

/// Removes what this capture stored: nothing half-written stays behind.
fn cleanup(shared: &Shared, e: StreamError) -> StreamError {
    let created = std::mem::take(&mut *shared.created.lock().unwrap_or_else(|p| p.into_inner()));
    for n in created {
        if let Err(err) = shared.store.remove(&n) {
            log::warn!("imgstream: removing {n} after a failed capture: {err}");
        }
    }
    e
}
