//! Format 4: an encrypted image's own files (config.json, rootfs-diff.tar)
//! sealed at its top level like CRIU's images, decoded into the restore
//! copy under their own names; each kind of file only in its own place.

use std::fs;
use std::sync::Arc;

use arch_imgcrypt::Key;
use arch_imgstream::Crypt;

use crate::tests::info;
use crate::tests_stream::{store_in, ZSTD_1};
use crate::*;

const SECRET: &[u8] = b"{\"process\":{\"env\":[\"TOKEN=hunter2\"]}}";

fn crypt(k: &Arc<Key>) -> Crypt {
    Crypt {
        key: k.clone(),
        namespace: "ns".into(),
        image_key: "k".into(),
        image_id: "00112233445566778899aabbccddeeff".into(),
    }
}

/// An image with `pages-1.img` under criu/ and config.json and a rootfs
/// diff sealed at the top, as an encrypted checkpoint leaves it.
fn commit_sealed(store: &ImageStore, k: &Arc<Key>) -> Image {
    let mut st = store.begin("ns", "k").unwrap();
    let criu = st.path().join(CRIU_DIR);
    fs::create_dir(&criu).unwrap();
    let c = crypt(k);
    // Through the held directory's real path: the store refuses links.
    let top = fs::read_link(st.path()).unwrap();
    let recs = [
        store_in(&criu, "pages-1.img", &[7u8; 5000], ZSTD_1, Some(&c)),
        store_in(&top, CONFIG, SECRET, ZSTD_1, Some(&c)),
        store_in(&top, ROOTFS_DIFF, &[0u8; 1024], ZSTD_1, Some(&c)),
    ];
    st.add_streamed(&recs);
    st.commit(info()).unwrap()
}

#[test]
fn sealed_files_are_listed_at_the_top_and_decoded_into_the_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let img = commit_sealed(&ImageStore::new(&root), &Arc::new(Key::from_bytes([4; 32])));
    let m = img.manifest();
    assert_eq!(m.format_version, 5);
    let paths: Vec<_> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "config.json.zst.enc",
            "criu/pages-1.img.zst.enc",
            "rootfs-diff.tar.zst.enc"
        ]
    );
    assert!(!img.config().exists() && !img.rootfs_diff().exists());
    let stored = fs::read(img.dir().join("config.json.zst.enc")).unwrap();
    assert!(!stored.windows(7).any(|w| w == b"hunter2"), "sealed");
    let store =
        ImageStore::new(&root).with_encryption(HostKey::Loaded(Arc::new(Key::from_bytes([4; 32]))));
    store.open("ns", "k").unwrap();
    let copy = store
        .take("ns", "k")
        .unwrap()
        .verify_into(&tmp.path().join("copy"))
        .unwrap();
    assert_eq!(fs::read(copy.config()).unwrap(), SECRET);
    assert_eq!(fs::read(copy.rootfs_diff()).unwrap(), vec![0u8; 1024]);
    assert_eq!(
        fs::read(copy.criu_dir().join("pages-1.img")).unwrap(),
        vec![7u8; 5000]
    );
}

#[test]
fn each_streamed_file_only_in_its_own_place_and_version() {
    let tmp = tempfile::tempdir().unwrap();
    let img = commit_sealed(
        &ImageStore::new(tmp.path().join("root")),
        &Arc::new(Key::from_bytes([4; 32])),
    );
    let v: serde_json::Value = serde_json::from_slice(&img.manifest().to_json()).unwrap();
    let parse =
        |v: &serde_json::Value| Manifest::parse(&serde_json::to_vec(v).unwrap(), "m".as_ref());
    parse(&v).unwrap();
    for (what, i, path) in [
        ("a sealed file under criu/", 0, "criu/config.json.zst.enc"),
        ("a CRIU image at the top", 1, "pages-1.img.zst.enc"),
        ("another file sealed at the top", 2, "notes.txt.zst.enc"),
        (
            "a sealed file in a subdirectory",
            2,
            "pre-1/rootfs-diff.tar.zst.enc",
        ),
    ] {
        let mut bad = v.clone();
        bad["files"][i]["path"] = path.into();
        assert!(parse(&bad).is_err(), "{what} accepted");
    }
    let mut v3 = v.clone();
    v3["format_version"] = 3.into();
    let e = parse(&v3).unwrap_err();
    assert!(e.to_string().contains("version 3"), "{e}");
    // Keyed digests only from version 5; a version 4 image's plain ones
    // (no `digest`) still parse; no other digest name.
    let mut v4 = v.clone();
    v4["format_version"] = 4.into();
    let e = parse(&v4).unwrap_err();
    assert!(e.to_string().contains("keyed original digest"), "{e}");
    for f in v4["files"].as_array_mut().unwrap() {
        f["stream"]["encryption"]
            .as_object_mut()
            .unwrap()
            .remove("digest");
    }
    parse(&v4).unwrap();
    let mut other = v.clone();
    for f in other["files"].as_array_mut().unwrap() {
        f["stream"]["encryption"]["digest"] = "sha256".into();
    }
    let e = parse(&other).unwrap_err();
    assert!(e.to_string().contains("unknown original digest"), "{e}");
}

/// A large page image of an encrypted image is checked behind the copy
/// with its keyed digest; with the record's digest changed, the check
/// behind fails.
#[test]
fn a_sealed_page_image_is_checked_behind_with_its_keyed_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let k = Arc::new(Key::from_bytes([4; 32]));
    let store = ImageStore::new(&root).with_encryption(HostKey::Loaded(k.clone()));
    let mut st = store.begin("ns", "k").unwrap();
    let criu = st.path().join(CRIU_DIR);
    fs::create_dir(&criu).unwrap();
    let big: Vec<u8> = (0..(5u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let rec = store_in(&criu, "pages-1.img", &big, ZSTD_1, Some(&crypt(&k)));
    st.add_streamed(&[rec]);
    st.commit(info()).unwrap();
    let taken = store.take("ns", "k").unwrap();
    let (copy, deferred) = taken
        .verify_into_deferring(&tmp.path().join("good"))
        .unwrap();
    assert_eq!(deferred.pending.len(), 1, "checked behind");
    deferred.start().wait().unwrap();
    assert_eq!(fs::read(copy.criu_dir().join("pages-1.img")).unwrap(), big);
    let (_, mut deferred) = taken
        .verify_into_deferring(&tmp.path().join("bad"))
        .unwrap();
    deferred.pending[0].sha256 = "0".repeat(64);
    assert!(deferred.start().wait().is_err());
}

#[test]
fn sealed_names_are_the_stored_ones_only() {
    assert_eq!(sealed_name("rootfs-diff.tar.zst.enc"), Some(ROOTFS_DIFF));
    assert_eq!(sealed_name("config.json.enc"), Some(CONFIG));
    assert_eq!(sealed_name("config.json.zst"), Some(CONFIG));
    for not in [
        "config.json",
        "rootfs-diff.tar",
        "criu/config.json.zst.enc",
        "pages-1.img.zst.enc",
        ".zst.enc",
    ] {
        assert_eq!(sealed_name(not), None, "{not}");
    }
}

/// Tampering a sealed file is caught by its cipher even when the manifest
/// is made to agree: a flipped byte fails its chunk's tag, and another
/// sealed file of the same image put in its place (same key, same image
/// id) fails because its identity names the other file. Nothing is copied.
#[test]
fn a_sealed_file_flipped_or_swapped_fails_the_copy_even_when_relisted() {
    use sha2::{Digest, Sha256};
    for attack in ["flip", "swap"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let key = Arc::new(Key::from_bytes([4; 32]));
        let img = commit_sealed(&ImageStore::new(&root), &key);
        let diff = img.dir().join("rootfs-diff.tar.zst.enc");
        let config = img
            .manifest()
            .files
            .iter()
            .find(|f| f.path == "config.json.zst.enc");
        let config = config.unwrap().clone();
        let bytes = match attack {
            "flip" => {
                let mut b = fs::read(&diff).unwrap();
                let i = b.len() - 20;
                b[i] ^= 1;
                b
            }
            _ => fs::read(img.dir().join(&config.path)).unwrap(),
        };
        fs::write(&diff, &bytes).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&img.manifest().to_json()).unwrap();
        let files = v["files"].as_array_mut().unwrap();
        let entry = files
            .iter_mut()
            .find(|f| f["path"] == "rootfs-diff.tar.zst.enc")
            .unwrap();
        entry["size"] = bytes.len().into();
        entry["sha256"] = hex::encode(Sha256::digest(&bytes)).into();
        if attack == "swap" {
            let s = config.stream.as_ref().unwrap();
            entry["stream"]["original_size"] = s.original_size.into();
            entry["stream"]["original_sha256"] = s.original_sha256.clone().into();
        }
        let total: u64 = files.iter().map(|f| f["size"].as_u64().unwrap()).sum();
        v["total_size"] = total.into();
        fs::write(img.dir().join(MANIFEST), serde_json::to_vec(&v).unwrap()).unwrap();
        let store = ImageStore::new(&root).with_encryption(HostKey::Loaded(key));
        let copy = tmp.path().join("copy");
        let e = store
            .take("ns", "k")
            .unwrap()
            .verify_into(&copy)
            .unwrap_err();
        assert!(matches!(e, Error::Stream { .. }), "{attack}: {e}");
        assert!(e.to_string().contains("rootfs-diff.tar"), "{attack}: {e}");
        // The cipher refused it, not a digest: the manifest agreed.
        assert!(format!("{e:?}").contains("Tampered"), "{attack}: {e:?}");
        assert!(!copy.exists(), "{attack}: nothing copied");
    }
}
