//! `archctl validate [NS/KEY...]`: full re-verification via ImageStore::open.

use std::path::Path;
use std::sync::Arc;

use arch_checkpoint::ArchConfig;
use arch_image::{ImageStore, SigningKey, Trust};

use crate::error::{Error, Result};
use crate::parse::{human_size, ImageId};
use crate::progress::Progress;

/// The store, verifying signatures with `key` or the configured key file;
/// without either, signatures are not checked (and a note says so).
pub fn with_key(store: ImageStore, key: Option<&Path>) -> Result<ImageStore> {
    let cfg = ArchConfig::from_process_env().ok();
    let file = key
        .map(Path::to_path_buf)
        .or_else(|| cfg.as_ref().and_then(|c| c.signing_key_file.clone()));
    let Some(file) = file else {
        eprintln!(
            "archctl: note: signatures not checked (no --key, no signing_key_file configured)"
        );
        return Ok(store);
    };
    let key = SigningKey::from_file(&file).map_err(|e| Error::Config(e.to_string()))?;
    Ok(store.with_trust(Trust {
        key: Some(Arc::new(key)),
        allow_unsigned: cfg.is_some_and(|c| c.allow_unsigned),
    }))
}

pub fn run(store: &ImageStore, ids: &[ImageId]) -> Result<i32> {
    let targets: Vec<ImageId> = if ids.is_empty() {
        store
            .list()?
            .into_iter()
            .map(|r| ImageId {
                namespace: r.namespace,
                key: r.key,
            })
            .collect()
    } else {
        ids.to_vec()
    };
    if targets.is_empty() {
        println!("no images under {}", store.root().display());
        return Ok(0);
    }
    let progress = Progress::new("validated", targets.len());
    let mut failed = 0;
    for (i, id) in targets.iter().enumerate() {
        match store.open(&id.namespace, &id.key) {
            Ok(img) => {
                let m = img.manifest();
                println!(
                    "ok      {id} ({} files, {})",
                    m.files.len(),
                    human_size(m.total_size)
                );
            }
            Err(e) => {
                failed += 1;
                println!("FAILED  {id}: {}", crate::escape::printable(&e.to_string()));
            }
        }
        progress.tick(i + 1);
    }
    if failed > 0 {
        eprintln!(
            "archctl: {failed} of {} images failed validation",
            targets.len()
        );
        return Ok(1);
    }
    Ok(0)
}
