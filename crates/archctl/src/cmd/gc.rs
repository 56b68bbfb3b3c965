//! `archctl gc`: remove old images (keeping the N newest per namespace),
//! failed sidecars, and stale temporaries. Images under a restore claim
//! are never touched.

use std::collections::BTreeMap;
use std::time::Duration;

use arch_image::{ImageStore, StaleWhy};

use crate::error::Result;
use crate::progress::Progress;
use crate::store::{is_claimed, now_secs, remove_entry, scan, Entry, Kind};
use crate::tags;

pub struct Options {
    pub older_than: Option<Duration>,
    pub keep: Option<usize>,
    pub failed: bool,
    pub tmp_age: Duration,
    pub dry_run: bool,
}

/// Which images and failed sidecars to remove, with the reason.
pub fn select<'a>(entries: &'a [Entry], o: &Options, now: u64) -> Vec<(&'a Entry, String)> {
    let older = |secs: u64| {
        o.older_than
            .is_none_or(|d| now.saturating_sub(secs) > d.as_secs())
    };
    let mut by_ns: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == Kind::Committed) {
        by_ns.entry(&e.namespace).or_default().push(e);
    }
    let mut out = Vec::new();
    if o.older_than.is_some() || o.keep.is_some() {
        for list in by_ns.values_mut() {
            list.sort_by_key(|e| std::cmp::Reverse(e.created()));
            for (i, e) in list.iter().enumerate() {
                if o.keep.is_some_and(|k| i < k) || !older(e.created()) {
                    continue;
                }
                let why = match (o.older_than, o.keep) {
                    (Some(_), _) => "older than --older-than".to_string(),
                    (None, Some(k)) => format!("beyond the {k} newest"),
                    (None, None) => unreachable!(),
                };
                out.push((*e, why));
            }
        }
    }
    if o.failed {
        for e in entries
            .iter()
            .filter(|e| e.kind == Kind::Failed && older(e.mtime))
        {
            out.push((e, "failed sidecar".into()));
        }
    }
    out
}

pub fn run(store: &ImageStore, o: &Options) -> Result<i32> {
    let now = now_secs();
    let entries = scan(store)?;
    let verb = if o.dry_run { "would remove" } else { "removed" };
    let mut chosen = select(&entries, o, now);
    chosen.retain(|(e, _)| {
        let claimed = e.kind == Kind::Committed && is_claimed(store, &e.namespace, &e.key);
        if claimed {
            println!("skipped {} (claimed by a restore in progress)", e.id());
        }
        !claimed
    });
    let progress = Progress::new("gc: removed", chosen.len());
    let mut bytes = 0;
    for (i, (e, why)) in chosen.iter().enumerate() {
        if !o.dry_run {
            remove_entry(&store.root().join(&e.namespace), &e.name)?;
            if e.kind == Kind::Committed {
                // Its older generations go with it: the set is the key's.
                for g in store.generations(&e.namespace, &e.key)? {
                    remove_entry(&store.root().join(&e.namespace), &g.name)?;
                }
                let id = format!("{}/{}", e.namespace, e.key);
                tags::update(store.root(), |t| (t.forget(&id), ()))?;
            }
        }
        bytes += e.size();
        println!("{verb} {} ({why})", e.id());
        progress.tick(i + 1);
    }
    // Interrupted removals are archctl's own; staging and replaced images
    // are the image store's (the same plan a shim's cleanup follows).
    let stale = |e: &&Entry| now.saturating_sub(e.mtime) >= o.tmp_age.as_secs();
    for e in entries
        .iter()
        .filter(|e| e.kind == Kind::Removing)
        .filter(stale)
    {
        if !o.dry_run {
            remove_entry(&store.root().join(&e.namespace), &e.name)?;
        }
        let verb = if o.dry_run { "would clean" } else { "cleaned" };
        println!("{verb} {} (interrupted removal)", e.id());
    }
    let temps = store.stale_temps(o.tmp_age)?;
    if !o.dry_run {
        store.cleanup_stale_temps(o.tmp_age)?;
    }
    for t in &temps {
        let what = match (&t.restore_to, t.why) {
            (Some(_), StaleWhy::LeaseExpired) => "restored: its restorer's lease expired",
            (Some(_), _) => "restored: its replacement never landed or its restorer is gone",
            (None, StaleWhy::WriterGone) => "its writer is gone",
            (None, StaleWhy::Old) => "stale",
            (None, StaleWhy::LeaseExpired) => "its restorer's lease expired",
            (_, StaleWhy::Superseded) => "an older generation than the image restored since",
        };
        let verb = match (o.dry_run, t.restore_to.is_some()) {
            (true, true) => "would restore",
            (true, false) => "would clean",
            (false, true) => "restored",
            (false, false) => "cleaned",
        };
        println!("{verb} {}/{} ({what})", t.namespace, t.name);
    }
    println!(
        "{verb} {} item(s), {}",
        chosen.len(),
        crate::parse::human_size(bytes)
    );
    Ok(0)
}
