//! Encrypt and decrypt throughput on one core, in memory (no disk):
//! `cargo run --release -p arch-imgcrypt --example throughput [MiB] [chunk]`.
//! Defaults: 1024 MiB, 64 KiB chunks. Prints MB/s (10^6 bytes) of
//! plaintext per wall-clock second and per second of this thread's CPU
//! time: on a shared machine the second is the one that says what the
//! cipher costs.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use arch_imgcrypt::{DecryptReader, EncryptWriter, Key, DEFAULT_CHUNK};
use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::XChaCha20Poly1305;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(1024, |a| a.parse().expect("MiB"));
    let chunk: u32 = args
        .next()
        .map_or(DEFAULT_CHUNK, |a| a.parse().expect("chunk"));
    let total = mib << 20;
    // 1 MiB of pseudo-random bytes, written over and over: zstd output is
    // incompressible too.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let block: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let key = Key::from_bytes([0x5a; 32]);
    let id = b"pages-1.img";

    // Touch the pages first so the timing is not page faults (vec![0; n]
    // would get untouched zero pages from calloc).
    #[allow(clippy::slow_vector_initialization)]
    let mut stored = {
        let mut v = Vec::with_capacity(total + total / 1024 + 4096);
        v.resize(v.capacity(), 0);
        v
    };
    stored.clear();
    let (start, cpu) = (Instant::now(), thread_cpu());
    let mut w = EncryptWriter::with_chunk_size(&mut stored, &key, id, chunk).unwrap();
    for _ in 0..mib {
        w.write_all(&block).unwrap();
    }
    w.finish().unwrap();
    let (enc, enc_cpu) = (start.elapsed(), thread_cpu() - cpu);

    let (start, cpu) = (Instant::now(), thread_cpu());
    let mut r = DecryptReader::new(&stored[..], &key, id).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if got == 0 {
            assert_eq!(&buf[..n], &block[..n]);
        }
        got += n;
    }
    let (dec, dec_cpu) = (start.elapsed(), thread_cpu() - cpu);
    assert_eq!(got, total);

    // Baseline: the cipher alone on the same chunks, in place, no framing,
    // no copies: what the writer's buffering and I/O add on top of it.
    let cipher = XChaCha20Poly1305::new(&[0x5a; 32].into());
    let mut chunk_buf = vec![0u8; chunk as usize];
    let (start, cpu) = (Instant::now(), thread_cpu());
    for i in 0..total / chunk as usize {
        let mut nonce = [0u8; 24];
        nonce[16..24].copy_from_slice(&(i as u64).to_be_bytes());
        let tag = cipher
            .encrypt_inout_detached(&nonce.into(), b"", InOutBuf::from(&mut chunk_buf[..]))
            .unwrap();
        std::hint::black_box(&tag);
    }
    let (raw, raw_cpu) = (start.elapsed(), thread_cpu() - cpu);

    let mbs = |d: Duration| total as f64 / d.as_secs_f64() / 1e6;
    println!(
        "{mib} MiB, chunk {chunk}: encrypt {:.0} MB/s wall, {:.0} MB/s CPU; \
         decrypt {:.0} MB/s wall, {:.0} MB/s CPU; \
         cipher alone {:.0} MB/s wall, {:.0} MB/s CPU; stored {} bytes",
        mbs(enc),
        mbs(enc_cpu),
        mbs(dec),
        mbs(dec_cpu),
        mbs(raw),
        mbs(raw_cpu),
        stored.len()
    );
}
