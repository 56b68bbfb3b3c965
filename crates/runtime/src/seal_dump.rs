//! Encryption at rest for what CRIU or the shim writes in clear.
//!
//! A dump that cannot stream (a terminal's: CRIU's CLI, which streams, has
//! no `orphan_pts_master`; its RPC, which has it, cannot stream) is written
//! by CRIU over RPC into a private directory on this host's own disk (the
//! shim's, 0700, never the checkpoint root); each file is then stored into
//! the images directory exactly as the streamer would have
//! (`arch_imgstream::store_file`: the dump's codec and cipher, both
//! digests, fsync'd, `O_EXCL|O_NOFOLLOW` beneath the held directory) and
//! its clear copy removed. A streamed dump's log goes to that private
//! directory too and is sealed the same way. CRIU's log names the files
//! the container had open, its mounts and its sockets: as private as the
//! images. So are the shim's `descriptors.json` and CRIU's `stats-dump`.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use arch_image::DUMP_LOG;
use arch_imgstream::{store_file, Codec, Crypt, DirStore, FileRecord, Store};

use crate::error::{Result, RuntimeError};

/// CRIU's statistics, which it writes by name into the images directory
/// even when it streams.
pub(crate) const STATS_DUMP: &str = "stats-dump";

/// Moves CRIU's files from `clear` into `images`, each sealed (its log
/// too). The clear files are removed as they are sealed, and all of them
/// whatever happens.
fn seal_into(
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
    let store = open_store(images)?;
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
        records.push(seal_with(&store, id, &name, open()?, codec, crypt)?);
        std::fs::remove_file(&path)
            .map_err(RuntimeError::io(format!("removing {}", path.display())))?;
    }
    store
        .sync_dir()
        .map_err(RuntimeError::io(format!("fsync of {}", images.display())))?;
    Ok(records)
}

/// Stores `name`, read from `from`, sealed into `store`.
fn seal_with(
    store: &DirStore,
    id: &str,
    name: &str,
    from: impl Read,
    codec: Codec,
    crypt: &Crypt,
) -> Result<FileRecord> {
    let create = |stored: &str| store.create(stored);
    store_file(name, from, create, codec, Some(crypt), || false).map_err(|e| RuntimeError::Seal {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

fn open_store(images: &Path) -> Result<DirStore> {
    DirStore::open_path(images).map_err(RuntimeError::io(format!("opening {}", images.display())))
}

/// Stores image file `name`, read from `from`, into `images`, sealed: a
/// file the shim writes beside CRIU's (descriptors.json, from memory: never
/// on disk in clear).
pub(crate) fn seal_reader(
    id: &str,
    name: &str,
    from: impl Read,
    images: &Path,
    codec: Codec,
    crypt: &Crypt,
) -> Result<FileRecord> {
    let store = open_store(images)?;
    let record = seal_with(&store, id, name, from, codec, crypt)?;
    store
        .sync_dir()
        .map_err(RuntimeError::io(format!("fsync of {}", images.display())))?;
    Ok(record)
}

/// Seals file `name` that CRIU wrote in clear into `images` itself
/// (`stats-dump`), in place: stored sealed beside it, then removed. None
/// if CRIU wrote no such file.
pub(crate) fn seal_in_place(
    id: &str,
    name: &str,
    images: &Path,
    codec: Codec,
    crypt: &Crypt,
) -> Result<Option<FileRecord>> {
    let path = images.join(name);
    // Not through a link someone planted in the (shared) staging directory.
    let from = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RuntimeError::io(format!("opening {}", path.display()))(e)),
    };
    let record = seal_reader(id, name, from, images, codec, crypt)?;
    std::fs::remove_file(&path)
        .map_err(RuntimeError::io(format!("removing {}", path.display())))?;
    Ok(Some(record))
}

/// After a dump that wrote into the private `clear` (all its files, or a
/// streamed dump's log): if it succeeded, everything there sealed into
/// `images` (their records beside its result); if it failed, its log
/// copied into `images` in clear for the failed checkpoint's record (like
/// the record itself), the rest removed unread.
pub(crate) fn after_dump<T>(
    id: &str,
    dumped: Result<T>,
    clear: &Path,
    images: &Path,
    codec: Codec,
    crypt: &Crypt,
) -> Result<(T, Vec<FileRecord>)> {
    match dumped {
        Ok(value) => Ok((value, seal_into(id, clear, images, codec, crypt)?)),
        Err(e) => {
            discard(clear, images);
            Err(e)
        }
    }
}

/// After a failed dump: CRIU's log into `images` (the failure's record
/// quotes it), everything else CRIU wrote removed unread.
fn discard(clear: &Path, images: &Path) {
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

    fn zstd() -> Codec {
        Codec::Zstd {
            level: 1,
            threads: 0,
        }
    }

    #[test]
    fn images_and_the_log_are_sealed_and_nothing_left_in_clear() {
        let (clear, images) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(clear.path().join("pages-1.img"), b"secret pages").unwrap();
        std::fs::write(clear.path().join("tty-info.img"), b"pts").unwrap();
        std::fs::write(clear.path().join(DUMP_LOG), b"(0.1) path [/secret/file]\n").unwrap();
        let mut recs = seal_into("c1", clear.path(), images.path(), zstd(), &crypt()).unwrap();
        recs.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<_> = recs.iter().map(|r| r.stored_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dump.log.zst.enc",
                "pages-1.img.zst.enc",
                "tty-info.img.zst.enc"
            ]
        );
        assert!(recs.iter().all(|r| r.encryption.is_some()));
        assert_eq!(recs[1].original_size, 12);
        for (stored, clear_text) in [
            ("pages-1.img.zst.enc", &b"secret"[..]),
            ("dump.log.zst.enc", b"/secret/file"),
        ] {
            let bytes = std::fs::read(images.path().join(stored)).unwrap();
            assert!(!bytes.windows(clear_text.len()).any(|w| w == clear_text));
        }
        assert!(!images.path().join(DUMP_LOG).exists());
        assert_eq!(
            std::fs::read_dir(clear.path()).unwrap().count(),
            0,
            "clear copies removed"
        );
    }

    #[test]
    fn a_failed_dumps_log_is_kept_in_clear_for_its_record() {
        let (clear, images) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(clear.path().join("pages-1.img"), b"secret pages").unwrap();
        std::fs::write(clear.path().join(DUMP_LOG), b"Error (criu/x.c:1): no\n").unwrap();
        let failed: Result<()> = Err(RuntimeError::StreamedDump {
            id: "c1".into(),
            reason: "CRIU failed".into(),
        });
        let e = after_dump("c1", failed, clear.path(), images.path(), zstd(), &crypt());
        assert!(e.is_err());
        let names: Vec<_> = std::fs::read_dir(images.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [DUMP_LOG]);
        assert_eq!(std::fs::read_dir(clear.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_file_written_beside_the_images_is_sealed_in_place() {
        let images = tempfile::tempdir().unwrap();
        assert!(
            seal_in_place("c1", STATS_DUMP, images.path(), zstd(), &crypt())
                .unwrap()
                .is_none()
        );
        std::fs::write(images.path().join(STATS_DUMP), b"stats").unwrap();
        let rec = seal_in_place("c1", STATS_DUMP, images.path(), zstd(), &crypt())
            .unwrap()
            .unwrap();
        assert_eq!(
            (rec.name.as_str(), rec.stored_name.as_str()),
            (STATS_DUMP, "stats-dump.zst.enc")
        );
        assert!(!images.path().join(STATS_DUMP).exists());
        let rec = seal_reader(
            "c1",
            "descriptors.json",
            &b"[]"[..],
            images.path(),
            Codec::None,
            &crypt(),
        )
        .unwrap();
        assert_eq!(rec.stored_name, "descriptors.json.enc");
        assert_eq!(rec.original_size, 2);
    }

    #[test]
    fn a_failure_still_removes_the_clear_files() {
        let (clear, images) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(clear.path().join("pages-1.img"), b"secret pages").unwrap();
        // A name already taken in the images directory fails its O_EXCL create.
        std::fs::write(images.path().join("pages-1.img.zst.enc"), b"planted").unwrap();
        let e = seal_into("c1", clear.path(), images.path(), zstd(), &crypt()).unwrap_err();
        assert!(e.to_string().contains("pages-1.img"), "{e}");
        assert_eq!(std::fs::read_dir(clear.path()).unwrap().count(), 0);
        assert_eq!(
            std::fs::read(images.path().join("pages-1.img.zst.enc")).unwrap(),
            b"planted"
        );
    }
}
