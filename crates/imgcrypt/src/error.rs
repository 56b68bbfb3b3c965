//! The crate's typed errors. Stream errors travel inside `io::Error`
//! (the writer and reader implement `Write` and `Read`); [`Error::of`]
//! gets them back out.

use std::io;
use std::path::PathBuf;

use crate::key::KeyId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key file {}: {reason}", path.display())]
    KeyFile {
        path: PathBuf,
        reason: KeyFileProblem,
    },
    /// Read from the header, before any chunk is decrypted: the operator
    /// learns which key the image needs instead of a bare tag failure.
    #[error("image encrypted with key id {image}, host has key id {host}")]
    WrongKey { image: KeyId, host: KeyId },
    #[error("encrypted image header: {0}")]
    BadHeader(HeaderProblem),
    /// The chunk's tag did not verify: its bytes, its position, the header
    /// or the file identity (associated data) differ from what was sealed.
    /// A cut inside a chunk also ends here: it cannot be told apart from a
    /// changed final chunk.
    #[error("encrypted image chunk {chunk} failed authentication (tampered, reordered, cut, or another file's)")]
    Tampered { chunk: u64 },
    /// The stream ended on a chunk that was sealed as not the last one.
    #[error("encrypted image truncated: it ends without its final chunk")]
    Truncated,
    /// Bytes follow the chunk sealed as the last one.
    #[error("encrypted image has bytes after its final chunk")]
    TrailingData,
    /// 2^32 chunks: the nonce counter would wrap (256 TiB at 64 KiB chunks).
    #[error("encrypted image too long: chunk counter exhausted")]
    TooLong,
    #[error("chunk size {0} is not a power of two between 1 KiB and 16 MiB")]
    ChunkSize(u32),
    #[error("getrandom for the nonce prefix")]
    Random(#[source] io::Error),
    /// A write or read after an earlier failure: the stream is unusable.
    #[error("encrypted stream already failed")]
    Poisoned,
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileProblem {
    #[error("cannot open or read it")]
    Io(#[source] io::Error),
    #[error("is a symbolic link (the key must be a regular file, not a link to one)")]
    Symlink,
    #[error("is not a regular file")]
    NotRegular,
    #[error("owned by uid {uid}, must be owned by root")]
    NotRootOwned { uid: u32 },
    #[error("mode {mode:04o}, must be 0600 or stricter (owner read and write only)")]
    TooOpen { mode: u32 },
    #[error("holds {len} bytes, must be 64 hex characters and an optional newline")]
    BadLength { len: usize },
    #[error("is not hex (must be 64 hex characters and an optional newline)")]
    NotHex,
}

/// What is wrong with an encrypted file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    #[error("not an ARCH encrypted image (magic)")]
    Magic,
    #[error("format version {0} is not supported")]
    Version(u8),
    #[error("cipher {0} is not supported")]
    Cipher(u8),
    #[error("reserved bytes are not zero")]
    Reserved,
    #[error("chunk size {0} is out of range")]
    ChunkSize(u32),
}

impl Error {
    /// This crate's error inside an `io::Error` from the writer or reader,
    /// if that is what it carries (the inner stream's own I/O errors do not).
    pub fn of(e: &io::Error) -> Option<&Error> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::KeyFile {
                reason: KeyFileProblem::Io(io),
                ..
            } => io.kind(),
            Error::Random(io) => io.kind(),
            Error::KeyFile { .. } => io::ErrorKind::PermissionDenied,
            // Never UnexpectedEof for Truncated: read_exact and friends
            // would treat it as an ordinary short read.
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}
