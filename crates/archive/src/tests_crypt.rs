//! An encrypted image travels as it is: export and import keep its stored
//! (encrypted) bytes and its encryption record, and it restores with its
//! key on the other side; under another name it is refused (the name is
//! in every file's authenticated identity).

use std::io::Write;
use std::sync::Arc;

use arch_image::{CgroupVersion, CommitInfo, HostKey, Image, ImageStore};
use arch_imgcrypt::{EncryptWriter, Key};
use arch_imgstream::{Encryption, FileRecord};
use sha2::{Digest, Sha256};

use crate::*;

const IMAGE_ID: &str = "fedcba9876543210fedcba9876543210";

fn encrypted_image(store: &ImageStore, k: &Key) -> Image {
    let mut st = store.begin("ns", "job").unwrap();
    let criu = st.path().join("criu");
    std::fs::create_dir(&criu).unwrap();
    let data = vec![9u8; 200_000];
    let id = arch_imgstream::identity("ns", "job", IMAGE_ID, "pages-1.img");
    let mut enc =
        zstd::Encoder::new(EncryptWriter::new(Vec::new(), k, id.as_bytes()).unwrap(), 1).unwrap();
    enc.write_all(&data).unwrap();
    let stored = enc.finish().unwrap().finish().unwrap();
    std::fs::write(criu.join("pages-1.img.zst.enc"), &stored).unwrap();
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    st.add_streamed(&[FileRecord {
        name: "pages-1.img".into(),
        stored_name: "pages-1.img.zst.enc".into(),
        original_size: data.len() as u64,
        original_sha256: sha(&data),
        stored_size: stored.len() as u64,
        stored_sha256: sha(&stored),
        codec: "zstd".into(),
        level: Some(1),
        encryption: Some(Encryption {
            cipher: arch_imgcrypt::CIPHER_NAME.into(),
            key_id: k.id().to_string(),
            image_id: IMAGE_ID.into(),
        }),
    }]);
    st.commit(CommitInfo {
        container_id: "c1".into(),
        durations_ms: Default::default(),
        criu_version: "4.1.1".into(),
        kernel: "6.18".into(),
        arch: "x86_64".into(),
        cgroup_version: CgroupVersion::V1,
        profile: arch_image::ProfileDigest {
            digest: "0".repeat(64),
            fields: Default::default(),
        },
    })
    .unwrap()
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
