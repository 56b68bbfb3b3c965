//! The crate's errors. Each names the file (CRIU's name) it concerns, when
//! there is one, so a failed dump or restore says which image broke.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("binding the streamer socket {path}: {source}")]
    Bind { path: String, source: io::Error },

    #[error("CRIU never connected to the streamer socket")]
    NoConnection,

    #[error("streamer socket: {0}")]
    Socket(io::Error),

    #[error("CRIU's request is malformed: {0}")]
    Protocol(String),

    #[error("CRIU asked for an unsafe file name {0:?}")]
    BadName(String),

    #[error("CRIU sent {0} twice")]
    Duplicate(String),

    #[error("{name}: reading CRIU's pipe: {source}")]
    PipeRead { name: String, source: io::Error },

    #[error("{name}: writing CRIU's pipe: {source}")]
    PipeWrite { name: String, source: io::Error },

    #[error("{name}: storing: {source}")]
    Store { name: String, source: io::Error },

    #[error("{name}: compressing: {source}")]
    Compress { name: String, source: io::Error },

    /// Encrypting, or decrypting: a wrong key, a failed tag (a changed,
    /// moved or swapped byte), a cut file. `arch_imgcrypt::Error::of(source)`
    /// has the cause.
    #[error("{name}: {source}")]
    Crypt { name: String, source: io::Error },

    #[error("{name}: decompressing: {source}")]
    Decompress { name: String, source: io::Error },

    #[error("{name}: the stored file is {found} bytes, the record says {expected}")]
    StoredSize {
        name: String,
        expected: u64,
        found: u64,
    },

    #[error("{name}: the stored bytes' sha256 is {found}, the record says {expected}")]
    StoredDigest {
        name: String,
        expected: String,
        found: String,
    },

    #[error("{name}: the original file is {found} bytes, the record says {expected}")]
    OriginalSize {
        name: String,
        expected: u64,
        found: u64,
    },

    #[error("{name}: the original bytes' sha256 is {found}, the record says {expected}")]
    OriginalDigest {
        name: String,
        expected: String,
        found: String,
    },

    #[error("{name}: the stored file changed while it was served")]
    Changed { name: String },

    #[error("{name}: unknown codec {codec:?} in the record")]
    UnknownCodec { name: String, codec: String },

    #[error("CRIU never sent inventory.img, which a dump writes last: the dump did not finish")]
    Incomplete,

    #[error("a streamer worker panicked on {0}")]
    Panicked(String),
}

pub type Result<T> = std::result::Result<T, StreamError>;
