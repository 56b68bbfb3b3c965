//! The original digest of a copy, taken on a thread of its own once the
//! file is large enough to pay for one.
//!
//! A restore waits at Create while `decode_verified` reads, decodes,
//! hashes and writes every byte of the image: for a 1 GiB memory image
//! that is a second on one core, most of it sha256 (about 1.8 GB/s with
//! SHA-NI here). Hashing on a second thread, beside the reading and
//! decoding, shortens that wait. The hashing thread then hands each chunk
//! on as it is (no copy), so the bytes written are the bytes hashed, in
//! order. Most of an image's files are a few KiB: they are hashed inline,
//! and a file moves to a thread only when it passes [`BEHIND_FROM`]
//! bytes, so no file needs its size known in advance.

use std::io::{self, Write};
use std::thread::{Scope, ScopedJoinHandle};

use crate::chunks::{chunk_channel, ChunkSender, Chunks, OwnedWrite, CHUNK};
use crate::error::{Result, StreamError};
use crate::hashing::{Counted, OriginalDigest};

/// Below this many bytes a second thread costs more than it saves.
pub(crate) const BEHIND_FROM: u64 = 4 * CHUNK as u64;

/// Runs `produce` with a writer whose bytes are hashed and then written to
/// `out` (on another thread past [`BEHIND_FROM`] bytes); returns what
/// `produce` returned and the count and `digest` of everything it wrote.
/// A failed write to `out` is the error (`produce` then sees its writes
/// refused).
pub(crate) fn hashed_behind<W: OwnedWrite, T>(
    name: &str,
    out: &mut W,
    digest: OriginalDigest,
    produce: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<(T, Counted)> {
    std::thread::scope(|scope| {
        let mut writer = Adaptive {
            scope,
            mode: Mode::Inline(out, Counted::digesting(digest)),
            failed: None,
        };
        let produced = produce(&mut writer);
        // The writer's failure is the cause of the producer's, if both.
        let count = writer.finish().map_err(|source| StreamError::PipeWrite {
            name: name.into(),
            source,
        })?;
        Ok((produced?, count))
    })
}

enum Mode<'scope, 'out, W> {
    Inline(&'out mut W, Counted),
    Behind(ChunkSender, ScopedJoinHandle<'scope, io::Result<Counted>>),
    Gone,
}

struct Adaptive<'scope, 'env, 'out, W> {
    scope: &'scope Scope<'scope, 'env>,
    mode: Mode<'scope, 'out, W>,
    /// The first failure of `out` while inline, or of the thread's start.
    failed: Option<io::Error>,
}

fn refused() -> io::Error {
    io::Error::other("the copy's writer failed")
}

impl<'scope, 'out: 'scope, W: OwnedWrite> Adaptive<'scope, '_, 'out, W> {
    fn go_behind(&mut self) {
        let Mode::Inline(out, count) = std::mem::replace(&mut self.mode, Mode::Gone) else {
            return;
        };
        let (sender, chunks) = chunk_channel();
        let spawned = std::thread::Builder::new()
            .name("hash-behind".into())
            .spawn_scoped(self.scope, move || hash_then_write(&chunks, count, out));
        match spawned {
            Ok(hasher) => self.mode = Mode::Behind(sender, hasher),
            Err(e) => self.failed = Some(e),
        }
    }

    fn finish(mut self) -> io::Result<Counted> {
        match std::mem::replace(&mut self.mode, Mode::Gone) {
            Mode::Inline(_, count) => self.failed.map_or(Ok(count), Err),
            Mode::Behind(mut sender, hasher) => {
                let handed = sender.hand_over();
                sender.close();
                let hashed = hasher
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("the hashing thread panicked")));
                let count = hashed?;
                handed.map(|()| count)
            }
            Mode::Gone => Err(self.failed.unwrap_or_else(refused)),
        }
    }
}

impl<'scope, 'out: 'scope, W: OwnedWrite> Write for Adaptive<'scope, '_, 'out, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Mode::Inline(_, count) = &self.mode {
            if count.size + data.len() as u64 > BEHIND_FROM {
                self.go_behind();
            }
        }
        match &mut self.mode {
            _ if self.failed.is_some() => Err(refused()),
            Mode::Inline(out, count) => match out.write_all(data) {
                Ok(()) => {
                    count.update(data);
                    Ok(data.len())
                }
                Err(e) => {
                    self.failed = Some(e);
                    Err(refused())
                }
            },
            // Once the thread stopped, its own error is the one reported.
            Mode::Behind(sender, _) => sender.write(data),
            Mode::Gone => Err(refused()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn hash_then_write<W: OwnedWrite>(
    chunks: &Chunks,
    mut count: Counted,
    out: &mut W,
) -> io::Result<Counted> {
    while let Some(chunk) = chunks.next_chunk() {
        count.update(&chunk);
        if let Some(done) = out.write_owned(chunk)? {
            chunks.recycle(done);
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written_in_pieces(total: usize) -> (Vec<u8>, Vec<u8>, Counted) {
        let mut out = Vec::new();
        let mut expected = Vec::new();
        let ((), count) = hashed_behind("f", &mut out, OriginalDigest::default(), |w| {
            let mut i = 0u32;
            while expected.len() < total {
                let len = ((i as usize * 977) % 5000).min(total - expected.len());
                let piece = vec![(i % 251) as u8; len];
                w.write_all(&piece).unwrap();
                expected.extend_from_slice(&piece);
                i += 1;
            }
            Ok(())
        })
        .unwrap();
        (out, expected, count)
    }

    #[test]
    fn what_is_written_is_what_was_hashed_in_order() {
        // Small (inline only) and large (inline, then behind) files.
        for total in [9000, BEHIND_FROM as usize + 3 * CHUNK + 17] {
            let (out, expected, count) = written_in_pieces(total);
            assert!(out == expected, "{total}: the bytes differ");
            assert_eq!(count.size, total as u64);
            let mut whole = Counted::new();
            whole.update(&expected);
            assert_eq!(count.hex(), whole.hex(), "{total}");
        }
    }

    /// Takes `room` bytes, then fails as a full disk does.
    struct FullAfter(usize);
    impl Write for FullAfter {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            match self.0.checked_sub(data.len()) {
                Some(left) => {
                    self.0 = left;
                    Ok(data.len())
                }
                None => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl OwnedWrite for FullAfter {}

    #[test]
    fn a_failed_write_is_the_error_not_the_refused_send() {
        // The disk fills while inline, and once behind.
        for room in [0, BEHIND_FROM as usize + CHUNK] {
            let e = hashed_behind(
                "pages-1.img",
                &mut FullAfter(room),
                OriginalDigest::default(),
                |w| {
                    for _ in 0..64 * CHUNK / 4096 {
                        w.write_all(&[1; 4096])
                            .map_err(|source| StreamError::Store {
                                name: "producer".into(),
                                source,
                            })?;
                    }
                    Ok(())
                },
            )
            .err()
            .unwrap();
            match e {
                StreamError::PipeWrite { name, source } => {
                    assert_eq!(name, "pages-1.img", "{room}");
                    assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{room}");
                }
                e => panic!("{room}: {e}"),
            }
        }
    }

    #[test]
    fn the_producers_error_stands_when_the_writes_were_fine() {
        let mut out = Vec::new();
        let e = hashed_behind("f", &mut out, OriginalDigest::default(), |w| {
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
