//! Encryption at rest for checkpoint image files.
//!
//! A file is encrypted as it streams, after zstd on the write side and
//! before it on the read side, with XChaCha20-Poly1305 in the STREAM
//! construction: a 43-byte header (magic, version, cipher, chunk size, key
//! id, random 19-byte nonce prefix) and then 64 KiB chunks, each sealed
//! under a nonce made of the prefix, the chunk's counter and a last-chunk
//! flag, with the header and the file's identity as associated data. The
//! tags are the integrity check: a flipped, moved, repeated, missing or
//! appended byte, a cut file, or another file put in its place, is refused
//! with a typed [`Error`]. The byte layout is in docs/image-format.md; the
//! threat model in docs/security.md.
//!
//! Why XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`): a 192-bit nonce
//! leaves 152 random bits per file after the counter, so random prefixes
//! never collide in practice and no nonce state is kept across files or
//! hosts; it runs fast in constant time on any x86-64 without AES-NI
//! assumptions (AVX2 backends chosen at run time); and the crate is the
//! RustCrypto project's, widely used, and an earlier version was reviewed
//! by NCC Group (2020) with no significant findings. Its
//! `aead` 0.6 no longer ships the `stream` module, so the STREAM framing
//! here is our own, following `aead::stream::StreamBE32` byte for byte in
//! the nonce.
//!
//! The shim's image streaming pipeline (arch-imgstream) plugs
//! [`EncryptWriter`] after its zstd encoder and [`DecryptReader`] before
//! its decoder when the host configures `encryption_key_file`.

mod chunk;
mod error;
mod header;
mod key;
mod keyed_digest;
mod reader;
mod wiped;
mod writer;

pub use chunk::TAG_LEN;
pub use header::MAGIC;

/// The cipher's name in a manifest: this crate's header version 1
/// (XChaCha20-Poly1305, STREAM framing). One name, checked on read.
pub const CIPHER_NAME: &str = "xchacha20poly1305-stream";
pub use error::{Error, HeaderProblem, KeyFileProblem};
pub use header::{DEFAULT_CHUNK, HEADER_LEN, MAX_CHUNK, MIN_CHUNK};
pub use key::{Key, KeyId, KEY_ID_LEN, KEY_LEN};
pub use keyed_digest::{KeyedDigest, KEYED_DIGEST_NAME};
pub use reader::DecryptReader;
pub use writer::EncryptWriter;

/// The size of the encrypted file for `plain` bytes at `chunk_size`:
/// the header, the bytes, and a tag per chunk (at least one, the final).
pub fn encrypted_len(plain: u64, chunk_size: u32) -> u64 {
    let chunks = plain.div_ceil(u64::from(chunk_size)).max(1);
    HEADER_LEN as u64 + plain + chunks * TAG_LEN as u64
}

#[cfg(test)]
mod tests;
