//! Encrypted streamed files: listed with their cipher and key id, the
//! image's key checked before any file is opened, the tags checked as the
//! verified copy is decoded.

use std::fs;
use std::sync::Arc;

use arch_imgcrypt::Key;
use arch_imgstream::{Crypt, FileRecord};

use crate::tests::info;
use crate::tests_stream::{store_in, ZSTD_1};
use crate::*;

const IMAGE_ID: &str = "0123456789abcdef0123456789abcdef";

fn key(b: u8) -> Arc<Key> {
    Arc::new(Key::from_bytes([b; 32]))
}

/// Stores `pages-1.img` as the capture does (zstd, then sealed with the
/// identity of image `IMAGE_ID` of ns/k).
fn encrypted_pages(criu: &std::path::Path, k: &Arc<Key>) -> FileRecord {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 13) as u8).collect();
    let crypt = Crypt {
        key: k.clone(),
        namespace: "ns".into(),
        image_key: "k".into(),
        image_id: IMAGE_ID.into(),
    };
    store_in(criu, "pages-1.img", &data, ZSTD_1, Some(&crypt))
}

fn commit(store: &ImageStore, k: &Arc<Key>) -> Image {
    let st = store.begin("ns", "k").unwrap();
    fs::create_dir(st.path().join(CRIU_DIR)).unwrap();
    let rec = encrypted_pages(&st.path().join(CRIU_DIR), k);
    let mut st = st;
    st.add_streamed(&[rec]);
    st.commit(info()).unwrap()
}

fn restore(root: &std::path::Path, host: HostKey, dest: &str) -> Result<Image> {
    let store = ImageStore::new(root).with_encryption(host);
    let taken = store.take("ns", "k").unwrap();
    taken.verify_into(&root.parent().unwrap().join(dest))
}

#[test]
fn encrypted_image_lists_its_cipher_and_restores_with_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let img = commit(&ImageStore::new(&root), &key(1));
    let e = img.manifest().encryption().unwrap();
    assert_eq!(e.cipher, "xchacha20poly1305-stream");
    assert_eq!(e.key_id, key(1).id().to_string());
    // The manifest round-trips through its own validation.
    let m = Manifest::parse(&img.manifest().to_json(), "m".as_ref()).unwrap();
    assert_eq!(&m, img.manifest());
    let copy = restore(&root, HostKey::Loaded(key(1)), "copy").unwrap();
    let back = fs::read(copy.criu_dir().join("pages-1.img")).unwrap();
    assert_eq!(back.len(), 100_000);
}

#[test]
fn a_wrong_or_missing_key_is_named_before_any_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    commit(&ImageStore::new(&root), &key(1));
    let e = restore(&root, HostKey::Loaded(key(2)), "c1").unwrap_err();
    let (img, host) = (key(1).id().to_string(), key(2).id().to_string());
    assert!(
        matches!(&e, Error::WrongDecryptionKey { image, host: h } if *image == img && *h == host),
        "{e}"
    );
    assert!(!tmp.path().join("c1").exists(), "nothing copied");
    let e = restore(&root, HostKey::None, "c2").unwrap_err();
    assert!(matches!(e, Error::NoDecryptionKey { .. }), "{e}");
    assert!(e.to_string().contains(&img), "{e}");
    let e = restore(&root, HostKey::Unloadable("too open".into()), "c3").unwrap_err();
    assert!(e.to_string().contains("too open"), "{e}");
}

fn edited(img: &Image, edit: impl FnOnce(&mut serde_json::Value)) -> Result<Manifest> {
    let mut v: serde_json::Value = serde_json::from_slice(&img.manifest().to_json()).unwrap();
    edit(&mut v);
    Manifest::parse(&serde_json::to_vec(&v).unwrap(), "m".as_ref())
}

#[test]
fn manifest_encryption_is_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let img = commit(&ImageStore::new(tmp.path().join("root")), &key(1));
    let idx = img
        .manifest()
        .files
        .iter()
        .position(|f| f.stream.is_some())
        .unwrap();
    let enc = move |v: &mut serde_json::Value| v["files"][idx]["stream"]["encryption"].clone();
    for (field, bad) in [
        ("cipher", "aes-256-gcm"),
        ("key_id", "xyz"),
        ("image_id", "00"),
    ] {
        let e = edited(&img, |v| {
            let mut e = enc(v);
            e[field] = bad.into();
            v["files"][idx]["stream"]["encryption"] = e;
        })
        .unwrap_err();
        assert!(e.to_string().contains(bad), "{field}: {e}");
    }
    // An encrypted entry must carry the cipher's suffix.
    let e = edited(&img, |v| {
        v["files"][idx]["path"] = "criu/pages-1.img.zst".into();
    })
    .unwrap_err();
    assert!(e.to_string().contains("suffix"), "{e}");
    // Unknown fields are refused.
    let e = edited(&img, |v| {
        let mut e = enc(v);
        e["key"] = "00".into();
        v["files"][idx]["stream"]["encryption"] = e;
    });
    assert!(e.is_err());
    // One encryption per image: a streamed file without it is refused.
    let e = edited(&img, |v| {
        let files = v["files"].as_array_mut().unwrap();
        let mut plain = files[idx].clone();
        plain["path"] = "criu/core-1.img.zst".into();
        plain["stream"]
            .as_object_mut()
            .unwrap()
            .remove("encryption");
        files.push(plain);
        let total: u64 = files.iter().map(|f| f["size"].as_u64().unwrap()).sum();
        v["total_size"] = total.into();
    })
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("not encrypted as the image's other files"),
        "{e}"
    );
}

#[test]
fn one_file_reads_back_decrypted_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let store = ImageStore::new(&root);
    let st = store.begin("ns", "k").unwrap();
    fs::create_dir(st.path().join(CRIU_DIR)).unwrap();
    let rec = encrypted_pages(&st.path().join(CRIU_DIR), &key(1));
    fs::write(st.path().join(CRIU_DIR).join("plain.txt"), b"plain bytes").unwrap();
    let mut st = st;
    st.add_streamed(&[rec]);
    let img = st.commit(info()).unwrap();
    let (dir, m) = (img.dir(), img.manifest());
    let read = |name: &str, host: &HostKey| {
        let mut out = Vec::new();
        copy_out(dir, m, name, host, &mut out).map(|n| (n, out))
    };
    let (n, pages) = read("criu/pages-1.img", &HostKey::Loaded(key(1))).unwrap();
    assert_eq!((n, pages.len()), (100_000, 100_000));
    assert_eq!(pages[14], 1, "the original bytes");
    let (_, plain) = read("criu/plain.txt", &HostKey::None).unwrap();
    assert_eq!(plain, b"plain bytes");
    let e = read("criu/pages-1.img", &HostKey::Loaded(key(2))).unwrap_err();
    assert!(matches!(e, Error::WrongDecryptionKey { .. }), "{e}");
    let e = read("criu/pages-1.img", &HostKey::None).unwrap_err();
    assert!(matches!(e, Error::NoDecryptionKey { .. }), "{e}");
    let e = read("criu/absent.img", &HostKey::None).unwrap_err();
    assert!(matches!(e, Error::MissingFile { .. }), "{e}");
    // A plain file changed after the commit: printed, then refused.
    fs::write(dir.join(CRIU_DIR).join("plain.txt"), b"other bytes").unwrap();
    let e = read("criu/plain.txt", &HostKey::None).unwrap_err();
    assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
}
