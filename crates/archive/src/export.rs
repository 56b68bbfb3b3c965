//! An image into one archive stream.

use std::io::Write;

use arch_image::Image;
use serde::Serialize;

use crate::error::{io, ArchiveError, Result};
use crate::layout::{
    entry_name, ARCH_MANIFEST, ARCH_SIGNATURE, CHECKPOINT_DIR, CONFIG_DUMP, DELETED_FILES,
};

/// What was written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportStats {
    /// Bytes of image files read.
    pub image_bytes: u64,
    /// Bytes of the compressed archive written.
    pub archive_bytes: u64,
}

/// The parts of CRI-O's config.dump that checkpointctl shows.
#[derive(Serialize)]
struct ConfigDump<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "createdTime")]
    created_time: String,
    #[serde(rename = "checkpointedTime")]
    checkpointed_time: String,
    runtime: &'static str,
}

/// Writes `image` as a zstd-compressed tar (level `level`) to `out`.
pub fn export(image: &Image, out: impl Write, level: i32) -> Result<ExportStats> {
    let manifest = image.manifest();
    let counted = CountingWriter {
        inner: out,
        bytes: 0,
    };
    let encoder = zstd::Encoder::new(counted, level).map_err(io("starting zstd"))?;
    let mut tar = tar::Builder::new(encoder);
    let mtime = manifest.created_at.secs;
    let time = rfc3339(manifest.created_at.secs);
    // The manifest as stored, so its signature still verifies on import.
    let (manifest_bytes, signature) = image.signed_manifest()?;
    append(&mut tar, ARCH_MANIFEST, &manifest_bytes, mtime)?;
    if let Some(sig) = signature {
        append(&mut tar, ARCH_SIGNATURE, &sig, mtime)?;
    }
    let dump = ConfigDump {
        id: &manifest.container_id,
        name: &manifest.key,
        created_time: time.clone(),
        checkpointed_time: time,
        runtime: "io.containerd.arch.v1",
    };
    let dump = serde_json::to_vec_pretty(&dump).expect("config.dump serialises");
    append(&mut tar, CONFIG_DUMP, &dump, mtime)?;
    append(&mut tar, DELETED_FILES, b"[]", mtime)?;
    // checkpointctl looks for the directory's own entry, not just its files.
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o700);
    dir.set_mtime(mtime);
    dir.set_size(0);
    tar.append_data(&mut dir, format!("{CHECKPOINT_DIR}/"), std::io::empty())
        .map_err(io("archiving the checkpoint directory"))?;
    let mut stats = ExportStats::default();
    for file in &manifest.files {
        let name = entry_name(&file.path).ok_or_else(|| ArchiveError::Entry {
            entry: file.path.clone(),
            reason: "an image file this archive format has no place for".into(),
        })?;
        let path = image.dir().join(&file.path);
        let mut f =
            std::fs::File::open(&path).map_err(io(format!("opening {}", path.display())))?;
        let mut header = header(file.size, mtime);
        tar.append_data(&mut header, &name, &mut f)
            .map_err(io(format!("archiving {}", path.display())))?;
        stats.image_bytes += file.size;
    }
    let encoder = tar.into_inner().map_err(io("finishing the tar"))?;
    let mut counted = encoder.finish().map_err(io("finishing zstd"))?;
    counted.inner.flush().map_err(io("flushing the archive"))?;
    stats.archive_bytes = counted.bytes;
    Ok(stats)
}

/// CRI-O writes Go's time.Time: RFC 3339, which checkpointctl parses.
fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8], mtime: u64) -> Result<()> {
    let mut h = header(data.len() as u64, mtime);
    tar.append_data(&mut h, name, data)
        .map_err(io(format!("archiving {name}")))
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
