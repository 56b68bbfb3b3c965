//! sha256 and byte counts of what passes through a reader or writer.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// A byte count and, unless it only counts, the sha256 of those bytes.
pub(crate) struct Counted {
    sha: Option<Sha256>,
    pub size: u64,
}

impl Counted {
    pub fn new() -> Self {
        Counted {
            sha: Some(Sha256::new()),
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
        hex::encode(
            self.sha
                .expect("a digest of a count that hashed")
                .finalize(),
        )
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
