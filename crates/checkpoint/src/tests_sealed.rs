//! An encrypted dump seals the image's own files: the spec (its
//! environment) and the rootfs diff (the files the container wrote) are
//! stored like CRIU's images, nothing of them readable in the store, and
//! come back whole in the verified restore copy.

use std::sync::Arc;

use arch_image::{HostKey, ImageStore};
use arch_imgcrypt::Key;
use arch_imgstream::{Codec, Crypt};

use crate::tests::{chain, ns_entries, request, rig, FakeDumper};

const MARKER: &[u8] = b"written-by-the-container-7f3a";

fn sealing_dumper() -> FakeDumper {
    let mut d = FakeDumper::new(vec![10], None);
    let crypt = Crypt {
        key: Arc::new(Key::from_bytes([6; 32])),
        namespace: "default".into(),
        image_key: "job".into(),
        image_id: "ffeeddccbbaa99887766554433221100".into(),
    };
    let zstd = Codec::Zstd {
        level: 1,
        threads: 0,
    };
    d.sealing = Some((zstd, crypt));
    d
}

#[test]
fn an_encrypted_dump_seals_the_spec_and_the_rootfs_diff() {
    let r = rig();
    std::fs::write(r.upper.join("tmp/secret"), MARKER).unwrap();
    chain(&r, &sealing_dumper(), request(&r)).unwrap();
    let image = r.store.open("default", "job").unwrap();
    let m = image.manifest();
    for sealed in ["config.json.zst.enc", "rootfs-diff.tar.zst.enc"] {
        let f = m.files.iter().find(|f| f.path == sealed);
        let f = f.unwrap_or_else(|| panic!("{sealed} not in {:?}", m.files));
        let s = f.stream.as_ref().unwrap();
        assert!(s.encryption.is_some(), "{sealed} encrypted");
        let stored = std::fs::read(image.dir().join(sealed)).unwrap();
        for clear in [MARKER, b"ociVersion"] {
            assert!(!stored.windows(clear.len()).any(|w| w == clear), "{sealed}");
        }
    }
    assert!(!image.config().exists() && !image.rootfs_diff().exists());
    let keyed = ImageStore::new(r.store.root())
        .with_encryption(HostKey::Loaded(Arc::new(Key::from_bytes([6; 32]))));
    let copy_dir = r.upper.with_file_name("copy");
    let copy = keyed
        .take("default", "job")
        .unwrap()
        .verify_into(&copy_dir)
        .unwrap();
    let spec = std::fs::read(copy.config()).unwrap();
    assert_eq!(spec, b"{\"ociVersion\":\"1.0.2\"}");
    let rootfs = r.upper.with_file_name("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    crate::apply_rootfs(&copy, &rootfs).unwrap();
    assert_eq!(std::fs::read(rootfs.join("tmp/secret")).unwrap(), MARKER);
    assert_eq!(std::fs::read(rootfs.join("tmp/count")).unwrap(), b"41\n");
}

#[test]
fn a_rootfs_diff_that_fails_leaves_nothing_sealed_behind() {
    let r = rig();
    let mut req = request(&r);
    req.upperdir = Some(r.upper.join("gone"));
    let e = chain(&r, &sealing_dumper(), req).unwrap_err();
    assert!(e.to_string().contains("gone"), "{e}");
    assert!(r.store.open("default", "job").is_err());
    assert!(
        ns_entries(&r).is_empty(),
        "no staging left: {:?}",
        ns_entries(&r)
    );
}
