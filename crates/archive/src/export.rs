//! An image into one archive stream.

use std::io::Write;

use arch_image::Image;
use serde::Serialize;

use crate::error::{io, ArchiveError, Result};
use crate::layout::{entry_name, ARCH_MANIFEST, CONFIG_DUMP, DELETED_FILES};

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
    let time = format!("{}", manifest.created_at.secs);
    append(&mut tar, ARCH_MANIFEST, &manifest.to_json(), mtime)?;
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
