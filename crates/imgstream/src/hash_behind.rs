//! The original digest of a verified copy, taken on a thread of its own.
//!
//! A restore waits at Create while `decode_verified` reads, decodes,
//! hashes and writes every byte of the image: for a 1 GiB memory image
//! that is a second on one core, most of it sha256 (about 1.8 GB/s with
//! SHA-NI here). Hashing on a second thread, beside the reading and
//! decoding, shortens that wait. The hashing thread writes each chunk
//! after hashing it, so the bytes written are the bytes hashed, in order.

use std::io::{self, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};

use crate::error::{Result, StreamError};
use crate::hashing::{Counted, HashingWriter};
use crate::pipe::CHUNK;

/// Chunks that may wait for the hasher: enough to ride out an uneven
/// pace, bounded so a stalled writer stops the reader.
const QUEUED: usize = 4;

/// Below this many bytes a second thread costs more than it saves (most
/// of an image's files are a few KiB; its memory is one or two large ones).
pub(crate) const BEHIND_FROM: u64 = 4 * CHUNK as u64;

/// Runs `produce` with a writer whose bytes are hashed and then written to
/// `out`, on another thread when `expected` bytes reach [`BEHIND_FROM`];
/// returns what `produce` returned and the count and sha256 of everything
/// it wrote. A failed write to `out` is the error (`produce` then sees
/// its writes refused).
pub(crate) fn hashed_behind<W: Write + Send, T>(
    name: &str,
    out: &mut W,
    expected: u64,
    produce: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<(T, Counted)> {
    if expected < BEHIND_FROM {
        let mut inline = HashingWriter::with(out, Counted::new());
        let t = produce(&mut inline)?;
        return Ok((t, inline.into_parts().1));
    }
    let write_err = |source| StreamError::PipeWrite {
        name: name.into(),
        source,
    };
    let (to_hasher, chunks) = sync_channel::<Vec<u8>>(QUEUED);
    let (give_back, spare) = channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let hasher = std::thread::Builder::new()
            .name("hash-behind".into())
            .spawn_scoped(s, move || -> io::Result<Counted> {
                let mut count = Counted::new();
                for chunk in chunks {
                    count.update(&chunk);
                    out.write_all(&chunk)?;
                    // The reader may have finished: then the buffer is freed.
                    let _ = give_back.send(chunk);
                }
                Ok(count)
            })
            .map_err(write_err)?;
        let mut sender = ChunkSender {
            buf: Vec::with_capacity(CHUNK),
            to_hasher: Some(to_hasher),
            spare,
        };
        let produced = produce(&mut sender);
        let handed = sender.hand_over();
        drop(sender);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the hashing thread panicked")));
        // The writer's failure is the cause of the producer's, if both.
        let count = hashed.map_err(write_err)?;
        let t = produced?;
        handed.map_err(write_err)?;
        Ok((t, count))
    })
}

/// The producer's side: buffers writes into chunks, reusing the buffers
/// the hasher is done with.
pub(crate) struct ChunkSender {
    buf: Vec<u8>,
    to_hasher: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
}

impl ChunkSender {
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = match self.spare.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(CHUNK),
        };
        let full = std::mem::replace(&mut self.buf, next);
        let sent = self.to_hasher.as_ref().map(|tx| tx.send(full));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(io::Error::other("the hashing thread stopped")),
        }
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.hand_over()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_is_what_was_hashed_in_order() {
        let mut out = Vec::new();
        let mut expected = Vec::new();
        let ((), count) = hashed_behind("f", &mut out, BEHIND_FROM, |w| {
            for i in 0..2000u32 {
                let piece = vec![(i % 251) as u8; (i as usize * 977) % 5000];
                w.write_all(&piece).unwrap();
                expected.extend_from_slice(&piece);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(out, expected);
        assert_eq!(count.size, expected.len() as u64);
        let mut whole = Counted::new();
        whole.update(&expected);
        assert_eq!(count.hex(), whole.hex());
    }

    #[test]
    fn a_small_file_is_hashed_inline_to_the_same_digest() {
        let bytes = b"inventory".repeat(100);
        let (mut inline, mut behind) = (Vec::new(), Vec::new());
        let (_, a) = hashed_behind("f", &mut inline, 0, |w| Ok(w.write_all(&bytes))).unwrap();
        let (_, b) =
            hashed_behind("f", &mut behind, BEHIND_FROM, |w| Ok(w.write_all(&bytes))).unwrap();
        assert_eq!(
            (inline.as_slice(), behind.as_slice()),
            (&bytes[..], &bytes[..])
        );
        assert_eq!(a.hex(), b.hex());
    }

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_is_the_error_not_the_refused_send() {
        let e = hashed_behind("pages-1.img", &mut Full, u64::MAX, |w| {
            for _ in 0..64 {
                w.write_all(&[1; CHUNK])
                    .map_err(|source| StreamError::Store {
                        name: "producer".into(),
                        source,
                    })?;
            }
            Ok(())
        })
        .err()
        .unwrap();
        match e {
            StreamError::PipeWrite { name, source } => {
                assert_eq!(name, "pages-1.img");
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn the_producers_error_stands_when_the_writes_were_fine() {
        let mut out = Vec::new();
        let e = hashed_behind("f", &mut out, BEHIND_FROM, |w| {
            w.write_all(b"some").unwrap();
            Err::<(), _>(StreamError::UnknownCodec {
                name: "f".into(),
                codec: "lz5".into(),
            })
        })
        .err()
        .unwrap();
        assert!(matches!(e, StreamError::UnknownCodec { .. }), "{e}");
    }
}
