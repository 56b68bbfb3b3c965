//! The composition the image streaming pipeline is to use: zstd's encoder
//! writing into `EncryptWriter`, zstd's decoder reading from
//! `DecryptReader`, the file's name as its identity.

use std::io::{Read, Write};

use arch_imgcrypt::{DecryptReader, EncryptWriter, Error, Key};

fn plain() -> Vec<u8> {
    // Half zero pages, half pseudo-random, like the benchmark's memory.
    let mut x: u64 = 88172645463325252;
    let mut v = vec![0u8; 1 << 20];
    v.extend((0..1 << 20).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    v
}

fn store(key: &Key, name: &str, data: &[u8]) -> Vec<u8> {
    let enc = EncryptWriter::new(Vec::new(), key, name.as_bytes()).unwrap();
    let mut z = zstd::stream::write::Encoder::new(enc, 3).unwrap();
    z.include_checksum(true).unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap().finish().unwrap()
}

#[test]
fn zstd_then_encryption_round_trips() {
    let key = Key::from_bytes([3; 32]);
    let data = plain();
    let stored = store(&key, "pages-1.img", &data);
    // Compressed before it was encrypted: the zero half is gone.
    assert!(stored.len() < data.len() * 6 / 10, "{}", stored.len());
    let dec = DecryptReader::new(&stored[..], &key, b"pages-1.img").unwrap();
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(dec)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, data);
}

#[test]
fn a_flipped_byte_surfaces_through_the_decoder_as_our_error() {
    let key = Key::from_bytes([3; 32]);
    let mut stored = store(&key, "pages-1.img", &plain());
    let mid = stored.len() / 2;
    stored[mid] ^= 0x10;
    let dec = DecryptReader::new(&stored[..], &key, b"pages-1.img").unwrap();
    let mut out = Vec::new();
    let e = zstd::stream::read::Decoder::new(dec)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
    assert!(
        matches!(Error::of(&e), Some(Error::Tampered { .. })),
        "{e:?}"
    );
}
