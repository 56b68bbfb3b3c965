//! `archctl ls`: committed images (and with `--all` restored/failed sidecars).

use arch_image::ImageStore;
use serde_json::json;

use crate::error::Result;
use crate::parse::{human_age, human_size};
use crate::store::{now_secs, scan, Kind};
use crate::tags;

pub fn run(store: &ImageStore, json: bool, all: bool, tag: Option<&str>) -> Result<i32> {
    let tags = tags::load(store.root())?;
    let now = now_secs();
    let entries: Vec<_> = scan(store)?
        .into_iter()
        .filter(|e| {
            matches!(e.kind, Kind::Committed | Kind::Generation)
                || (all && matches!(e.kind, Kind::Restored | Kind::Failed))
        })
        .filter(|e| tag.is_none_or(|t| tags.has(&format!("{}/{}", e.namespace, e.key), t)))
        .collect();
    for e in &entries {
        if let (Kind::Committed, Err(why)) = (e.kind, &e.manifest) {
            eprintln!(
                "archctl: warning: {}: {}",
                crate::escape::printable(&e.id()),
                crate::escape::printable(why)
            );
        }
    }
    if json {
        let arr: Vec<_> = entries
            .iter()
            .map(|e| {
                let m = e.manifest.as_ref().ok();
                json!({
                    "namespace": e.namespace,
                    "key": e.key,
                    "name": e.name,
                    "container_id": m.map(|m| m.container_id.as_str()),
                    "created_at": e.created(),
                    "age_secs": now.saturating_sub(e.created()),
                    "size": e.size(),
                    "status": e.status(),
                    "tags": tags.of(&format!("{}/{}", e.namespace, e.key)),
                    "error": e.manifest.as_ref().err(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&arr).expect("json"));
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.namespace.clone(),
                e.name.clone(),
                e.manifest
                    .as_ref()
                    .map_or("-".into(), |m| m.container_id.clone()),
                human_age(now.saturating_sub(e.created())),
                human_size(e.size()),
                e.status().to_string(),
                tags.of(&format!("{}/{}", e.namespace, e.key)).join(","),
            ]
        })
        .collect();
    super::print_table(
        &[
            "NAMESPACE",
            "KEY",
            "CONTAINER",
            "AGE",
            "SIZE",
            "STATUS",
            "TAGS",
        ],
        &rows,
    );
    Ok(0)
}
