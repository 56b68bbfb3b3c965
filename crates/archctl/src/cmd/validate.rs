//! `archctl validate [NS/KEY...]`: full re-verification via ImageStore::open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arch_checkpoint::{ArchConfig, Mode, DEFAULT_HOST_KEY};
use arch_image::{ImageStore, SigningKey, Trust};

use crate::error::{Error, Result};
use crate::parse::{human_size, ImageId};
use crate::progress::Progress;

/// The store, verifying signatures with `key`, the configured key file,
/// or in basic mode the host's own key (as the shims sign with it; read,
/// never made here). Without any, signatures are not checked (and a note
/// says so).
pub fn with_key(
    store: ImageStore,
    key: Option<&Path>,
    cfg: Option<&ArchConfig>,
) -> Result<ImageStore> {
    let Some(file) = key_file(key, cfg, Path::new(DEFAULT_HOST_KEY)) else {
        eprintln!(
            "archctl: note: signatures not checked (no --key, no signing_key_file configured, no host key)"
        );
        return Ok(store);
    };
    let key = SigningKey::from_file(&file).map_err(|e| Error::Config(e.to_string()))?;
    Ok(store.with_trust(Trust {
        key: Some(Arc::new(key)),
        allow_unsigned: cfg.is_some_and(|c| c.allow_unsigned),
    }))
}

fn key_file(key: Option<&Path>, cfg: Option<&ArchConfig>, host_key: &Path) -> Option<PathBuf> {
    let basic = cfg.is_none_or(|c| c.mode == Mode::Basic);
    key.map(Path::to_path_buf)
        .or_else(|| cfg.and_then(|c| c.signing_key_file.clone()))
        .or_else(|| (basic && host_key.exists()).then(|| host_key.to_path_buf()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_named_one_then_the_configured_then_the_host_key() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host.key");
        let named = Path::new("/named.key");
        let mut cfg = ArchConfig::default();
        assert_eq!(key_file(None, Some(&cfg), &host), None, "no host key yet");
        std::fs::write(&host, [7u8; 32]).unwrap();
        assert_eq!(key_file(None, Some(&cfg), &host), Some(host.clone()));
        assert_eq!(key_file(None, None, &host), Some(host.clone()));
        assert_eq!(
            key_file(Some(named), Some(&cfg), &host).as_deref(),
            Some(named)
        );
        cfg.signing_key_file = Some("/fleet.key".into());
        assert_eq!(key_file(None, Some(&cfg), &host), Some("/fleet.key".into()));
        cfg.signing_key_file = None;
        cfg.mode = Mode::NetworkFs;
        assert_eq!(
            key_file(None, Some(&cfg), &host),
            None,
            "not in network-fs mode"
        );
    }
}
