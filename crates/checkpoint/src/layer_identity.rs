//! What image a container runs, when nothing names it: the content of its
//! layers. containerd hands the shim the overlay lowerdirs, whose paths are
//! this host's snapshot directories (`…/snapshots/12/fs`); another host that
//! unpacked the same image has other numbers. A listing of each layer's
//! tree - names, types, modes, owners, sizes, file mtimes (containerd's
//! unpack keeps the tar's), link targets - is the same on every host that unpacked
//! the same layer, and differs when any file does. It reads no file content:
//! a stat per entry, cached per layer directory, which containerd never
//! changes once it is committed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// A layer with more entries than this is named by its path instead (a
/// host-local identity: the image still compares on this host).
const MAX_ENTRIES: u64 = 2_000_000;

/// Part of every cache key: a shim that lists layers differently never
/// reads another version's digests.
const LISTING_VERSION: u32 = 1;

/// The identity of the layers in an overlay `lowerdir=` value (top first,
/// `:`-separated): one digest per layer, joined by `:`. A layer that cannot
/// be walked keeps its path, logged.
pub fn layers_identity(lowerdirs: &str, cache: Option<&Path>) -> String {
    lowerdirs
        .split(':')
        .map(|dir| match layer_digest(Path::new(dir), cache) {
            Ok(d) => format!("sha256:{d}"),
            Err(e) => {
                log::warn!("layer {dir}: {e}; it is compared by its path (this host only)");
                dir.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

fn layer_digest(dir: &Path, cache: Option<&Path>) -> std::io::Result<String> {
    let meta = fs::symlink_metadata(dir)?;
    let key = cache.map(|c| {
        let k = format!(
            "{LISTING_VERSION}\0{}\0{}\0{}\0{}.{}",
            dir.display(),
            meta.dev(),
            meta.ino(),
            meta.ctime(),
            meta.ctime_nsec()
        );
        c.join(hex::encode(Sha256::digest(k.as_bytes())))
    });
    if let Some(k) = key.as_deref() {
        if let Ok(cached) = fs::read_to_string(k) {
            if cached.len() == 64 && cached.bytes().all(|b| b.is_ascii_hexdigit()) {
                // Used: the trim below keeps it over entries nobody reads.
                let _ =
                    fs::File::open(k).and_then(|f| f.set_modified(std::time::SystemTime::now()));
                return Ok(cached);
            }
        }
    }
    let mut hasher = Sha256::new();
    let mut entries = 0u64;
    walk(dir, "", &mut hasher, &mut entries)?;
    let digest = hex::encode(hasher.finalize());
    if let Some(key) = key {
        // Best effort: a cache that cannot be written only costs a walk.
        let _ = store(&key, &digest);
    }
    Ok(digest)
}

/// Feeds one line per entry below `dir`, in name order, into `hasher`.
fn walk(dir: &Path, rel: &str, hasher: &mut Sha256, entries: &mut u64) -> std::io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        *entries += 1;
        if *entries > MAX_ENTRIES {
            return Err(std::io::Error::other(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        let rel = format!("{rel}/{}", name.to_string_lossy());
        let path = dir.join(rel.trim_start_matches('/'));
        let m = fs::symlink_metadata(&path)?;
        let target = if m.file_type().is_symlink() {
            fs::read_link(&path)?.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        // A directory's size is the filesystem's business, and its mtime is
        // the unpack time when the layer's tar had no entry for it (a parent
        // made on the way): both left out.
        let (size, mtime) = if m.is_dir() {
            (0, 0)
        } else {
            (m.len(), m.mtime())
        };
        hasher.update(
            format!(
                "{rel}\0{:o}\0{}:{}\0{size}\0{}\0{target}\n",
                m.mode(),
                m.uid(),
                m.gid(),
                mtime
            )
            .as_bytes(),
        );
        if m.is_dir() {
            walk(dir, rel.trim_start_matches('/'), hasher, entries)?;
        }
    }
    Ok(())
}

fn store(key: &Path, digest: &str) -> std::io::Result<()> {
    let dir = key.parent().expect("a cache file has a directory");
    fs::create_dir_all(dir)?;
    let tmp = key.with_extension(format!("tmp-{}", std::process::id()));
    fs::File::create(&tmp)?.write_all(digest.as_bytes())?;
    fs::rename(&tmp, key)?;
    trim(dir, CACHE_ENTRIES);
    Ok(())
}

/// Entries the cache keeps. Meant to live one boot on a tmpfs `/run`, it
/// gains one per layer directory ever walked; where `/run` is on disk, or
/// snapshots come and go, that grows without end (a test host had 550).
/// A dropped entry costs one walk of its layer.
const CACHE_ENTRIES: usize = 1024;

/// Once `dir` holds more than `keep` entries, removes the least recently
/// written down to three quarters of `keep` (so a full cache is not
/// scanned at every new layer). Best effort, like the cache.
fn trim(dir: &Path, keep: usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut aged: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if aged.len() <= keep {
        return;
    }
    aged.sort();
    let excess = aged.len() - keep * 3 / 4;
    for (_, path) in aged.into_iter().take(excess) {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layer(root: &Path, name: &str) -> std::path::PathBuf {
        let d = root.join(name);
        fs::create_dir_all(d.join("bin")).unwrap();
        fs::write(d.join("bin/busybox"), b"elf").unwrap();
        symlink("busybox", d.join("bin/sh")).unwrap();
        fs::write(d.join("etc-passwd"), b"root:x:0:0").unwrap();
        for p in ["bin/busybox", "etc-passwd", "bin", ""] {
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
            fs::File::options()
                .read(true)
                .open(d.join(p))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        d
    }

    #[test]
    fn the_same_layer_unpacked_in_two_places_has_one_identity() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (
            layer(t.path(), "snapshots/3/fs"),
            layer(t.path(), "other/77/fs"),
        );
        let ia = layers_identity(a.to_str().unwrap(), None);
        assert!(ia.starts_with("sha256:"), "{ia}");
        assert_eq!(ia, layers_identity(b.to_str().unwrap(), None));
    }

    #[test]
    fn directory_mtimes_do_not_count() {
        // A parent directory the layer's tar had no entry for gets the
        // unpack time: two hosts unpack at different times.
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (layer(t.path(), "a"), layer(t.path(), "b"));
        let t2 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000);
        fs::File::open(b.join("bin"))
            .unwrap()
            .set_modified(t2)
            .unwrap();
        assert_eq!(
            layers_identity(a.to_str().unwrap(), None),
            layers_identity(b.to_str().unwrap(), None)
        );
    }

    #[test]
    fn any_changed_file_changes_it() {
        let t = tempfile::tempdir().unwrap();
        let a = layer(t.path(), "a");
        let before = layers_identity(a.to_str().unwrap(), None);
        fs::write(a.join("etc-passwd"), b"root:x:0:0:evil").unwrap();
        assert_ne!(before, layers_identity(a.to_str().unwrap(), None));
        let b = layer(t.path(), "b");
        fs::remove_file(b.join("bin/sh")).unwrap();
        symlink("/etc", b.join("bin/sh")).unwrap();
        assert_ne!(before, layers_identity(b.to_str().unwrap(), None));
    }

    #[test]
    fn layers_are_identified_one_by_one_and_unreadable_ones_by_path() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (layer(t.path(), "a"), layer(t.path(), "b"));
        let both = layers_identity(
            &format!("{}:/no/such/layer:{}", a.display(), b.display()),
            None,
        );
        let parts: Vec<&str> = both.split(':').collect();
        assert_eq!(parts.len(), 5, "{both}");
        assert_eq!(parts[2], "/no/such/layer");
    }

    #[test]
    fn the_cache_answers_for_an_unchanged_directory() {
        let t = tempfile::tempdir().unwrap();
        let cache = t.path().join("cache");
        let a = layer(t.path(), "a");
        let first = layers_identity(a.to_str().unwrap(), Some(&cache));
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 1);
        // Entries below the root change nothing the cache is keyed on: the
        // cached digest is what a second Create gets (containerd never
        // changes a committed layer).
        fs::write(a.join("bin/busybox"), b"changed").unwrap();
        assert_eq!(first, layers_identity(a.to_str().unwrap(), Some(&cache)));
        assert_ne!(first, layers_identity(a.to_str().unwrap(), None));
    }

    #[test]
    fn the_cache_drops_its_least_recently_used_entries_past_its_size() {
        let t = tempfile::tempdir().unwrap();
        let cache = t.path().join("cache");
        let a = layer(t.path(), "a");
        let used = layers_identity(a.to_str().unwrap(), Some(&cache));
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        for n in 0..CACHE_ENTRIES {
            let f = cache.join(format!("{n:064x}"));
            fs::write(&f, "0".repeat(64)).unwrap();
            fs::File::open(&f).unwrap().set_modified(old).unwrap();
        }
        let entry_of_a = fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| fs::read_to_string(p).unwrap() == used.trim_start_matches("sha256:"))
            .unwrap();
        fs::File::open(&entry_of_a)
            .unwrap()
            .set_modified(old)
            .unwrap();
        // A read refreshes a's entry; a new layer's store trims the rest.
        assert_eq!(used, layers_identity(a.to_str().unwrap(), Some(&cache)));
        let b = layer(t.path(), "b");
        layers_identity(b.to_str().unwrap(), Some(&cache));
        let left = fs::read_dir(&cache).unwrap().count();
        assert_eq!(left, CACHE_ENTRIES * 3 / 4, "trimmed to three quarters");
        assert!(entry_of_a.exists(), "the entry just read stays");
    }
}
