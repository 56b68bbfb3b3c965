//! `archctl export` and `archctl import`: images in and out of the root as
//! portable archives (see arch-archive).

use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use arch_archive::{ForeignFacts, ImportLimits, ImportTarget};
use arch_checkpoint::{
    load_trust, security_profile, ArchConfig, HostFacts, ProfileContext, DEFAULT_HOST_KEY,
};
use arch_image::ImageStore;

use crate::error::{io_err, Error, Result};
use crate::parse::{human_size, ImageId};

fn is_stdio(path: &Path) -> bool {
    path == Path::new("-")
}

pub fn export(store: &ImageStore, id: &ImageId, output: &Path, level: i32) -> Result<i32> {
    let image = store.open(&id.namespace, &id.key)?;
    let started = Instant::now();
    let stats = if is_stdio(output) {
        let stdout = std::io::stdout().lock();
        arch_archive::export(&image, BufWriter::new(stdout), level)?
    } else {
        // A new file next to the target, renamed in only when complete.
        let tmp = output.with_extension("arch-partial");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        let mut out = BufWriter::new(file);
        let stats = arch_archive::export(&image, &mut out, level);
        let done = stats.and_then(|s| {
            out.flush()
                .and_then(|()| out.get_ref().sync_all())
                .map_err(|e| arch_archive::ArchiveError::Io {
                    context: format!("writing {}", tmp.display()),
                    source: e,
                })?;
            Ok(s)
        });
        let stats = match done {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        std::fs::rename(&tmp, output).map_err(io_err("rename", output))?;
        stats
    };
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    eprintln!(
        "exported {id}: {} of image in {} of archive, {:.0} MB/s",
        human_size(stats.image_bytes),
        human_size(stats.archive_bytes),
        stats.image_bytes as f64 / secs / 1e6
    );
    Ok(0)
}

pub fn import(
    store: &ImageStore,
    input: &Path,
    target: ImportTarget,
    cfg: &ArchConfig,
) -> Result<i32> {
    if target.skip_signature {
        eprintln!("archctl: warning: --allow-unsigned: the archive's signature is not checked");
    }
    // The imported image is committed, and signed, as this host's shims
    // would: with the host configuration's key, so they trust it.
    let trust =
        load_trust(cfg, Path::new(DEFAULT_HOST_KEY)).map_err(|e| Error::Config(e.to_string()))?;
    let store = &ImageStore::new(store.root()).with_trust(trust);
    let limits = ImportLimits::default();
    let foreign = foreign_facts(&target);
    let started = Instant::now();
    let image = if is_stdio(input) {
        let stdin = std::io::stdin().lock();
        arch_archive::import(
            store,
            BufReader::new(stdin),
            &target,
            &limits,
            foreign.as_ref(),
        )?
    } else {
        let file = std::fs::File::open(input).map_err(io_err("open", input))?;
        arch_archive::import(
            store,
            BufReader::new(file),
            &target,
            &limits,
            foreign.as_ref(),
        )?
    };
    let m = image.manifest();
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    eprintln!(
        "imported {}/{}: {}, {:.0} MB/s",
        m.namespace,
        m.key,
        human_size(m.total_size),
        m.total_size as f64 / secs / 1e6
    );
    Ok(0)
}

/// This host's facts for an archive without ARCH's manifest (CRI-O's
/// layout), which can import only when vouched for and named.
fn foreign_facts(target: &ImportTarget) -> Option<ForeignFacts<'static>> {
    if !target.skip_signature || target.namespace.is_none() || target.key.is_none() {
        return None;
    }
    let host = HostFacts::detect(super::check::criu_version().unwrap_or_default());
    Some(ForeignFacts {
        profile: &|spec, id| {
            let ctx = ProfileContext {
                container_id: id.to_string(),
                layers: None,
            };
            security_profile(spec, &ctx)
        },
        arch: host.arch,
        cgroup_version: host.cgroup_version,
        criu_version: host.criu_version,
        kernel: host.kernel,
    })
}
