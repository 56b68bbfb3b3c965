//! One module per subcommand. Each returns the process exit code on
//! success (0, or 1 when it found problems it already reported).

mod archive;
mod cat;
mod check;
mod gc;
mod inspect;
mod ls;
mod metrics;
mod rm;
mod stats;
mod tag;
mod validate;

use std::path::{Path, PathBuf};

use arch_checkpoint::{ArchConfig, Mode};

use crate::cli::{Cli, Command};
use crate::error::{Error, Result};
use crate::store::open_root;

/// The host configuration, read once per command.
type HostConfig = std::result::Result<ArchConfig, arch_checkpoint::CheckpointError>;

/// The checkpoint root: `--root`, else the host configuration's.
fn resolve_root(root: Option<&Path>, cfg: &HostConfig) -> Result<PathBuf> {
    match root {
        Some(r) => Ok(r.to_path_buf()),
        None => cfg
            .as_ref()
            .map(|c| c.checkpoint_root.clone())
            .map_err(|e| Error::Config(e.to_string())),
    }
}

/// In network-fs mode, images taken by a restorer on another host are
/// judged by its lease (as the shims judge them): `gc` gives back one whose
/// lease expired. Elsewhere a taken image is never given back by age.
fn with_host_lease(store: arch_image::ImageStore, cfg: &HostConfig) -> arch_image::ImageStore {
    match cfg {
        Ok(cfg) if cfg.mode == Mode::NetworkFs => store.with_lease(cfg.claim_lease),
        _ => store,
    }
}

pub fn run(cli: Cli) -> Result<i32> {
    if let Command::Check { address } = &cli.command {
        return check::run(cli.root.as_deref(), address.as_deref());
    }
    let cfg = ArchConfig::from_process_env();
    let root = resolve_root(cli.root.as_deref(), &cfg)?;
    let store = match &cli.command {
        // An import may be the first thing a new host's root sees (no ARCH
        // container ran there yet): the store makes the root, 0700.
        Command::Import { .. } if !root.exists() => arch_image::ImageStore::new(&root),
        _ => open_root(&root)?,
    };
    let store = with_host_lease(store, &cfg);
    match cli.command {
        Command::Ls { json, all, tag } => ls::run(&store, json, all, tag.as_deref()),
        Command::Inspect { image, json } => inspect::run(&store, &image, json),
        Command::Cat { image, file } => cat::run(&store, &image, &file, &cfg),
        Command::Validate { images, key } => {
            let store = validate::with_key(store, key.as_deref(), cfg.as_ref().ok())?;
            validate::run(&store, &images)
        }
        Command::Rm { images } => rm::run(&store, &images),
        Command::Gc {
            older_than,
            keep,
            failed,
            tmp_age,
            dry_run,
        } => gc::run(
            &store,
            &gc::Options {
                older_than,
                keep,
                failed,
                tmp_age,
                dry_run,
            },
        ),
        Command::Tag { image, tag } => tag::tag(&store, &image, &tag),
        Command::Untag { image, tag } => tag::untag(&store, &image, &tag),
        Command::Stats { json } => stats::run(&store, json),
        Command::Export {
            image,
            to,
            output,
            level,
        } => {
            let output = to.or(output).unwrap_or_else(|| PathBuf::from("-"));
            archive::export(&store, &image, &output, level)
        }
        Command::Import {
            input,
            namespace,
            key,
            allow_unsigned,
        } => {
            let target = arch_archive::ImportTarget {
                namespace,
                key,
                skip_signature: allow_unsigned,
            };
            let cfg = cfg.map_err(|e| Error::Config(e.to_string()))?;
            archive::import(&store, &input, target, &cfg)
        }
        Command::Metrics { serve } => metrics::run(&store, serve.as_deref()),
        Command::Check { .. } => unreachable!("handled above"),
    }
}

/// Print rows as a left-aligned table with two-space gaps.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    // Cells come from the untrusted root (names, manifest fields).
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| crate::escape::printable(c)).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// The image directory must exist as a directory.
pub(crate) fn require_image(
    store: &arch_image::ImageStore,
    id: &crate::parse::ImageId,
) -> Result<PathBuf> {
    let dir = store.image_dir(&id.namespace, &id.key)?;
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        _ => Err(arch_image::Error::NotFound {
            namespace: id.namespace.clone(),
            key: id.key.clone(),
        }
        .into()),
    }
}
