//! §2: writes go through directory descriptors held from the scope
//! directory. A writer on the root swapping a directory for a symlink in
//! the middle of a checkpoint (or a restore's retire) redirects nothing.

use std::fs;
use std::path::Path;

use crate::tests::info;
use crate::*;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Moves `{root}/ns` aside and puts a symlink to `victim` in its place,
/// with look-alikes of every entry, so a path-based writer would succeed
/// there.
fn swap_scope(root: &Path, victim: &Path) {
    fs::rename(root.join("ns"), root.join("ns-moved")).unwrap();
    for n in names(&root.join("ns-moved")) {
        fs::create_dir(victim.join(n)).unwrap();
    }
    std::os::unix::fs::symlink(victim, root.join("ns")).unwrap();
}

#[test]
fn a_scope_dir_swapped_for_a_symlink_during_a_checkpoint_redirects_no_write() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    let st = store.begin("ns", "k").unwrap();
    fs::write(st.path().join(CONFIG), b"{}").unwrap();
    swap_scope(store.root(), victim.path());
    let before = names(victim.path());
    // A writer goes on (CRIU's files) and the commit seals and renames.
    fs::write(st.path().join(ROOTFS_DIFF), b"tar").unwrap();
    st.commit(info()).unwrap();
    for n in &before {
        assert_eq!(
            fs::read_dir(victim.path().join(n)).unwrap().count(),
            0,
            "nothing written through the symlink into {n}"
        );
    }
    assert_eq!(
        names(victim.path()),
        before,
        "no rename through the symlink"
    );
    let moved = store.root().join("ns-moved");
    assert_eq!(names(&moved), ["k"], "committed where the writer began");
    assert!(moved.join("k").join(MANIFEST).exists());
    assert!(moved.join("k").join(ROOTFS_DIFF).exists());
}

#[test]
fn a_staging_dir_swapped_for_a_symlink_fails_the_commit_and_redirects_no_write() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    let ns = store.root().join("ns");
    let st = store.begin("ns", "k").unwrap();
    let name = names(&ns).pop().unwrap();
    fs::rename(ns.join(&name), ns.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(victim.path(), ns.join(&name)).unwrap();
    fs::write(st.path().join(CONFIG), b"{}").unwrap();
    assert!(matches!(st.commit(info()), Err(Error::UnsafePath { .. })));
    assert_eq!(fs::read_dir(victim.path()).unwrap().count(), 0);
    assert!(
        ns.join("elsewhere").join(CONFIG).exists(),
        "written where it began"
    );
    assert!(
        !ns.join("k").exists(),
        "no image published through the link"
    );
    assert!(
        fs::symlink_metadata(ns.join(&name)).is_err(),
        "the link is removed, never followed"
    );
}

#[test]
fn a_scope_dir_swapped_while_an_image_is_taken_redirects_no_write() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("root"));
    let st = store.begin("ns", "k").unwrap();
    fs::write(st.path().join(CONFIG), b"{}").unwrap();
    st.commit(info()).unwrap();
    let t = store.take("ns", "k").unwrap();
    swap_scope(store.root(), victim.path());
    let before = names(victim.path());
    t.fail("criu said no").unwrap();
    assert_eq!(names(victim.path()), before);
    for n in &before {
        assert_eq!(fs::read_dir(victim.path().join(n)).unwrap().count(), 0);
    }
    let moved = names(&store.root().join("ns-moved"));
    assert!(
        moved.len() == 1 && moved[0].starts_with("k@failed-"),
        "{moved:?}"
    );
}
