//! How a file's bytes are stored: as they came, or zstd-compressed with a
//! level and a worker-thread count (the host configuration's).

use std::io::{self, BufReader, Read, Write};

/// The codec of a capture. Every file of one capture uses the same one,
/// and its record names it, so a reader never guesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None,
    /// `threads` 0 or 1 compresses on the file's own worker thread; more
    /// starts zstd's own workers for each file being captured.
    Zstd {
        level: i32,
        threads: u32,
    },
}

pub const NONE: &str = "none";
pub const ZSTD: &str = "zstd";

impl Codec {
    pub fn name(&self) -> &'static str {
        match self {
            Codec::None => NONE,
            Codec::Zstd { .. } => ZSTD,
        }
    }

    pub fn level(&self) -> Option<i32> {
        match self {
            Codec::None => None,
            Codec::Zstd { level, .. } => Some(*level),
        }
    }

    /// The stored file's name: compressed files say so, so an operator
    /// can `zstd -d` one by hand.
    pub fn stored_name(&self, name: &str) -> String {
        match self {
            Codec::None => name.to_string(),
            Codec::Zstd { .. } => format!("{name}.zst"),
        }
    }

    /// CRIU's name of a stored file ([`Codec::stored_name`] undone); none
    /// when the stored name lacks the codec's suffix.
    pub fn original_name<'a>(&self, stored: &'a str) -> Option<&'a str> {
        match self {
            Codec::None => Some(stored),
            Codec::Zstd { .. } => stored.strip_suffix(".zst").filter(|n| !n.is_empty()),
        }
    }

    /// The codec a record (or a manifest) names; none for an unknown one.
    pub fn from_record(codec: &str, level: Option<i32>) -> Option<Codec> {
        from_record(codec, level)
    }
}

/// The write side: CRIU's bytes in, stored bytes out to `W`.
pub(crate) enum Sink<W: Write> {
    Plain(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Sink<W> {
    pub fn new(codec: Codec, out: W) -> io::Result<Self> {
        Ok(match codec {
            Codec::None => Sink::Plain(out),
            Codec::Zstd { level, threads } => {
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                if threads > 1 {
                    enc.multithread(threads)?;
                }
                // Lets a reader see truncation inside the frame, not only
                // through the digest.
                enc.include_checksum(true)?;
                Sink::Zstd(enc)
            }
        })
    }

    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(buf),
            Sink::Zstd(e) => e.write_all(buf),
        }
    }

    /// Ends the stream (zstd's epilogue) and gives the writer back.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Sink::Plain(mut w) => w.flush().map(|_| w),
            Sink::Zstd(e) => {
                let mut w = e.finish()?;
                w.flush()?;
                Ok(w)
            }
        }
    }
}

/// The read side: stored bytes in (from `R`), original bytes out.
pub(crate) enum Source<R: Read> {
    Plain(R),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Source<R> {
    pub fn new(codec: Codec, input: R) -> io::Result<Self> {
        Ok(match codec {
            Codec::None => Source::Plain(input),
            Codec::Zstd { .. } => Source::Zstd(zstd::stream::read::Decoder::new(input)?),
        })
    }

    /// The stored reader, for draining what the decoder did not consume.
    pub fn into_inner(self) -> R {
        match self {
            Source::Plain(r) => r,
            Source::Zstd(d) => d.finish().into_inner(),
        }
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r) => r.read(buf),
            Source::Zstd(d) => d.read(buf),
        }
    }
}

/// The codec a record names, as read back for serving.
pub fn from_record(codec: &str, level: Option<i32>) -> Option<Codec> {
    match codec {
        NONE => Some(Codec::None),
        ZSTD => Some(Codec::Zstd {
            level: level.unwrap_or(0),
            threads: 1,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_round_trip_and_truncation() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut s = Sink::new(
            Codec::Zstd {
                level: 3,
                threads: 2,
            },
            Vec::new(),
        )
        .unwrap();
        s.write_all(&data).unwrap();
        let stored = s.finish().unwrap();
        assert!(stored.len() < data.len() / 10);
        let mut back = Vec::new();
        Source::new(
            Codec::Zstd {
                level: 3,
                threads: 1,
            },
            &stored[..],
        )
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
        assert_eq!(back, data);
        let mut cut = Vec::new();
        let r = Source::new(
            Codec::Zstd {
                level: 3,
                threads: 1,
            },
            &stored[..stored.len() - 3],
        )
        .unwrap()
        .read_to_end(&mut cut);
        assert!(
            r.is_err(),
            "a truncated frame must not read as a short file"
        );
    }

    #[test]
    fn names() {
        assert_eq!(Codec::None.stored_name("pages-1.img"), "pages-1.img");
        assert_eq!(
            Codec::Zstd {
                level: 1,
                threads: 1
            }
            .stored_name("pages-1.img"),
            "pages-1.img.zst"
        );
        assert_eq!(
            from_record("zstd", Some(3)),
            Some(Codec::Zstd {
                level: 3,
                threads: 1
            })
        );
        assert_eq!(from_record("lz4", None), None);
        let z = Codec::Zstd {
            level: 1,
            threads: 1,
        };
        assert_eq!(z.original_name("pages-1.img.zst"), Some("pages-1.img"));
        assert_eq!(z.original_name("pages-1.img"), None);
        assert_eq!(z.original_name(".zst"), None);
        assert_eq!(
            Codec::None.original_name("pages-1.img"),
            Some("pages-1.img")
        );
    }
}
