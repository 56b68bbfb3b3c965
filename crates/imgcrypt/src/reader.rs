//! The read side: header and sealed chunks in, verified plaintext out (to
//! the zstd decoder).

use std::io::{self, Read};

use crate::chunk::{Chunks, InOutBuf, TAG_LEN};
use crate::error::Error;
use crate::header::{Header, HEADER_LEN};
use crate::key::Key;
use crate::wiped::Wiped;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    /// The final chunk verified; EOF once its bytes are read.
    Done,
    Failed,
}

/// Decrypts what [`EncryptWriter`](crate::EncryptWriter) wrote. Only bytes
/// of chunks whose tag verified are returned; `Ok(0)` (EOF) comes only
/// after the final chunk verified with nothing after it. Every fault is an
/// `io::Error` carrying an [`Error`], and every read after one fails too.
///
/// Chunks are released as they verify, so a consumer must not commit what
/// it restores before this reader returned EOF.
pub struct DecryptReader<R: Read> {
    inner: R,
    chunks: Chunks,
    /// `chunk_size + TAG_LEN`: one sealed chunk, decrypted in place or,
    /// when the caller reads a chunk or more, into the caller's buffer.
    buf: Wiped,
    /// Plaintext not yet returned: `buf[pos..end]`.
    pos: usize,
    end: usize,
    /// The byte read after a full chunk to learn it was not the last one;
    /// it is the first byte of the next chunk.
    carried: Option<u8>,
    state: State,
}

impl<R: Read> DecryptReader<R> {
    /// Reads and checks the header now: a foreign file, an unknown version
    /// or another key's file (`Error::WrongKey`, naming both key ids) is
    /// refused before any chunk is touched. `identity` must be the bytes
    /// the writer was given.
    pub fn new(mut inner: R, key: &Key, identity: &[u8]) -> io::Result<Self> {
        let mut bytes = [0u8; HEADER_LEN];
        if read_full(&mut inner, &mut bytes)? < HEADER_LEN {
            return Err(Error::Truncated.into());
        }
        let header = Header::decode(&bytes)?;
        key.check_id(header.key_id)?;
        Ok(DecryptReader {
            inner,
            chunks: Chunks::new(key, header.nonce_prefix, &bytes, identity),
            buf: Wiped::new(header.chunk_size as usize + TAG_LEN),
            pos: 0,
            end: 0,
            carried: None,
            state: State::Reading,
        })
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads and verifies the next chunk, and decrypts it straight into
    /// `out` if it fits there (returns its length), else into
    /// `buf[..end]` (returns `None`).
    fn next_chunk(&mut self, out: &mut [u8]) -> io::Result<Option<usize>> {
        let mut total = 0;
        if let Some(b) = self.carried.take() {
            self.buf[0] = b;
            total = 1;
        }
        total += read_full(&mut self.inner, &mut self.buf[total..])?;
        // Whether a byte follows decides which flag this chunk must carry.
        let last = if total == self.buf.len() {
            let mut one = [0u8; 1];
            if read_full(&mut self.inner, &mut one)? == 1 {
                self.carried = Some(one[0]);
                false
            } else {
                true
            }
        } else {
            true
        };
        if total < TAG_LEN {
            // No room for a tag: the file stops inside a chunk, or right
            // after the header.
            return Err(Error::Truncated.into());
        }
        let len = total - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&self.buf[len..total]);
        let direct = out.len() >= len;
        let data = if direct {
            InOutBuf::new(&self.buf[..len], &mut out[..len]).expect("one length")
        } else {
            InOutBuf::from(&mut self.buf[..len])
        };
        if let Err(e) = self.chunks.open(data, &tag, last) {
            // Name the fault when the chunk is intact but placed last or
            // not last wrongly; otherwise it is plain tampering.
            if self.chunks.verifies(&self.buf[..len], &tag, !last) {
                let fault = if last {
                    Error::Truncated
                } else {
                    Error::TrailingData
                };
                return Err(fault.into());
            }
            return Err(e.into());
        }
        if last {
            self.state = State::Done;
        }
        if direct {
            return Ok(Some(len));
        }
        self.pos = 0;
        self.end = len;
        Ok(None)
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.state == State::Failed {
                return Err(Error::Poisoned.into());
            }
            if self.pos < self.end || out.is_empty() {
                let n = out.len().min(self.end - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.state == State::Done {
                return Ok(0);
            }
            match self.next_chunk(out) {
                // 0 only for an empty final chunk: then EOF, above.
                Ok(Some(n)) if n > 0 => return Ok(n),
                Ok(_) => {}
                Err(e) => {
                    self.state = State::Failed;
                    return Err(e);
                }
            }
        }
    }
}

/// Reads until `buf` is full or EOF; returns how many bytes came.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
