//! An encrypted image travels as it is: export and import keep its stored
//! (encrypted) bytes and its encryption record, and it restores with its
//! key on the other side; under another name it is refused (the name is
//! in every file's authenticated identity).

use std::sync::Arc;

use arch_image::{HostKey, Image, ImageStore};
use arch_imgcrypt::Key;
use arch_imgstream::{store_file, Codec, Crypt, DirStore, Store};

use crate::*;

const IMAGE_ID: &str = "fedcba9876543210fedcba9876543210";

fn encrypted_image(store: &ImageStore, k: &Arc<Key>) -> Image {
    let mut st = store.begin("ns", "job").unwrap();
    let criu = st.path().join("criu");
    std::fs::create_dir(&criu).unwrap();
    let crypt = Crypt {
        key: k.clone(),
        namespace: "ns".into(),
        image_key: "job".into(),
        image_id: IMAGE_ID.into(),
    };
    let store = DirStore::open_path(&criu).unwrap();
    let zstd = Codec::Zstd {
        level: 1,
        threads: 0,
    };
    let create = |stored: &str| store.create(stored);
    let rec = store_file(
        "pages-1.img",
        &[9u8; 200_000][..],
        create,
        zstd,
        Some(&crypt),
        || false,
    );
    // The rootfs diff is sealed at the image's top level (format 4).
    let top = DirStore::open_path(&std::fs::read_link(st.path()).unwrap()).unwrap();
    let diff = store_file(
        arch_image::ROOTFS_DIFF,
        &[0u8; 1024][..],
        |stored: &str| top.create(stored),
        zstd,
        Some(&crypt),
        || false,
    );
    st.add_streamed(&[rec.unwrap(), diff.unwrap()]);
    st.commit(crate::tests::commit_info()).unwrap()
}

#[test]
fn an_encrypted_image_travels_unchanged_and_keeps_its_name() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let key = Arc::new(Key::from_bytes([5; 32]));
    let img = encrypted_image(&ImageStore::new(a.path()), &key);
    let mut archive = Vec::new();
    export(&img, &mut archive, 3).unwrap();
    let store = ImageStore::new(b.path()).with_encryption(HostKey::Loaded(key.clone()));
    let imported = import(
        &store,
        &archive[..],
        &Default::default(),
        &Default::default(),
        None,
    )
    .unwrap();
    assert_eq!(imported.manifest().files, img.manifest().files);
    assert!(imported.manifest().encryption().is_some());
    let p = "criu/pages-1.img.zst.enc";
    assert_eq!(
        std::fs::read(imported.dir().join(p)).unwrap(),
        std::fs::read(img.dir().join(p)).unwrap(),
        "the stored bytes are the encrypted ones"
    );
    let copy = store
        .take("ns", "job")
        .unwrap()
        .verify_into(&c.path().join("copy"))
        .unwrap();
    assert_eq!(
        std::fs::read(copy.criu_dir().join("pages-1.img")).unwrap(),
        vec![9u8; 200_000]
    );
    assert!(img.dir().join("rootfs-diff.tar.zst.enc").is_file());
    assert_eq!(std::fs::read(copy.rootfs_diff()).unwrap(), vec![0u8; 1024]);
    let target = ImportTarget {
        namespace: Some("other".into()),
        key: Some("moved".into()),
        ..Default::default()
    };
    let e = import(
        &ImageStore::new(c.path().join("root")),
        &archive[..],
        &target,
        &Default::default(),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("keeps its name ns/job"), "{e}");
}
