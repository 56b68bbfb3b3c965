//! `archctl inspect NS/KEY`: manifest, validity, phase durations and files.

use arch_image::ImageStore;

use crate::escape::printable as p;
use serde_json::json;

use crate::error::Result;
use crate::parse::{human_age, human_size, ImageId};
use crate::store::now_secs;
use crate::tags;

pub fn run(store: &ImageStore, id: &ImageId, json: bool) -> Result<i32> {
    let dir = super::require_image(store, id)?;
    // Bounded, never through a link, never blocking on a FIFO.
    let m = arch_image::read_manifest(&dir)?;
    let valid = store
        .open(&id.namespace, &id.key)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let tags = tags::load(store.root())?.of(&id.to_string());
    // Older generations, newest first, each checked like the image.
    let gens: Vec<_> = store
        .generations(&id.namespace, &id.key)?
        .into_iter()
        .map(|g| {
            let valid = store
                .open_generation(&id.namespace, &id.key, &g)
                .map(|_| ())
                .map_err(|e| e.to_string());
            (g, valid)
        })
        .collect();
    if json {
        let generations: Vec<_> = gens
            .iter()
            .map(|(g, valid)| {
                json!({
                    "name": g.name,
                    "created_at": g.created_at,
                    "valid": valid.is_ok(),
                    "error": valid.as_ref().err(),
                })
            })
            .collect();
        let v = json!({
            "image": id.to_string(),
            "path": dir,
            "valid": valid.is_ok(),
            "error": valid.as_ref().err(),
            "tags": tags,
            "manifest": m,
            "streamed": streamed_json(&m),
            "generations": generations,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(0);
    }
    let age = human_age(now_secs().saturating_sub(m.created_at.secs));
    let cgroup = serde_json::to_value(m.cgroup_version).expect("json");
    let status = serde_json::to_value(m.status).expect("json");
    println!("image:      {id}");
    println!("path:       {}", p(&dir.display().to_string()));
    println!("status:     {}", status.as_str().unwrap_or("?"));
    match &valid {
        Ok(()) => println!("valid:      yes"),
        Err(e) => println!("valid:      NO: {}", p(e)),
    }
    if let Some(f) = &m.failure {
        println!("failure:    {}", p(f));
    }
    println!("container:  {}", p(&m.container_id));
    println!("created:    {} ({age} ago)", m.created_at.secs);
    println!("format:     {}", m.format_version);
    println!("criu:       {}", p(&m.criu_version));
    println!("kernel:     {}", p(&m.kernel));
    println!("arch:       {}", p(&m.arch));
    println!("cgroup:     {}", cgroup.as_str().unwrap_or("?"));
    println!(
        "size:       {} ({} bytes)",
        human_size(m.total_size),
        m.total_size
    );
    if m.streamed() {
        let (orig, stored) = m.streamed_sizes();
        println!(
            "streamed:   {} of streamed files stored as {} (ratio {})",
            human_size(orig),
            human_size(stored),
            ratio(stored, orig)
        );
    }
    if let Some(e) = m.encryption() {
        println!(
            "encrypted:  {} (key id {}, image id {}, original digests {})",
            p(&e.cipher),
            p(&e.key_id),
            p(&e.image_id),
            p(e.digest.as_deref().unwrap_or("sha256"))
        );
    }
    println!(
        "tags:       {}",
        if tags.is_empty() {
            "-".into()
        } else {
            p(&tags.join(","))
        }
    );
    println!("durations:");
    let total: u64 = m.durations_ms.values().sum();
    for (phase, ms) in &m.durations_ms {
        println!("  {:<16} {ms:>8} ms", p(phase));
    }
    println!("  {:<16} {total:>8} ms", "(total)");
    println!("files:");
    for f in &m.files {
        println!("  {:<40} {:>12}  {}", f.path, f.size, f.sha256);
        if let Some(st) = &f.stream {
            let level = st.level.map(|l| format!(" level {l}")).unwrap_or_default();
            println!(
                "  {:<40} {:>12}  {}  ({}{level}, ratio {})",
                "  (original)",
                st.original_size,
                st.original_sha256,
                st.codec,
                ratio(f.size, st.original_size)
            );
        }
    }
    println!("generations: {} older", gens.len());
    for (g, valid) in &gens {
        let age = human_age(now_secs().saturating_sub(g.created_at.secs));
        let valid = valid
            .as_ref()
            .map_or_else(|e| format!("NO: {}", p(e)), |_| "yes".into());
        println!("  {:<40} {age:>8} ago  valid: {valid}", p(&g.name));
    }
    Ok(0)
}

/// stored / original, as "0.42" (1.00 for an empty file).
fn ratio(stored: u64, original: u64) -> String {
    match original {
        0 => "1.00".into(),
        o => format!("{:.2}", stored as f64 / o as f64),
    }
}

/// Original and stored sizes of a streamed image (null otherwise).
fn streamed_json(m: &arch_image::Manifest) -> serde_json::Value {
    if !m.streamed() {
        return serde_json::Value::Null;
    }
    let (original, stored) = m.streamed_sizes();
    json!({
        "original_size": original,
        "stored_size": stored,
        "ratio": stored as f64 / original.max(1) as f64,
    })
}
