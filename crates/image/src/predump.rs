//! Pre-dump directories inside an image (`pre-1/` … `pre-8/`, beside
//! `criu/`), and CRIU's `parent` links between them.
//!
//! A final dump with a parent writes pagemap entries marked `in_parent`:
//! the pages are in the pre-dump images, not in `criu/pages-*.img`. CRIU
//! has no option to copy them into the final directory, so the pre-dump
//! directories are part of the image, listed, hashed and signed in the
//! manifest like every other file, and carried by export/import. CRIU finds
//! them through a symlink `parent` in each images directory; an image never
//! holds a symlink (a reader could be redirected), so the dump removes them
//! before the commit ([`unlink_parents`]) and the restorer makes them again
//! in its private, verified copy ([`link_parents`]): `criu/parent` →
//! `../pre-N`, `pre-K/parent` → `../pre-(K-1)`.

use std::io;
use std::path::Path;

/// The log each pre-dump leaves in its directory.
pub const PREDUMP_LOG: &str = "pre-dump.log";
/// CRIU's log of a dump, in the image's `criu/` (sealed when encrypted).
pub const DUMP_LOG: &str = "dump.log";
/// The link CRIU makes (and follows) from an images directory to its parent.
pub const PARENT_LINK: &str = "parent";
const PREFIX: &str = "pre-";
/// The most pre-dump directories an image may hold.
pub const MAX_PREDUMP_DIRS: u8 = 8;

/// The directory of pre-dump `n` (1-based).
pub fn predump_dir(n: u8) -> String {
    format!("{PREFIX}{n}")
}

/// Whether `name` is a pre-dump directory's name (`pre-1` … `pre-8`).
pub fn is_predump_dir(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|n| n.parse::<u8>().ok())
        .is_some_and(|n| (1..=MAX_PREDUMP_DIRS).contains(&n) && predump_dir(n) == name)
}

/// How many pre-dump directories `image_dir` holds; they must be
/// `pre-1` … `pre-N` without a gap.
pub fn count_predumps(image_dir: &Path) -> io::Result<u8> {
    let mut n = 0;
    while n < MAX_PREDUMP_DIRS && image_dir.join(predump_dir(n + 1)).is_dir() {
        n += 1;
    }
    Ok(n)
}

/// Removes the `parent` links CRIU left in `criu/` and the pre-dump
/// directories (a missing one is fine).
pub fn unlink_parents(image_dir: &Path) -> io::Result<()> {
    let n = count_predumps(image_dir)?;
    let dirs = std::iter::once(crate::CRIU_DIR.to_string()).chain((1..=n).map(predump_dir));
    for d in dirs {
        match std::fs::remove_file(image_dir.join(d).join(PARENT_LINK)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Makes the `parent` links CRIU's restore follows, in a copy of an image
/// that has pre-dumps; returns how many pre-dumps it found.
pub fn link_parents(image_dir: &Path) -> io::Result<u8> {
    let n = count_predumps(image_dir)?;
    if n == 0 {
        return Ok(0);
    }
    let link = |dir: &str, parent: u8| {
        let at = image_dir.join(dir).join(PARENT_LINK);
        match std::fs::remove_file(&at) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::os::unix::fs::symlink(format!("../{}", predump_dir(parent)), at)
    };
    link(crate::CRIU_DIR, n)?;
    for k in 2..=n {
        link(&predump_dir(k), k - 1)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_predump_dir("pre-1") && is_predump_dir("pre-8"));
        for not in ["pre-0", "pre-9", "pre-01", "pre-", "criu", "pre-1x"] {
            assert!(!is_predump_dir(not), "{not}");
        }
    }

    #[test]
    fn links_are_made_and_removed() {
        let d = tempfile::tempdir().unwrap();
        for sub in ["criu", "pre-1", "pre-2"] {
            std::fs::create_dir(d.path().join(sub)).unwrap();
        }
        assert_eq!(link_parents(d.path()).unwrap(), 2);
        let target = |p: &str| std::fs::read_link(d.path().join(p)).unwrap();
        assert_eq!(target("criu/parent"), Path::new("../pre-2"));
        assert_eq!(target("pre-2/parent"), Path::new("../pre-1"));
        assert!(!d.path().join("pre-1/parent").exists());
        // Idempotent: a retried restore links again.
        assert_eq!(link_parents(d.path()).unwrap(), 2);
        unlink_parents(d.path()).unwrap();
        for p in ["criu/parent", "pre-2/parent"] {
            assert!(std::fs::symlink_metadata(d.path().join(p)).is_err(), "{p}");
        }
        let plain = tempfile::tempdir().unwrap();
        std::fs::create_dir(plain.path().join("criu")).unwrap();
        assert_eq!(link_parents(plain.path()).unwrap(), 0);
        unlink_parents(plain.path()).unwrap();
    }
}
