//! The digests of a restore copy's CRIU page images, taken while CRIU
//! restores instead of before.
//!
//! A restore's verified copy (`Taken::verify_into`) hashes every byte it
//! copies, and for a large memory image that hashing was most of the wait
//! at Create (about 0.7 s per GiB here, one sha256 stream). Page images
//! hold nothing CRIU interprets: they are the bytes it loads into the
//! restored processes' memory. So their copy is written unhashed
//! (sizes and, for an encrypted image, the cipher's tags still checked),
//! and this thread hashes the private copy from the page cache while the
//! container's Start runs CRIU. CRIU's post-restore notify, which comes
//! after the tree is restored and before any restored task runs again,
//! waits for the result; a mismatch fails it, so CRIU kills the tree and
//! the restore falls back as for any other bad image. What CRIU reads is
//! still the private copy, so no other host can change it in between.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use arch_imgstream::OriginalDigest;

use crate::error::{io_err, Error, Result};

/// Page images smaller than this are hashed as they are copied: a thread
/// and a second read cost more than they save.
pub const DEFER_FROM: u64 = 4 << 20;

/// Whether the CRIU image `name` (its file name) of `size` decoded bytes
/// is hashed behind the copy.
pub(crate) fn deferrable(name: &str, size: u64) -> bool {
    name.starts_with("pages-") && name.ends_with(".img") && size >= DEFER_FROM
}

/// One copied file whose digest is still to be checked.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The file in the private copy.
    pub copy: PathBuf,
    /// Its path in the image, for messages.
    pub shown: String,
    pub size: u64,
    /// Its expected digest, and how to take it (keyed for an encrypted
    /// image's file).
    pub sha256: String,
    pub digest: OriginalDigest,
}

/// The files of a copy whose digests are still to be checked.
#[derive(Debug, Default)]
pub struct Deferred {
    pub(crate) pending: Vec<Pending>,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Starts hashing on a thread of its own (none when nothing is pending;
    /// on this thread, now, if no thread can be had).
    pub fn start(self) -> VerifyBehind {
        let cancel = Arc::new(AtomicBool::new(false));
        if self.pending.is_empty() {
            return VerifyBehind::checked(Ok(()));
        }
        let pending = Arc::new(self.pending);
        let (theirs, stop) = (pending.clone(), cancel.clone());
        let spawned = std::thread::Builder::new()
            .name("verify-behind".into())
            .spawn(move || theirs.iter().try_for_each(|p| check(p, &stop)));
        let state = match spawned {
            Ok(handle) => State::Running(handle),
            Err(_) => State::Checked(pending.iter().try_for_each(|p| check(p, &cancel))),
        };
        VerifyBehind {
            state: Some(state),
            cancel,
        }
    }
}

#[derive(Debug)]
enum State {
    Running(JoinHandle<Result<()>>),
    Checked(Result<()>),
}

/// The digests being taken behind a restore copy.
#[derive(Debug)]
pub struct VerifyBehind {
    state: Option<State>,
    cancel: Arc<AtomicBool>,
}

impl VerifyBehind {
    /// Already known: `result`.
    fn checked(result: Result<()>) -> Self {
        VerifyBehind {
            state: Some(State::Checked(result)),
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Waits for the digests: Ok when every file matched its manifest.
    pub fn wait(mut self) -> Result<()> {
        match self.state.take() {
            None => Ok(()),
            Some(State::Checked(result)) => result,
            Some(State::Running(h)) => h.join().unwrap_or_else(|_| {
                Err(Error::UnsafePath {
                    path: "(restore copy)".into(),
                    reason: "the thread checking the memory images panicked",
                })
            }),
        }
    }
}

impl Drop for VerifyBehind {
    /// Not waited for (the restore was abandoned): stop hashing, and
    /// leave no thread reading a copy that is about to be removed.
    fn drop(&mut self) {
        if let Some(State::Running(h)) = self.state.take() {
            self.cancel.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
    }
}

fn check(p: &Pending, cancel: &AtomicBool) -> Result<()> {
    let mut file = std::fs::File::open(&p.copy).map_err(io_err("open", &p.copy))?;
    let mut hash = p.digest.clone();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        let n = file.read(&mut buf).map_err(io_err("read", &p.copy))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
    if size != p.size {
        return Err(Error::SizeMismatch {
            path: p.shown.clone(),
            expected: p.size,
            actual: size,
        });
    }
    let actual = hash.hex();
    if actual != p.sha256 {
        return Err(Error::ChecksumMismatch {
            path: p.shown.clone(),
            expected: p.sha256.clone(),
            actual,
        });
    }
    Ok(())
}
