//! sha256 and byte counts of what passes through a reader or writer.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

pub(crate) struct Counted {
    sha: Sha256,
    pub size: u64,
}

impl Counted {
    pub fn new() -> Self {
        Counted {
            sha: Sha256::new(),
            size: 0,
        }
    }

    pub fn update(&mut self, buf: &[u8]) {
        self.sha.update(buf);
        self.size += buf.len() as u64;
    }

    pub fn hex(self) -> String {
        hex::encode(self.sha.finalize())
    }
}

/// Hashes what is written through it (only what the inner writer took).
pub(crate) struct HashingWriter<W> {
    inner: W,
    pub count: Counted,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            count: Counted::new(),
        }
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
        HashingReader {
            inner,
            count: Counted::new(),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.update(&buf[..n]);
        Ok(n)
    }
}
