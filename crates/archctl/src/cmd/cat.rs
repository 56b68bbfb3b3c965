//! `archctl cat NS/KEY FILE`: one file of an image on stdout as it was
//! written (decoded; decrypted with the host's `encryption_key_file`),
//! checked against the manifest: CRIU's log of an encrypted image, an
//! image for `crit decode`.

use std::io::{BufWriter, Write};

use arch_image::{HostKey, ImageStore};

use crate::error::Result;
use crate::parse::ImageId;

pub fn run(store: &ImageStore, id: &ImageId, file: &str, cfg: &super::HostConfig) -> Result<i32> {
    let dir = super::require_image(store, id)?;
    let manifest = arch_image::read_manifest(&dir)?;
    let key_file = cfg
        .as_ref()
        .ok()
        .and_then(|c| c.encryption_key_file.clone());
    let key = HostKey::load(key_file.as_deref());
    // `| head` ends it by SIGPIPE, like any filter (main.rs).
    let mut out = BufWriter::new(std::io::stdout().lock());
    arch_image::copy_out(&dir, &manifest, file, &key, &mut out)?;
    out.flush()
        .map_err(crate::error::io_err("write", "stdout"))?;
    Ok(0)
}
