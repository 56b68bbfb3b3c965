//! A file writer whose writes run on a thread of their own.
//!
//! Verifying a taken image into its local copy (taken.rs) reads, decodes
//! and hashes every byte, then writes it: one core's work end to end,
//! while a 1 GiB restore waits for it at Create. Handing the writes to a
//! second thread lets the copy land while the next chunk is decoded and
//! hashed. The bytes written are the ones hashed: chunks are moved, not
//! shared, and written in order.

use std::fs::File;
use std::io::{self, Write};
use std::thread::JoinHandle;

use arch_imgstream::{chunk_channel, ChunkSender, Chunks, OwnedWrite};

pub(crate) struct WriteBehind {
    sender: ChunkSender,
    writer: Option<JoinHandle<io::Result<()>>>,
}

impl WriteBehind {
    pub(crate) fn new(mut file: File) -> io::Result<Self> {
        let (sender, chunks) = chunk_channel();
        let writer = std::thread::Builder::new()
            .name("write-behind".into())
            .spawn(move || write_sparse(&mut file, &chunks))?;
        Ok(WriteBehind {
            sender,
            writer: Some(writer),
        })
    }

    /// A send the queue refused means the writer stopped at its first
    /// failed write: that error stands for it.
    fn or_writer_error<T>(&mut self, sent: io::Result<T>) -> io::Result<T> {
        sent.map_err(|_| {
            self.join()
                .err()
                .unwrap_or_else(|| io::Error::other("the writer thread stopped"))
        })
    }

    fn join(&mut self) -> io::Result<()> {
        self.sender.close();
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(written)) => written,
            Some(Err(_)) => Err(io::Error::other("the writer thread panicked")),
            None => Ok(()),
        }
    }

    /// Writes everything and waits for it: the first write error, if any.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        let handed = self.sender.hand_over();
        self.or_writer_error(handed)?;
        self.join()
    }
}

/// Writes `chunks` in order, leaving a hole for each that is all zeros
/// (half the pages of a typical memory image are: the copy then costs no
/// page-cache copy for them, and reads back as zeros).
fn write_sparse(file: &mut File, chunks: &Chunks) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut end = 0u64;
    while let Some(chunk) = chunks.next_chunk() {
        if is_zeros(&chunk) {
            file.seek(SeekFrom::Current(chunk.len() as i64))?;
        } else {
            file.write_all(&chunk)?;
        }
        end += chunk.len() as u64;
        chunks.recycle(chunk);
    }
    // A trailing hole has no byte written after it.
    file.set_len(end)
}

fn is_zeros(b: &[u8]) -> bool {
    // SAFETY: u128 has no invalid bit patterns; align_to handles alignment.
    let (head, body, tail) = unsafe { b.align_to::<u128>() };
    head.iter().all(|&x| x == 0) && body.iter().all(|&x| x == 0) && tail.iter().all(|&x| x == 0)
}

impl Write for WriteBehind {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let sent = self.sender.write(data);
        self.or_writer_error(sent)
    }

    /// Hands over what is buffered without waiting ([`Self::finish`] waits).
    fn flush(&mut self) -> io::Result<()> {
        let handed = self.sender.hand_over();
        self.or_writer_error(handed)
    }
}

impl OwnedWrite for WriteBehind {
    /// Hands `chunk` to the writer as it is: no copy.
    fn write_owned(&mut self, chunk: Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        let sent = self.sender.send_owned(chunk);
        self.or_writer_error(sent).map(|()| None)
    }
}

/// A file of the restore copy: a big one's writes behind on their own
/// thread, a small one's by the copying thread itself (a thread per file
/// cost a small image's copy about 40 thread starts and hand-overs).
pub(crate) enum CopyWriter {
    Inline(File),
    Behind(WriteBehind),
}

/// From this size on, a file's writes go to a thread of their own.
pub(crate) const BEHIND_FROM: u64 = 4 << 20;

impl CopyWriter {
    /// The writer for a file of `size` bytes.
    pub(crate) fn for_size(file: File, size: u64) -> io::Result<Self> {
        Ok(match size < BEHIND_FROM {
            true => CopyWriter::Inline(file),
            false => CopyWriter::Behind(WriteBehind::new(file)?),
        })
    }

    /// Writes everything and waits for it: the first write error, if any.
    pub(crate) fn finish(self) -> io::Result<()> {
        match self {
            CopyWriter::Inline(_) => Ok(()),
            CopyWriter::Behind(w) => w.finish(),
        }
    }
}

impl Write for CopyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            CopyWriter::Inline(f) => f.write(data),
            CopyWriter::Behind(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            CopyWriter::Inline(f) => f.flush(),
            CopyWriter::Behind(w) => w.flush(),
        }
    }
}

impl OwnedWrite for CopyWriter {
    fn write_owned(&mut self, chunk: Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        match self {
            CopyWriter::Inline(f) => f.write_owned(chunk),
            CopyWriter::Behind(w) => w.write_owned(chunk),
        }
    }
}

impl Drop for WriteBehind {
    /// Never leaves a thread writing into a copy its owner removes.
    fn drop(&mut self) {
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arch_imgstream::CHUNK;

    #[test]
    fn bytes_land_in_order_and_whole() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("f");
        let mut w = WriteBehind::new(File::create(&path).unwrap()).unwrap();
        let mut expected = Vec::new();
        for i in 0..3000u32 {
            let piece = vec![(i % 251) as u8; (i as usize * 7) % 4096];
            w.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
        }
        w.write_owned(vec![7; 100]).unwrap();
        w.write_all(b"tail").unwrap();
        expected.extend_from_slice(&[7; 100]);
        expected.extend_from_slice(b"tail");
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn zero_chunks_become_holes_that_read_back_as_zeros() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("f");
        let mut w = WriteBehind::new(File::create(&path).unwrap()).unwrap();
        w.write_owned(vec![1; 4096]).unwrap();
        for _ in 0..8 {
            w.write_owned(vec![0; CHUNK]).unwrap();
        }
        w.write_owned(vec![2; 10]).unwrap();
        // A trailing zero chunk is a hole too; the size still counts it.
        w.write_owned(vec![0; CHUNK]).unwrap();
        w.finish().unwrap();
        let back = std::fs::read(&path).unwrap();
        let mut expected = vec![1u8; 4096];
        expected.extend(vec![0u8; 8 * CHUNK]);
        expected.extend([2u8; 10]);
        expected.extend(vec![0u8; CHUNK]);
        assert_eq!(back.len(), expected.len());
        assert!(back == expected, "the contents differ");
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            allocated < 2 * CHUNK as u64,
            "{allocated} bytes allocated: no holes"
        );
    }

    #[test]
    fn small_files_are_written_inline_big_ones_behind_and_both_whole() {
        let d = tempfile::tempdir().unwrap();
        for (size, inline) in [(100u64, true), (BEHIND_FROM, false)] {
            let path = d.path().join(format!("f{size}"));
            let mut w = CopyWriter::for_size(File::create(&path).unwrap(), size).unwrap();
            assert_eq!(matches!(w, CopyWriter::Inline(_)), inline, "{size}");
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8 + 1).collect();
            for piece in data.chunks(CHUNK / 3) {
                w.write_owned(piece.to_vec()).unwrap();
            }
            w.finish().unwrap();
            assert!(std::fs::read(&path).unwrap() == data, "{size} bytes differ");
        }
    }

    #[test]
    fn zeros_are_told_from_data_at_any_alignment() {
        let mut b = vec![0u8; 1000];
        assert!(is_zeros(&b[3..]));
        b[999] = 1;
        assert!(!is_zeros(&b[3..]));
        b[999] = 0;
        b[4] = 1;
        assert!(!is_zeros(&b[3..]));
        assert!(is_zeros(&[]));
    }

    #[test]
    fn a_failed_write_is_reported() {
        // /dev/full: every write fails with ENOSPC.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut w = WriteBehind::new(full).unwrap();
        let chunk = vec![1u8; CHUNK];
        let mut failed = None;
        // More than the queue holds: some write must see the failure.
        for _ in 0..16 {
            if let Err(e) = w.write_all(&chunk) {
                failed = Some(e);
                break;
            }
        }
        let e = match failed {
            Some(e) => e,
            None => w.finish().unwrap_err(),
        };
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    }
}
