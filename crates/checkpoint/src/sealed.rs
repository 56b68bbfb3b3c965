//! The image's own files (config.json, rootfs-diff.tar) as the dump steps
//! write them: as they are, or, when the dump is encrypted, sealed like
//! CRIU's images (`arch_imgstream::store_file`: the dump's codec and
//! cipher, both digests, fsync'd) and recorded for the commit. A host that
//! encrypts at rest must not leave the container's environment or the
//! files it wrote readable beside its sealed memory.

use std::io::{self, Write};

use arch_imgstream::{store_file, StoredFile};

use crate::chain::DumpContext;
use crate::error::{io, CheckpointError, Result};

/// Writes image file `name` (one of `arch_image::SEALED_FILES`) into the
/// staging directory with `fill`. Sealed, `fill` runs on a thread of its
/// own and writes into a pipe the sealer reads; its error wins over the
/// sealer's, which then only saw a short file.
pub(crate) fn write_image_file<T: Send>(
    ctx: &mut DumpContext,
    name: &str,
    step: &'static str,
    fill: impl FnOnce(&mut dyn Write) -> Result<T> + Send,
) -> Result<T> {
    let staging = ctx.staging.as_ref().ok_or(CheckpointError::Step {
        step,
        reason: "no staging directory (PrepareDir did not run)".into(),
    })?;
    let Some((codec, crypt)) = ctx.dumper.sealing() else {
        let mut file = staging.create_file(name)?;
        return fill(&mut file);
    };
    let (reader, mut writer) = io::pipe().map_err(io(format!("a pipe to seal {name}")))?;
    let create = |stored: &str| -> io::Result<Box<dyn StoredFile>> {
        let file = staging.create_file(stored).map_err(io::Error::other)?;
        Ok(Box::new(file))
    };
    let (filled, stored) = std::thread::scope(|s| {
        let filler = std::thread::Builder::new()
            .name("seal-fill".into())
            .spawn_scoped(s, move || fill(&mut writer))
            .map_err(io(format!("a thread to write {name}")))?;
        let stored = store_file(name, reader, create, codec, Some(crypt), || false);
        match filler.join() {
            Ok(filled) => Ok::<_, CheckpointError>((filled, stored)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })?;
    let filled = filled?;
    let record = stored?;
    log::info!(
        "{name} sealed: {} bytes stored as {} ({})",
        record.original_size,
        record.stored_size,
        record.stored_name
    );
    if let Some(staging) = ctx.staging.as_mut() {
        staging.add_streamed(&[record]);
    }
    Ok(filled)
}
