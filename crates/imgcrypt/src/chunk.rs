//! STREAM (Hoang, Reyhanitabar, Rogaway, Vizár 2015) over
//! XChaCha20-Poly1305, as RustCrypto's `aead::stream::StreamBE32` framed
//! it: chunk i of a file is sealed under the nonce
//! `prefix(19) || i as u32 BE || last(1)`, where `last` is 1 only for the
//! final chunk. A chunk moved, repeated or dropped is under the wrong
//! counter; a file cut on a chunk boundary ends on a chunk sealed with
//! last = 0; bytes appended follow one sealed with last = 1. The
//! associated data of every chunk is the header and the file's identity.

pub use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::error::Error;
use crate::header::{HEADER_LEN, NONCE_PREFIX_LEN};
use crate::key::Key;

pub const TAG_LEN: usize = 16;

pub struct Chunks {
    cipher: XChaCha20Poly1305,
    prefix: [u8; NONCE_PREFIX_LEN],
    /// Header bytes then the identity; built once, not per chunk.
    ad: Vec<u8>,
    /// The next chunk's index. u64 so that the one after u32::MAX is seen.
    next: u64,
}

impl Chunks {
    pub fn new(
        key: &Key,
        prefix: [u8; NONCE_PREFIX_LEN],
        header: &[u8; HEADER_LEN],
        identity: &[u8],
    ) -> Chunks {
        let mut ad = Vec::with_capacity(HEADER_LEN + identity.len());
        ad.extend_from_slice(header);
        ad.extend_from_slice(identity);
        Chunks {
            cipher: XChaCha20Poly1305::new(key.bytes().into()),
            prefix,
            ad,
            next: 0,
        }
    }

    fn nonce(&self, index: u64, last: bool) -> Result<XNonce, Error> {
        let counter = u32::try_from(index).map_err(|_| Error::TooLong)?;
        let mut n = [0u8; 24];
        n[..NONCE_PREFIX_LEN].copy_from_slice(&self.prefix);
        n[NONCE_PREFIX_LEN..23].copy_from_slice(&counter.to_be_bytes());
        n[23] = u8::from(last);
        Ok(n.into())
    }

    /// Encrypts `data` (in place, or from its input into its output) and
    /// returns the tag.
    pub fn seal(&mut self, data: InOutBuf<'_, '_, u8>, last: bool) -> Result<[u8; TAG_LEN], Error> {
        let nonce = self.nonce(self.next, last)?;
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, &self.ad, data)
            // Only for a chunk over 256 GiB, which the chunk size excludes.
            .map_err(|_| Error::TooLong)?;
        self.next += 1;
        Ok(tag.into())
    }

    /// Checks the tag of `data`'s input as chunk `next` with the given
    /// `last` flag and, only if it verifies, decrypts it into `data`'s
    /// output. On failure neither is changed (the tag is checked before any
    /// byte is decrypted), so the caller may try the other flag to name
    /// the fault.
    pub fn open(
        &mut self,
        data: InOutBuf<'_, '_, u8>,
        tag: &[u8; TAG_LEN],
        last: bool,
    ) -> Result<(), Error> {
        let index = self.next;
        let nonce = self.nonce(index, last)?;
        self.cipher
            .decrypt_inout_detached(&nonce, &self.ad, data, &Tag::from(*tag))
            .map_err(|_| Error::Tampered { chunk: index })?;
        self.next += 1;
        Ok(())
    }

    /// Whether `data` verifies as chunk `next` with `last`, without
    /// decrypting or advancing.
    pub fn verifies(&self, data: &[u8], tag: &[u8; TAG_LEN], last: bool) -> bool {
        let Ok(nonce) = self.nonce(self.next, last) else {
            return false;
        };
        // A scratch copy: only on the failure path, to name the fault.
        let mut copy = data.to_vec();
        self.cipher
            .decrypt_inout_detached(
                &nonce,
                &self.ad,
                InOutBuf::from(&mut copy[..]),
                &Tag::from(*tag),
            )
            .is_ok()
    }
}
