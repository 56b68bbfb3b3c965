//! The encrypted file's fixed 43-byte header (layout in
//! docs/image-format.md). It is authenticated: every chunk's associated
//! data starts with these bytes.

use crate::error::{Error, HeaderProblem};
use crate::key::{KeyId, KEY_ID_LEN};

pub const MAGIC: [u8; 8] = *b"ARCHCRYP";
pub const VERSION: u8 = 1;
/// XChaCha20-Poly1305, STREAM framing with a 32-bit big-endian counter.
pub const CIPHER_XCHACHA20POLY1305: u8 = 1;
/// 24-byte XNonce = 19-byte random prefix + 4-byte counter + 1 last flag.
pub const NONCE_PREFIX_LEN: usize = 19;
pub const HEADER_LEN: usize = 8 + 1 + 1 + 2 + 4 + KEY_ID_LEN + NONCE_PREFIX_LEN;

pub const MIN_CHUNK: u32 = 1 << 10;
pub const MAX_CHUNK: u32 = 1 << 24;
/// 64 KiB: the per-chunk cost (a Poly1305 finish, a nonce, a write) is
/// lost in the noise, and a reader needs only this much memory.
pub const DEFAULT_CHUNK: u32 = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub chunk_size: u32,
    pub key_id: KeyId,
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

pub fn valid_chunk_size(size: u32) -> bool {
    size.is_power_of_two() && (MIN_CHUNK..=MAX_CHUNK).contains(&size)
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8] = VERSION;
        b[9] = CIPHER_XCHACHA20POLY1305;
        // b[10..12] reserved, zero.
        b[12..16].copy_from_slice(&self.chunk_size.to_be_bytes());
        b[16..24].copy_from_slice(&self.key_id.0);
        b[24..43].copy_from_slice(&self.nonce_prefix);
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, Error> {
        let bad = |p| Err(Error::BadHeader(p));
        if b[0..8] != MAGIC {
            return bad(HeaderProblem::Magic);
        }
        if b[8] != VERSION {
            return bad(HeaderProblem::Version(b[8]));
        }
        if b[9] != CIPHER_XCHACHA20POLY1305 {
            return bad(HeaderProblem::Cipher(b[9]));
        }
        if b[10..12] != [0, 0] {
            return bad(HeaderProblem::Reserved);
        }
        let chunk_size = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
        // Checked before anything is allocated from it.
        if !valid_chunk_size(chunk_size) {
            return bad(HeaderProblem::ChunkSize(chunk_size));
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&b[16..24]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&b[24..43]);
        Ok(Header {
            chunk_size,
            key_id: KeyId(key_id),
            nonce_prefix,
        })
    }
}

/// Random bytes from getrandom(2). Blocks only before the kernel's pool
/// is first seeded, never after.
pub fn random_prefix() -> Result<[u8; NONCE_PREFIX_LEN], Error> {
    let mut out = [0u8; NONCE_PREFIX_LEN];
    let mut filled = 0;
    while filled < out.len() {
        let rest = &mut out[filled..];
        // SAFETY: `rest` is valid writable memory of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::Random(e));
            }
        } else {
            filled += n as usize;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            chunk_size: DEFAULT_CHUNK,
            key_id: KeyId([1, 2, 3, 4, 5, 6, 7, 8]),
            nonce_prefix: [9; NONCE_PREFIX_LEN],
        }
    }

    #[test]
    fn round_trip() {
        let h = header();
        assert_eq!(HEADER_LEN, 43);
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn each_fixed_field_is_checked() {
        let good = header().encode();
        for (at, want) in [
            (0, HeaderProblem::Magic),
            (7, HeaderProblem::Magic),
            (8, HeaderProblem::Version(VERSION ^ 0x80)),
            (9, HeaderProblem::Cipher(CIPHER_XCHACHA20POLY1305 ^ 0x80)),
            (10, HeaderProblem::Reserved),
            (11, HeaderProblem::Reserved),
            (12, HeaderProblem::ChunkSize(DEFAULT_CHUNK ^ 0x8000_0000)),
        ] {
            let mut b = good;
            b[at] ^= 0x80;
            match Header::decode(&b) {
                Err(Error::BadHeader(p)) => assert_eq!(p, want, "byte {at}"),
                other => panic!("byte {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn chunk_sizes() {
        assert!(valid_chunk_size(MIN_CHUNK));
        assert!(valid_chunk_size(DEFAULT_CHUNK));
        assert!(valid_chunk_size(MAX_CHUNK));
        for bad in [0, 1, MIN_CHUNK / 2, MIN_CHUNK + 1, MAX_CHUNK * 2, u32::MAX] {
            assert!(!valid_chunk_size(bad), "{bad}");
        }
    }

    #[test]
    fn prefixes_differ() {
        assert_ne!(random_prefix().unwrap(), random_prefix().unwrap());
    }
}
