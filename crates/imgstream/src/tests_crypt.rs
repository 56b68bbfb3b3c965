//! Encrypted captures: what is stored is the cipher's, it decodes back
//! with the key and the file's identity, and nothing else opens it.

use std::fs;
use std::sync::Arc;

use arch_imgcrypt::{Error as CryptError, Key};

use crate::tests::{capture_with, files, ZSTD};
use crate::{Codec, Crypt, FileRecord, StreamError};

fn crypt(key: [u8; 32], image_id: &str) -> Crypt {
    Crypt {
        key: Arc::new(Key::from_bytes(key)),
        namespace: "default".into(),
        image_key: "web".into(),
        image_id: image_id.into(),
    }
}

const ID: &str = "00112233445566778899aabbccddeeff";

fn decode(dir: &std::path::Path, r: &FileRecord, c: &Crypt) -> crate::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut f = fs::File::open(dir.join(&r.stored_name)).unwrap();
    crate::decode_verified(r, &mut f, &mut out, Some((&c.key, &c.identity(&r.name))))?;
    Ok(out)
}

fn cause(e: &StreamError) -> Option<&CryptError> {
    match e {
        StreamError::Crypt { source, .. } => CryptError::of(source),
        _ => None,
    }
}

#[test]
fn encrypted_capture_round_trip() {
    for codec in [ZSTD, Codec::None] {
        let d = tempfile::tempdir().unwrap();
        let c = crypt([7; 32], ID);
        let recs = capture_with(d.path(), codec, Some(c.clone()));
        for (name, bytes) in files() {
            let r = recs.iter().find(|r| r.name == name).unwrap();
            assert!(r.stored_name.ends_with(".enc"), "{}", r.stored_name);
            let e = r.encryption.as_ref().unwrap();
            assert_eq!(e.key_id, c.key.id().to_string());
            assert_eq!(e.image_id, ID);
            e.check().unwrap();
            let stored = fs::read(d.path().join(&r.stored_name)).unwrap();
            assert_eq!(&stored[..8], &arch_imgcrypt::MAGIC, "{codec:?} {name}");
            assert_eq!(decode(d.path(), r, &c).unwrap(), bytes, "{codec:?} {name}");
        }
    }
}

#[test]
fn another_key_or_image_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let recs = capture_with(d.path(), ZSTD, Some(crypt([7; 32], ID)));
    let r = recs.iter().find(|r| r.name == "pages-1.img").unwrap();
    let e = decode(d.path(), r, &crypt([8; 32], ID)).unwrap_err();
    assert!(
        matches!(cause(&e), Some(CryptError::WrongKey { .. })),
        "{e}"
    );
    // Same key and name, another image: the identity differs.
    let other = "ffeeddccbbaa99887766554433221100";
    let e = decode(d.path(), r, &crypt([7; 32], other)).unwrap_err();
    assert!(
        matches!(cause(&e), Some(CryptError::Tampered { .. })),
        "{e}"
    );
    // No key at all.
    let mut f = fs::File::open(d.path().join(&r.stored_name)).unwrap();
    let e = crate::decode_verified(r, &mut f, &mut Vec::new(), None).unwrap_err();
    assert!(e.to_string().contains("no key"), "{e}");
}

/// The tag check is effective on its own: with the stored digest made to
/// match the changed ciphertext, the flip is still refused.
#[test]
fn a_flipped_byte_fails_its_tag_even_with_a_matching_digest() {
    use sha2::Digest;
    for at in [50usize, 100_000, usize::MAX] {
        let d = tempfile::tempdir().unwrap();
        let c = crypt([7; 32], ID);
        let recs = capture_with(d.path(), ZSTD, Some(c.clone()));
        let r = recs.iter().find(|r| r.name == "pages-1.img").unwrap();
        let path = d.path().join(&r.stored_name);
        let mut b = fs::read(&path).unwrap();
        let at = at.min(b.len() - 1);
        b[at] ^= 0x01;
        fs::write(&path, &b).unwrap();
        let r = FileRecord {
            stored_sha256: hex::encode(sha2::Sha256::digest(&b)),
            ..r.clone()
        };
        let e = decode(d.path(), &r, &c).unwrap_err();
        assert!(
            matches!(cause(&e), Some(CryptError::Tampered { .. })),
            "at {at}: {e}"
        );
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// An encrypted file's original digest is keyed: not the plaintext's
/// sha256 (which would confirm a guess), but the key's HMAC over the
/// file's identity and its bytes, and the record says so.
#[test]
fn an_encrypted_file_records_a_keyed_original_digest() {
    let d = tempfile::tempdir().unwrap();
    let c = crypt([7; 32], ID);
    let recs = capture_with(d.path(), ZSTD, Some(c.clone()));
    for (name, bytes) in files() {
        let r = recs.iter().find(|r| r.name == name).unwrap();
        let e = r.encryption.as_ref().unwrap();
        assert_eq!(e.digest.as_deref(), Some(arch_imgcrypt::KEYED_DIGEST_NAME));
        assert_ne!(r.original_sha256, sha256_hex(&bytes), "{name}");
        let mut keyed = arch_imgcrypt::KeyedDigest::new(&c.key, &c.identity(name));
        keyed.update(&bytes);
        assert_eq!(r.original_sha256, keyed.hex(), "{name}");
    }
}

/// A keyed digest that does not match (another file's, or the plain one
/// with the record still saying keyed) is refused after decoding.
#[test]
fn a_wrong_keyed_digest_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let c = crypt([7; 32], ID);
    let recs = capture_with(d.path(), ZSTD, Some(c.clone()));
    let r = recs.iter().find(|r| r.name == "pages-1.img").unwrap();
    let plain = decode(d.path(), r, &c).unwrap();
    let r = FileRecord {
        original_sha256: sha256_hex(&plain),
        ..r.clone()
    };
    let e = decode(d.path(), &r, &c).unwrap_err();
    assert!(matches!(e, StreamError::OriginalDigest { .. }), "{e}");
}

/// An image written before keyed digests (format 4: no `digest`, the
/// plaintext's sha256) still decodes.
#[test]
fn a_plain_digest_without_the_keyed_mark_still_decodes() {
    let d = tempfile::tempdir().unwrap();
    let c = crypt([7; 32], ID);
    let recs = capture_with(d.path(), ZSTD, Some(c.clone()));
    for r in &recs {
        let plain = decode(d.path(), r, &c).unwrap();
        let mut e = r.encryption.clone().unwrap();
        e.digest = None;
        let old = FileRecord {
            original_sha256: sha256_hex(&plain),
            encryption: Some(e),
            ..r.clone()
        };
        assert_eq!(decode(d.path(), &old, &c).unwrap(), plain, "{}", r.name);
    }
}
