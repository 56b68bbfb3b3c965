//! Stream tests: round trips, and every way a stored file can be changed.
//! Most use 1 KiB chunks so that boundaries are cheap to reach.

use std::io::{self, Read, Write};

use crate::*;

const C: usize = 1024;
const ID: &[u8] = b"pages-1.img";
/// Where chunk `i` starts in a file with chunk size `C`.
fn at(i: usize) -> usize {
    HEADER_LEN + i * (C + TAG_LEN)
}

fn key() -> Key {
    Key::from_bytes([0x42; KEY_LEN])
}

fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Written in uneven pieces, to cross chunk boundaries mid-write.
fn encrypt_with(plain: &[u8], key: &Key, id: &[u8], chunk: u32) -> Vec<u8> {
    let mut w = EncryptWriter::with_chunk_size(Vec::new(), key, id, chunk).unwrap();
    for piece in plain.chunks(777) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap()
}

fn encrypt(plain: &[u8]) -> Vec<u8> {
    encrypt_with(plain, &key(), ID, C as u32)
}

fn decrypt_with(file: &[u8], key: &Key, id: &[u8]) -> io::Result<Vec<u8>> {
    let mut r = DecryptReader::new(file, key, id)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

fn decrypt(file: &[u8]) -> io::Result<Vec<u8>> {
    decrypt_with(file, &key(), ID)
}

/// The crate error a refused file gave; panics if it was accepted.
fn refused(r: io::Result<Vec<u8>>) -> Error {
    let e = match r {
        Ok(out) => panic!("accepted, {} bytes", out.len()),
        Err(e) => e,
    };
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    let inner = e.into_inner().expect("carries an Error");
    *inner.downcast::<Error>().expect("carries an Error")
}

#[test]
fn round_trips() {
    for len in [0, 1, C - 1, C, C + 1, 2 * C, 3 * C + 5, 3 << 20] {
        let plain = data(len);
        let file = encrypt(&plain);
        assert_eq!(
            file.len() as u64,
            encrypted_len(len as u64, C as u32),
            "{len}"
        );
        assert_eq!(decrypt(&file).unwrap(), plain, "{len}");
    }
    let d = DEFAULT_CHUNK as usize;
    for len in [0, 1, d - 1, d, d + 1, 5 << 20] {
        let plain = data(len);
        let mut w = EncryptWriter::new(Vec::new(), &key(), ID).unwrap();
        w.write_all(&plain).unwrap();
        let file = w.finish().unwrap();
        assert_eq!(file.len() as u64, encrypted_len(len as u64, DEFAULT_CHUNK));
        assert_eq!(decrypt(&file).unwrap(), plain, "{len}");
    }
}

#[test]
fn reads_of_any_size() {
    let plain = data(3 * C + 100);
    let file = encrypt(&plain);
    for size in [1, 333, C, 5 * C] {
        let mut r = DecryptReader::new(&file[..], &key(), ID).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; size];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, plain, "{size}");
        // Still EOF, not an error, after EOF.
        assert_eq!(r.read(&mut buf).unwrap(), 0);
    }
}

#[test]
fn same_plaintext_encrypts_differently() {
    let plain = data(100);
    assert_ne!(encrypt(&plain), encrypt(&plain));
}

#[test]
fn wrong_key_is_named_before_decryption() {
    let file = encrypt(&data(2 * C));
    let other = Key::from_bytes([7; KEY_LEN]);
    match refused(decrypt_with(&file, &other, ID)) {
        Error::WrongKey { image, host } => {
            assert_eq!(image, key().id());
            assert_eq!(host, other.id());
        }
        e => panic!("{e:?}"),
    }
    // A header made to claim the other key's id does not get past the tags.
    let mut forged = file.clone();
    forged[16..24].copy_from_slice(&other.id().0);
    assert!(matches!(
        refused(decrypt_with(&forged, &other, ID)),
        Error::Tampered { chunk: 0 }
    ));
}

#[test]
fn another_files_identity_refused() {
    let file = encrypt(&data(2 * C));
    assert!(matches!(
        refused(decrypt_with(&file, &key(), b"pages-2.img")),
        Error::Tampered { chunk: 0 }
    ));
    assert!(matches!(
        refused(decrypt_with(&file, &key(), b"")),
        Error::Tampered { chunk: 0 }
    ));
}

/// Every single byte of a file of three full chunks and a short one.
#[test]
fn every_flipped_byte_refused() {
    let file = encrypt(&data(3 * C + 100));
    for i in 0..file.len() {
        let mut bad = file.clone();
        bad[i] ^= 0x01;
        let e = refused(decrypt(&bad));
        let ok = match i {
            0..=15 => matches!(e, Error::BadHeader(_)),
            16..=23 => matches!(e, Error::WrongKey { .. }),
            // Nonce prefix: every chunk's nonce changed.
            24..=42 => matches!(e, Error::Tampered { chunk: 0 }),
            _ => {
                let chunk = ((i - HEADER_LEN) / (C + TAG_LEN)) as u64;
                matches!(e, Error::Tampered { chunk: c } if c == chunk)
            }
        };
        assert!(ok, "byte {i}: {e:?}");
    }
}

#[test]
fn every_cut_refused() {
    let file = encrypt(&data(3 * C + 100));
    for len in 0..file.len() {
        let e = refused(decrypt(&file[..len]));
        let boundary = (0..=3).any(|i| len == at(i));
        if boundary || len < HEADER_LEN {
            assert!(matches!(e, Error::Truncated), "cut at {len}: {e:?}");
        } else {
            assert!(
                matches!(e, Error::Truncated | Error::Tampered { .. }),
                "cut at {len}: {e:?}"
            );
        }
    }
}

#[test]
fn cut_at_a_boundary_of_an_exact_multiple_refused() {
    let file = encrypt(&data(3 * C));
    for i in 0..3 {
        assert!(matches!(refused(decrypt(&file[..at(i)])), Error::Truncated));
    }
}

#[test]
fn appended_bytes_refused() {
    for len in [3 * C, 3 * C + 100, 0] {
        let file = encrypt(&data(len));
        let last = file[file.len() - (len % C) - TAG_LEN..].to_vec();
        for extra in [
            vec![0u8],
            vec![0; 15],
            vec![0; 16],
            vec![0; 17],
            vec![0; C + 16],
            last,
        ] {
            let mut bad = file.clone();
            bad.extend_from_slice(&extra);
            let e = refused(decrypt(&bad));
            // After a full final chunk the reader sees the flag; after a
            // short one the appended bytes merge into it.
            if len % C == 0 && len > 0 {
                assert!(
                    matches!(e, Error::TrailingData),
                    "{len}+{}: {e:?}",
                    extra.len()
                );
            } else {
                assert!(
                    matches!(e, Error::Tampered { .. } | Error::TrailingData),
                    "{len}+{}: {e:?}",
                    extra.len()
                );
            }
        }
    }
}

fn chunks(file: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let head = file[..HEADER_LEN].to_vec();
    let body = file[HEADER_LEN..]
        .chunks(C + TAG_LEN)
        .map(<[u8]>::to_vec)
        .collect();
    (head, body)
}

fn join(head: &[u8], body: &[Vec<u8>]) -> Vec<u8> {
    let mut out = head.to_vec();
    for c in body {
        out.extend_from_slice(c);
    }
    out
}

#[test]
fn reordered_repeated_or_dropped_chunks_refused() {
    let (head, body) = chunks(&encrypt(&data(4 * C + 10)));
    assert_eq!(body.len(), 5);
    let tampered_at = |b: Vec<Vec<u8>>, want: u64| {
        let e = refused(decrypt(&join(&head, &b)));
        assert!(
            matches!(e, Error::Tampered { chunk } if chunk == want),
            "{e:?}"
        );
    };
    let mut swapped = body.clone();
    swapped.swap(1, 2);
    tampered_at(swapped, 1);
    let mut repeated = body.clone();
    repeated[2] = body[1].clone();
    tampered_at(repeated, 2);
    let mut dropped = body.clone();
    dropped.remove(1);
    tampered_at(dropped, 1);
    let mut inserted = body.clone();
    inserted.insert(2, body[1].clone());
    tampered_at(inserted, 2);
}

#[test]
fn chunks_of_another_file_refused() {
    let a = encrypt(&data(3 * C));
    let b = encrypt(&data(3 * C));
    let (head_a, _) = chunks(&a);
    let (_, body_b) = chunks(&b);
    assert!(matches!(
        refused(decrypt(&join(&head_a, &body_b))),
        Error::Tampered { chunk: 0 }
    ));
}

#[test]
fn a_writer_that_never_finished_leaves_a_truncated_file() {
    let mut out = Vec::new();
    {
        let mut w = EncryptWriter::with_chunk_size(&mut out, &key(), ID, C as u32).unwrap();
        w.write_all(&data(3 * C + 5)).unwrap();
        // Dropped without finish, as when the writer dies half way.
    }
    assert_eq!(out.len(), at(3));
    assert!(matches!(refused(decrypt(&out)), Error::Truncated));
}

#[test]
fn a_failed_reader_never_reports_eof() {
    let mut file = encrypt(&data(3 * C));
    file[at(1) + 5] ^= 1;
    let mut r = DecryptReader::new(&file[..], &key(), ID).unwrap();
    let mut buf = vec![0u8; C];
    assert_eq!(r.read(&mut buf).unwrap(), C);
    let e = r.read(&mut buf).unwrap_err();
    assert!(matches!(Error::of(&e), Some(Error::Tampered { chunk: 1 })));
    for _ in 0..3 {
        let e = r.read(&mut buf).unwrap_err();
        assert!(matches!(Error::of(&e), Some(Error::Poisoned)));
    }
}

#[test]
fn foreign_and_short_files_refused() {
    assert!(matches!(refused(decrypt(b"")), Error::Truncated));
    assert!(matches!(refused(decrypt(&[0u8; 10])), Error::Truncated));
    let zstd_frame = [0x28, 0xb5, 0x2f, 0xfd].repeat(20);
    assert!(matches!(
        refused(decrypt(&zstd_frame)),
        Error::BadHeader(HeaderProblem::Magic)
    ));
    // A header and nothing else: no final chunk.
    let file = encrypt(&[]);
    assert!(matches!(
        refused(decrypt(&file[..HEADER_LEN])),
        Error::Truncated
    ));
}

#[test]
fn chunk_size_is_checked() {
    for bad in [0, 1000, MAX_CHUNK * 2] {
        let e = EncryptWriter::with_chunk_size(Vec::new(), &key(), ID, bad)
            .err()
            .unwrap();
        assert!(matches!(Error::of(&e), Some(Error::ChunkSize(b)) if *b == bad));
    }
}

/// Counts writes and fails on the `fail_at`-th.
struct Flaky {
    writes: usize,
    fail_at: usize,
}

impl Write for Flaky {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.writes += 1;
        if self.writes == self.fail_at {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "full"));
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_writer_poisoned_by_a_failed_write_stays_failed() {
    let sink = Flaky {
        writes: 0,
        fail_at: 2,
    };
    let mut w = EncryptWriter::with_chunk_size(sink, &key(), ID, C as u32).unwrap();
    let e = w.write_all(&data(2 * C + 1)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    let e = w.write(&[1]).unwrap_err();
    assert!(matches!(Error::of(&e), Some(Error::Poisoned)));
    let e = w.finish().err().unwrap();
    assert!(matches!(Error::of(&e), Some(Error::Poisoned)));
}

#[test]
fn encrypted_len_counts_a_tag_per_chunk() {
    let h = HEADER_LEN as u64;
    assert_eq!(encrypted_len(0, 1024), h + 16);
    assert_eq!(encrypted_len(1, 1024), h + 1 + 16);
    assert_eq!(encrypted_len(1024, 1024), h + 1024 + 16);
    assert_eq!(encrypted_len(1025, 1024), h + 1025 + 32);
}

/// The header is associated data: a chunk size changed to another valid
/// one would, for a short file, still frame it the same way.
#[test]
fn header_is_authenticated() {
    let mut file = encrypt(&data(100));
    file[12..16].copy_from_slice(&(2 * C as u32).to_be_bytes());
    assert!(matches!(
        refused(decrypt(&file)),
        Error::Tampered { chunk: 0 }
    ));
}

/// Small writes are gathered; a write holding a whole chunk and more is
/// sealed straight from the caller's bytes; both give the same framing.
#[test]
fn any_write_pattern_gives_the_same_framing() {
    for len in [3 * C, 3 * C + 100, C + 1] {
        let plain = data(len);
        let patterns: [&[usize]; 6] = [&[1], &[777], &[C], &[C + 1], &[len], &[10, 5 * C]];
        for pattern in patterns {
            let mut w = EncryptWriter::with_chunk_size(Vec::new(), &key(), ID, C as u32).unwrap();
            let mut rest = &plain[..];
            for size in pattern.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = (*size).min(rest.len());
                w.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
            }
            let file = w.finish().unwrap();
            assert_eq!(
                file.len() as u64,
                encrypted_len(len as u64, C as u32),
                "{len} {pattern:?}"
            );
            assert_eq!(decrypt(&file).unwrap(), plain, "{len} {pattern:?}");
        }
    }
}
