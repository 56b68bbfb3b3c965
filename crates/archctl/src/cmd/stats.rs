//! `archctl stats`: image counts and bytes per namespace, record counts.

use std::collections::BTreeMap;

use arch_image::ImageStore;
use serde::Serialize;

use crate::error::Result;
use crate::parse::human_size;
use crate::store::{scan, Kind};

#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub committed: u64,
    pub restored: u64,
    pub failed: u64,
    /// Committed-looking images whose manifest does not parse.
    pub invalid: u64,
    /// Staging, old, removing leftovers.
    pub other: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
struct Stats {
    images: Counts,
    namespaces: BTreeMap<String, Counts>,
    records: RecordStats,
}

#[derive(Debug, Serialize)]
struct RecordStats {
    total: usize,
    unreadable: usize,
    /// op → outcome → count.
    by_op: BTreeMap<String, BTreeMap<String, u64>>,
}

fn add(c: &mut Counts, status: &str, bytes: u64) {
    match status {
        "committed" => c.committed += 1,
        "restored" => c.restored += 1,
        "failed" => c.failed += 1,
        "invalid" => c.invalid += 1,
        _ => c.other += 1,
    }
    c.bytes += bytes;
}

fn label<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

pub fn run(store: &ImageStore, json: bool) -> Result<i32> {
    let mut total = Counts::default();
    let mut namespaces: BTreeMap<String, Counts> = BTreeMap::new();
    for e in scan(store)?.iter().filter(|e| e.kind != Kind::Claim) {
        let size = e.size();
        add(&mut total, e.status(), size);
        add(
            namespaces.entry(e.namespace.clone()).or_default(),
            e.status(),
            size,
        );
    }
    let (records, unreadable) = arch_records::read_all(store.root())?;
    let mut by_op: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for r in &records {
        *by_op
            .entry(label(r.op))
            .or_default()
            .entry(label(r.outcome))
            .or_default() += 1;
    }
    let stats = Stats {
        images: total,
        namespaces,
        records: RecordStats {
            total: records.len(),
            unreadable,
            by_op,
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&stats).expect("json"));
        return Ok(0);
    }
    let row = |name: &str, c: &Counts| {
        vec![
            name.to_string(),
            c.committed.to_string(),
            c.restored.to_string(),
            c.failed.to_string(),
            c.invalid.to_string(),
            c.other.to_string(),
            format!("{} ({})", human_size(c.bytes), c.bytes),
        ]
    };
    let mut rows: Vec<_> = stats.namespaces.iter().map(|(n, c)| row(n, c)).collect();
    rows.push(row("(total)", &stats.images));
    super::print_table(
        &[
            "NAMESPACE",
            "COMMITTED",
            "RESTORED",
            "FAILED",
            "INVALID",
            "OTHER",
            "BYTES",
        ],
        &rows,
    );
    println!();
    println!(
        "records: {} ({} unreadable lines)",
        records.len(),
        unreadable
    );
    let rows: Vec<_> = stats
        .records
        .by_op
        .iter()
        .flat_map(|(op, m)| {
            m.iter()
                .map(move |(o, n)| vec![op.clone(), o.clone(), n.to_string()])
        })
        .collect();
    if !rows.is_empty() {
        super::print_table(&["OP", "OUTCOME", "COUNT"], &rows);
    }
    Ok(0)
}
