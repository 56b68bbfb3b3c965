//! Bytes cut into chunks and handed, in order, to a thread of their own:
//! the one mechanism behind hashing on a second thread (hash_behind.rs)
//! and arch-image's writes on a third (its write_behind.rs).
//!
//! Chunks are moved, never shared, so what the worker sees is exactly what
//! was written, in order. The queue is bounded, so a stalled worker stops
//! the writer; buffers the worker is done with come back for reuse.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

pub use crate::pipe::CHUNK;

/// Chunks that may wait for the worker: enough to ride out an uneven
/// pace, few enough that a stalled worker soon stops the writer.
const QUEUED: usize = 4;

/// A sender and the worker's end of its queue.
pub fn chunk_channel() -> (ChunkSender, Chunks) {
    let (to_worker, queue) = sync_channel(QUEUED);
    // Bounded too: a sender that never takes a spare (one that only sends
    // owned chunks) must not keep every buffer it ever sent.
    let (give_back, spare) = sync_channel(QUEUED);
    (
        ChunkSender {
            buf: Vec::new(),
            to_worker: Some(to_worker),
            spare,
        },
        Chunks { queue, give_back },
    )
}

/// The writer's side: buffers writes into chunks of [`CHUNK`] bytes.
/// Once the worker has stopped, every write fails with a placeholder
/// error: the worker's own error is the one to report.
pub struct ChunkSender {
    buf: Vec<u8>,
    to_worker: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
}

impl ChunkSender {
    /// Sends what is buffered, if anything.
    pub fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::take(&mut self.buf);
        self.send(full)
    }

    /// Sends `chunk` after what is buffered, without copying it.
    pub fn send_owned(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        self.hand_over()?;
        match chunk.is_empty() {
            true => Ok(()),
            false => self.send(chunk),
        }
    }

    /// Ends the worker's queue once it has taken what was sent; what is
    /// still buffered is dropped (call [`Self::hand_over`] first).
    pub fn close(&mut self) {
        self.to_worker.take();
    }

    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        let sent = self.to_worker.as_ref().map(|tx| tx.send(chunk));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(io::Error::other("the chunk worker stopped")),
        }
    }

    fn next_buffer(&self) -> Vec<u8> {
        match self.spare.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(CHUNK),
        }
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf = self.next_buffer();
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.hand_over()?;
        }
        Ok(n)
    }

    /// Hands over what is buffered without waiting for the worker.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

/// The worker's side of the queue.
pub struct Chunks {
    queue: Receiver<Vec<u8>>,
    give_back: SyncSender<Vec<u8>>,
}

impl Chunks {
    /// The next chunk, or `None` once the sender is closed or dropped.
    pub fn next_chunk(&self) -> Option<Vec<u8>> {
        self.queue.recv().ok()
    }

    /// Returns a buffer the worker is done with to the sender, or frees it
    /// if the sender has enough spares (or is gone).
    pub fn recycle(&self, chunk: Vec<u8>) {
        let _ = self.give_back.try_send(chunk);
    }
}

/// A writer that can take a whole chunk and keep it, sparing a copy
/// (arch-image's write-behind hands it to its writer thread as it is).
pub trait OwnedWrite: Write + Send {
    /// Writes `chunk` after what was written before; gives the buffer
    /// back for reuse unless it kept it.
    fn write_owned(&mut self, chunk: Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        self.write_all(&chunk)?;
        Ok(Some(chunk))
    }
}

impl OwnedWrite for io::Sink {}
impl OwnedWrite for Vec<u8> {}
impl OwnedWrite for std::fs::File {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_arrive_whole_in_order_and_buffers_come_back() {
        let (mut tx, rx) = chunk_channel();
        let worker = std::thread::spawn(move || {
            let (mut got, mut sizes) = (Vec::new(), Vec::new());
            while let Some(c) = rx.next_chunk() {
                got.extend_from_slice(&c);
                sizes.push(c.len());
                rx.recycle(c);
            }
            (got, sizes)
        });
        let mut expected = Vec::new();
        for i in 0..700u32 {
            let piece = vec![(i % 251) as u8; (i as usize * 4099) % 9000];
            tx.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
        }
        tx.send_owned(b"owned".to_vec()).unwrap();
        expected.extend_from_slice(b"owned");
        tx.write_all(b"tail").unwrap();
        expected.extend_from_slice(b"tail");
        tx.hand_over().unwrap();
        tx.close();
        let (got, sizes) = worker.join().unwrap();
        assert!(got == expected, "the bytes differ");
        // Every chunk but the owned one and the last two is full.
        let n = sizes.len();
        assert!(sizes[..n - 3].iter().all(|&s| s == CHUNK), "{sizes:?}");
    }

    #[test]
    fn a_sender_of_owned_chunks_keeps_no_more_than_a_few_spares() {
        let (mut tx, rx) = chunk_channel();
        let worker = std::thread::spawn(move || {
            while let Some(c) = rx.next_chunk() {
                rx.recycle(c);
            }
        });
        for _ in 0..64 {
            tx.send_owned(vec![1; 4096]).unwrap();
        }
        tx.close();
        worker.join().unwrap();
        assert!(tx.spare.try_iter().count() <= QUEUED);
    }

    #[test]
    fn writes_fail_once_the_worker_is_gone() {
        let (mut tx, rx) = chunk_channel();
        drop(rx);
        let e = tx.write_all(&vec![1; CHUNK]).unwrap_err();
        assert!(e.to_string().contains("stopped"), "{e}");
        assert!(tx.send_owned(vec![1]).is_err());
    }
}
