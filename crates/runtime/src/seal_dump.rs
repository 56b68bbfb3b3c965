//! Encryption at rest for a dump that cannot stream: a terminal's (CRIU's
//! CLI, which streams, has no `orphan_pts_master`; its RPC, which has it,
//! cannot stream). CRIU writes such a dump over RPC into a private
//! directory on this host's own disk (the shim's, 0700, never the
//! checkpoint root); each image is then stored into the images directory
//! exactly as the streamer would have (`arch_imgstream::store_file`: the
//! dump's codec and cipher, both digests, fsync'd, `O_EXCL|O_NOFOLLOW`
//! beneath the held directory) and its clear copy removed. CRIU's log
//! stays plain beside them, as in a streamed dump.

use std::fs::File;
use std::io;
use std::path::Path;

use arch_imgstream::{store_file, Codec, Crypt, DirStore, FileRecord, Store};

use crate::error::{Result, RuntimeError};

/// CRIU's log: kept in clear (no file contents), for the checkpoint's record.
pub(crate) const DUMP_LOG: &str = "dump.log";

/// Moves CRIU's files from `clear` into `images`: the log as it is, every
/// image sealed. The clear files are removed as they are sealed, and all of
/// them whatever happens.
pub(crate) fn seal_into(
    id: &str,
    clear: &Path,
    images: &Path,
    codec: Codec,
    crypt: &Crypt,
) -> Result<Vec<FileRecord>> {
    let sealed = seal_each(id, clear, images, codec, crypt);
    let emptied = empty(clear);
    let records = sealed?;
    emptied.map_err(RuntimeError::io(format!("emptying {}", clear.display())))?;
    Ok(records)
}

fn seal_each(
    id: &str,
    clear: &Path,
    images: &Path,
    codec: Codec,
    crypt: &Crypt,
) -> Result<Vec<FileRecord>> {
    let store = DirStore::open_path(images)
        .map_err(RuntimeError::io(format!("opening {}", images.display())))?;
    let mut records = Vec::new();
    for entry in std::fs::read_dir(clear)
        .map_err(RuntimeError::io(format!("listing {}", clear.display())))?
    {
        let entry = entry.map_err(RuntimeError::io(format!("listing {}", clear.display())))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| RuntimeError::Seal {
                id: id.to_string(),
                reason: format!("CRIU wrote {n:?}, not a UTF-8 name"),
            })?;
        let path = entry.path();
        let open =
            || File::open(&path).map_err(RuntimeError::io(format!("opening {}", path.display())));
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            return Err(RuntimeError::Seal {
                id: id.to_string(),
                reason: format!("CRIU left {name}, not a regular file"),
            });
        }
        if name == DUMP_LOG {
            copy_plain(&store, &name, open()?).map_err(RuntimeError::io(format!(
                "copying {name} into {}",
                images.display()
            )))?;
            continue;
        }
        let create = |stored: &str| store.create(stored);
        let record =
            store_file(&name, open()?, create, codec, Some(crypt), || false).map_err(|e| {
                RuntimeError::Seal {
                    id: id.to_string(),
                    reason: e.to_string(),
                }
            })?;
        std::fs::remove_file(&path)
            .map_err(RuntimeError::io(format!("removing {}", path.display())))?;
        records.push(record);
    }
    store
        .sync_dir()
        .map_err(RuntimeError::io(format!("fsync of {}", images.display())))?;
    Ok(records)
}

/// After a failed dump: CRIU's log into `images` (the failure's record
/// quotes it), everything else CRIU wrote removed unread.
pub(crate) fn discard(clear: &Path, images: &Path) {
    let log = clear.join(DUMP_LOG);
    if let (Ok(from), Ok(store)) = (File::open(&log), DirStore::open_path(images)) {
        if let Err(e) = copy_plain(&store, DUMP_LOG, from) {
            log::warn!("copying {} into {}: {e}", log.display(), images.display());
        }
    }
    if let Err(e) = empty(clear) {
        log::warn!("emptying {}: {e}", clear.display());
    }
}

fn copy_plain(store: &DirStore, name: &str, mut from: File) -> io::Result<()> {
    let mut to = store.create(name)?;
    io::copy(&mut from, &mut to)?;
    to.sync_all()
}

/// Removes every file in `dir` (CRIU writes no subdirectory).
fn empty(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        match entry.file_type()?.is_dir() {
            true => std::fs::remove_dir_all(entry.path())?,
            false => std::fs::remove_file(entry.path())?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn crypt() -> Crypt {
        Crypt {
            key: Arc::new(arch_imgcrypt::Key::from_bytes([8; 32])),
            namespace: "ns".into(),
            image_key: "k".into(),
            image_id: "0123456789abcdef0123456789abcdef".into(),
        }
    }

    #[test]
    fn images_are_sealed_the_log_kept_and_nothing_left_in_clear() {
        let (clear, images) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(clear.path().join("pages-1.img"), b"secret pages").unwrap();
        std::fs::write(clear.path().join("tty-info.img"), b"pts").unwrap();
        std::fs::write(clear.path().join(DUMP_LOG), b"(0.1) dumped\n").unwrap();
        let zstd = Codec::Zstd {
            level: 1,
            threads: 0,
        };
        let mut recs = seal_into("c1", clear.path(), images.path(), zstd, &crypt()).unwrap();
        recs.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<_> = recs.iter().map(|r| r.stored_name.as_str()).collect();
        assert_eq!(names, ["pages-1.img.zst.enc", "tty-info.img.zst.enc"]);
        assert!(recs.iter().all(|r| r.encryption.is_some()));
        assert_eq!(recs[0].original_size, 12);
        let stored = std::fs::read(images.path().join("pages-1.img.zst.enc")).unwrap();
        assert!(!stored.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            std::fs::read(images.path().join(DUMP_LOG)).unwrap(),
            b"(0.1) dumped\n"
        );
        assert_eq!(
            std::fs::read_dir(clear.path()).unwrap().count(),
            0,
            "clear copies removed"
        );
    }

    #[test]
    fn a_failure_still_removes_the_clear_files() {
        let (clear, images) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(clear.path().join("pages-1.img"), b"secret pages").unwrap();
        // A name already taken in the images directory fails its O_EXCL create.
        std::fs::write(images.path().join("pages-1.img.zst.enc"), b"planted").unwrap();
        let zstd = Codec::Zstd {
            level: 1,
            threads: 0,
        };
        let e = seal_into("c1", clear.path(), images.path(), zstd, &crypt()).unwrap_err();
        assert!(e.to_string().contains("pages-1.img"), "{e}");
        assert_eq!(std::fs::read_dir(clear.path()).unwrap().count(), 0);
        assert_eq!(
            std::fs::read(images.path().join("pages-1.img.zst.enc")).unwrap(),
            b"planted"
        );
    }
}
