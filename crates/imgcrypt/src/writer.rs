//! The write side: plaintext in (zstd's output), header and sealed chunks
//! out.

use std::io::{self, Write};

use crate::chunk::{Chunks, InOutBuf, TAG_LEN};
use crate::error::Error;
use crate::header::{random_prefix, valid_chunk_size, Header, DEFAULT_CHUNK};
use crate::key::Key;
use crate::wiped::Wiped;

/// Encrypts everything written to it into `W`. Call [`finish`]: without
/// it the file has no final chunk and a reader refuses it as truncated,
/// which is what a writer that dies half way should leave.
///
/// [`finish`]: EncryptWriter::finish
pub struct EncryptWriter<W: Write> {
    inner: W,
    chunks: Chunks,
    chunk_size: usize,
    /// `chunk_size + TAG_LEN` bytes, allocated once: small writes are
    /// gathered in `buf[..filled]` and sealed in place; a whole chunk in
    /// one write is sealed from the caller's bytes into it. The tag goes
    /// after the chunk.
    buf: Wiped,
    filled: usize,
    poisoned: bool,
}

impl<W: Write> EncryptWriter<W> {
    /// Writes the header to `inner` at once. `identity` is the file's name
    /// within its image (or anything that says which file this is): the
    /// reader must pass the same bytes, so one encrypted file cannot stand
    /// in for another.
    pub fn new(inner: W, key: &Key, identity: &[u8]) -> io::Result<Self> {
        Self::with_chunk_size(inner, key, identity, DEFAULT_CHUNK)
    }

    /// `chunk_size`: a power of two from 1 KiB to 16 MiB; recorded in the
    /// header, so readers need not know it.
    pub fn with_chunk_size(
        mut inner: W,
        key: &Key,
        identity: &[u8],
        chunk_size: u32,
    ) -> io::Result<Self> {
        if !valid_chunk_size(chunk_size) {
            return Err(Error::ChunkSize(chunk_size).into());
        }
        let header = Header {
            chunk_size,
            key_id: key.id(),
            nonce_prefix: random_prefix()?,
        };
        let bytes = header.encode();
        inner.write_all(&bytes)?;
        let size = chunk_size as usize;
        Ok(EncryptWriter {
            inner,
            chunks: Chunks::new(key, header.nonce_prefix, &bytes, identity),
            chunk_size: size,
            buf: Wiped::new(size + TAG_LEN),
            filled: 0,
            poisoned: false,
        })
    }

    /// Seals `buf[..filled]` and writes it out. Any failure poisons the
    /// writer: how much of the chunk reached `inner` is unknown.
    fn emit(&mut self, last: bool) -> io::Result<()> {
        self.poisoned = true;
        let n = self.filled;
        let tag = self.chunks.seal(InOutBuf::from(&mut self.buf[..n]), last)?;
        self.buf[n..n + TAG_LEN].copy_from_slice(&tag);
        self.inner.write_all(&self.buf[..n + TAG_LEN])?;
        self.filled = 0;
        self.poisoned = false;
        Ok(())
    }

    /// Seals a whole non-final chunk straight from the caller's bytes into
    /// `buf` (out of place): large writes, zstd's 128 KiB blocks, are not
    /// copied in first.
    fn emit_from(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.poisoned = true;
        let n = chunk.len();
        let (out, tag_out) = self.buf.split_at_mut(n);
        let data = InOutBuf::new(chunk, out).expect("chunk and out have one length");
        let tag = self.chunks.seal(data, false)?;
        tag_out[..TAG_LEN].copy_from_slice(&tag);
        self.inner.write_all(&self.buf[..n + TAG_LEN])?;
        self.poisoned = false;
        Ok(())
    }

    fn check(&self) -> io::Result<()> {
        if self.poisoned {
            Err(Error::Poisoned.into())
        } else {
            Ok(())
        }
    }

    /// Seals the final chunk (possibly empty), flushes, and returns the
    /// inner writer. The caller still syncs it.
    pub fn finish(mut self) -> io::Result<W> {
        self.check()?;
        self.emit(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        let mut rest = data;
        while !rest.is_empty() {
            // A full chunk is sealed only once a byte follows it: until
            // then it may be the last one.
            if self.filled == self.chunk_size {
                self.emit(false)?;
            }
            if self.filled == 0 && rest.len() > self.chunk_size {
                let (chunk, after) = rest.split_at(self.chunk_size);
                self.emit_from(chunk)?;
                rest = after;
                continue;
            }
            let n = rest.len().min(self.chunk_size - self.filled);
            self.buf[self.filled..self.filled + n].copy_from_slice(&rest[..n]);
            self.filled += n;
            rest = &rest[n..];
        }
        Ok(data.len())
    }

    /// Flushes `inner` only: a partial chunk stays buffered, since chunks
    /// before the last are always full.
    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.inner.flush()
    }
}
