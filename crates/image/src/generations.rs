//! Older generations of a key's image (issue 16 §1): with `generations =
//! N` on the host, a commit keeps the image it replaces as
//! `{key}@gen-{secs}-{nanos}` (that image's own commit time, from its
//! manifest) and keeps the newest N-1 of them beside the current `{key}`.
//! A restore whose newest image is bad falls back to them, newest first.
//!
//! This module is the one place that spells, parses and orders generation
//! names: `gen-` is a sidecar kind of its own, never `tmp-`, `old-`,
//! `taken-`, `lease-`, `failed-` or `restored`, so cleanup never confuses
//! a generation with a temporary, a claim or a retiree.
//!
//! The set belongs to the key: once one of them (or the newest image) has
//! been restored, every generation that existed then is retired, by the
//! restorer and, should it die first, by stale-temp cleanup. Older state
//! never comes back after newer state was restored.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};
use crate::ident::validate_key;
use crate::lease::changed_at;
use crate::manifest::Timestamp;
use crate::store::ImageStore;
use crate::SIDECAR_SEP as SEP;

/// The sidecar kind of an older generation.
pub(crate) const GEN: &str = "gen-";
/// Most generations (the current image included) a host may keep.
pub const MAX_GENERATIONS: usize = 16;

/// `{key}@gen-{secs}-{nanos}`: the name of the generation committed at `at`.
pub(crate) fn gen_name(key: &str, at: Timestamp) -> String {
    format!("{key}{SEP}{GEN}{}-{:09}", at.secs, at.nanos)
}

/// The commit time a generation's name carries (`what` is the part after
/// `@`); None for every other sidecar and for malformed names.
pub(crate) fn parse_gen(what: &str) -> Option<Timestamp> {
    let (secs, nanos) = what.strip_prefix(GEN)?.split_once('-')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(secs) || nanos.len() != 9 || !all_digits(nanos) {
        return None;
    }
    let nanos: u32 = nanos.parse().ok()?;
    (nanos < 1_000_000_000).then_some(Timestamp {
        secs: secs.parse().ok()?,
        nanos,
    })
}

/// Whether `what` (a sidecar name after `@`) names an older generation.
pub fn is_generation(what: &str) -> bool {
    parse_gen(what).is_some()
}

/// An older generation of a key's image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// Its name in the scope directory.
    pub name: String,
    pub path: PathBuf,
    /// When it was committed (from its name).
    pub created_at: Timestamp,
}

fn order(t: &Timestamp) -> (u64, u32) {
    (t.secs, t.nanos)
}

/// The older generations of `key` in `ns_dir`, newest first.
pub(crate) fn generations_in(ns_dir: &Path, key: &str) -> Result<Vec<Generation>> {
    let rd = match fs::read_dir(ns_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.map_err(io_err("read dir", ns_dir))?,
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(io_err("read dir", ns_dir))?;
        let Ok(name) = ent.file_name().into_string() else {
            continue;
        };
        let Some((k, what)) = name.split_once(SEP) else {
            continue;
        };
        if k != key || !ent.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Some(created_at) = parse_gen(what) {
            out.push(Generation {
                path: ns_dir.join(&name),
                name,
                created_at,
            });
        }
    }
    out.sort_by_key(|g| std::cmp::Reverse(order(&g.created_at)));
    Ok(out)
}

/// Removes a generation; one another cleaner removed first is no error.
fn remove(g: &Generation) -> Result<()> {
    match fs::remove_dir_all(&g.path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("remove", &g.path)(e)),
        _ => Ok(()),
    }
}

/// Keeps the newest `keep` older generations of `key`, removing the rest.
/// Returns how many went.
pub(crate) fn keep_newest(ns_dir: &Path, key: &str, keep: usize) -> Result<usize> {
    let gens = generations_in(ns_dir, key)?;
    let extra = gens.len().saturating_sub(keep);
    for g in gens.iter().skip(keep) {
        remove(g)?;
    }
    Ok(extra)
}

/// Whether the generation `name` of `key` is older state than the key's
/// `@restored` image: it became a generation before that restore (its
/// restorer retires such ones, or died before it could). Judged by the
/// root's own clock (the entries' change times, set by the file server,
/// as for `@old-`), never by the writers' clocks, which may differ
/// between hosts: a generation of the run that restore started becomes
/// one at its second commit, at least an interval later.
fn superseded_name(ns_dir: &Path, key: &str, name: &str) -> bool {
    let restored = ns_dir.join(format!("{key}{SEP}restored"));
    match (changed_at(&ns_dir.join(name)), changed_at(&restored)) {
        (Some(generation), Some(restored)) => generation <= restored,
        _ => false,
    }
}

/// `superseded_name` for the sidecar `what` (the part after `@`).
pub(crate) fn superseded(ns_dir: &Path, key: &str, what: &str) -> bool {
    is_generation(what) && superseded_name(ns_dir, key, &format!("{key}{SEP}{what}"))
}

/// Retires the generations of `key` that are older state than its
/// `@restored` image (see `superseded`). Returns how many went.
pub(crate) fn retire_superseded(ns_dir: &Path, key: &str) -> Result<usize> {
    let mut n = 0;
    for g in generations_in(ns_dir, key)? {
        if superseded_name(ns_dir, key, &g.name) {
            remove(&g)?;
            n += 1;
        }
    }
    Ok(n)
}

impl ImageStore {
    /// The older generations of `ns`/`key`, newest first (the current
    /// image, `{key}`, is not among them).
    pub fn generations(&self, ns: &str, key: &str) -> Result<Vec<Generation>> {
        validate_key(key)?;
        generations_in(&self.checked_ns(ns)?, key)
    }

    /// Reads and fully validates an older generation of `ns`/`key`, as
    /// [`ImageStore::open`] does the current image (archctl inspect).
    pub fn open_generation(&self, ns: &str, key: &str, g: &Generation) -> Result<crate::Image> {
        validate_key(key)?;
        let dir = self.checked_ns(ns)?.join(&g.name);
        crate::Image::load(dir, ns, key, self.trust())
    }

    /// Removes every older generation of `ns`/`key` (`archctl rm`, and a
    /// container that starts fresh: what was older than nothing restored
    /// must not be restored later). Returns how many went.
    pub fn remove_generations(&self, ns: &str, key: &str) -> Result<usize> {
        let gens = self.generations(ns, key)?;
        for g in &gens {
            remove(g)?;
        }
        Ok(gens.len())
    }
}
