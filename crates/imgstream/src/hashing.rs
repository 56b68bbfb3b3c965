//! Digests and byte counts of what passes through a reader or writer.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::{Encryption, FileRecord};

/// The digest a record's original bytes are checked with: sha256, or for
/// an encrypted image written since format 5 the keyed digest only the
/// key's holders can take (arch_imgcrypt::KeyedDigest).
#[derive(Clone)]
pub enum OriginalDigest {
    Sha256(Sha256),
    Keyed(arch_imgcrypt::KeyedDigest),
}

impl Default for OriginalDigest {
    fn default() -> Self {
        OriginalDigest::Sha256(Sha256::new())
    }
}

impl std::fmt::Debug for OriginalDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OriginalDigest::Sha256(_) => "OriginalDigest::Sha256",
            OriginalDigest::Keyed(_) => "OriginalDigest::Keyed",
        })
    }
}

impl OriginalDigest {
    /// How a writer digests file `identity`'s original bytes: keyed when
    /// it encrypts.
    pub fn for_writing(crypt: Option<(&arch_imgcrypt::Key, &str)>) -> Self {
        match crypt {
            Some((key, identity)) => {
                OriginalDigest::Keyed(arch_imgcrypt::KeyedDigest::new(key, identity))
            }
            None => OriginalDigest::default(),
        }
    }

    /// How `rec`'s original bytes are checked: keyed if its record says
    /// so, with the key and identity its cipher needs (given, or the
    /// decoding that needs them was refused before).
    pub fn for_record(rec: &FileRecord, crypt: Option<(&arch_imgcrypt::Key, &str)>) -> Self {
        match rec
            .encryption
            .as_ref()
            .is_some_and(Encryption::keyed_digest)
        {
            true => Self::for_writing(crypt),
            false => OriginalDigest::default(),
        }
    }

    pub fn update(&mut self, buf: &[u8]) {
        match self {
            OriginalDigest::Sha256(sha) => sha.update(buf),
            OriginalDigest::Keyed(mac) => mac.update(buf),
        }
    }

    /// Lower-case hex, as records keep digests.
    pub fn hex(self) -> String {
        match self {
            OriginalDigest::Sha256(sha) => hex::encode(sha.finalize()),
            OriginalDigest::Keyed(mac) => mac.hex(),
        }
    }
}

/// A byte count and, unless it only counts, a digest of those bytes.
pub(crate) struct Counted {
    sha: Option<OriginalDigest>,
    pub size: u64,
}

impl Counted {
    /// Counts and takes the sha256.
    pub fn new() -> Self {
        Self::digesting(OriginalDigest::default())
    }

    pub fn digesting(digest: OriginalDigest) -> Self {
        Counted {
            sha: Some(digest),
            size: 0,
        }
    }

    /// Counts without hashing: where another digest proves the bytes.
    pub fn size_only() -> Self {
        Counted { sha: None, size: 0 }
    }

    pub fn update(&mut self, buf: &[u8]) {
        if let Some(sha) = self.sha.as_mut() {
            sha.update(buf);
        }
        self.size += buf.len() as u64;
    }

    pub fn hashed(&self) -> bool {
        self.sha.is_some()
    }

    pub fn hex(self) -> String {
        self.sha.expect("a digest of a count that hashed").hex()
    }
}

/// Hashes what is written through it (only what the inner writer took).
pub(crate) struct HashingWriter<W> {
    inner: W,
    pub count: Counted,
}

impl<W: Write> HashingWriter<W> {
    pub fn with(inner: W, count: Counted) -> Self {
        HashingWriter { inner, count }
    }

    pub fn into_parts(self) -> (W, Counted) {
        (self.inner, self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes what is read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    pub count: Counted,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with(inner, Counted::new())
    }

    pub fn with(inner: R, count: Counted) -> Self {
        HashingReader { inner, count }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.update(&buf[..n]);
        Ok(n)
    }
}
