//! Prometheus text exposition (format 0.0.4) of the records and the store.
//! Pure functions of their inputs, so rendering is unit-tested.

use std::collections::BTreeMap;
use std::fmt::Write;

use arch_records::{Operation, Outcome, Record};

use crate::store::Entry;

/// Seconds.
pub const DURATION_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Bytes: 1 MiB, 4 MiB, … 16 GiB.
pub const SIZE_BUCKETS: [f64; 8] = [
    (1u64 << 20) as f64,
    (1u64 << 22) as f64,
    (1u64 << 24) as f64,
    (1u64 << 26) as f64,
    (1u64 << 28) as f64,
    (1u64 << 30) as f64,
    (1u64 << 32) as f64,
    (1u64 << 34) as f64,
];

/// A Prometheus histogram: per-bucket counts are kept non-cumulative and
/// summed on output.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// `_bucket{le=…}` lines (cumulative, ending with `+Inf` = count),
    /// `_sum` and `_count`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Failed => "failed",
        Outcome::Fallback => "fallback",
        Outcome::Skipped => "skipped",
    }
}

/// Everything `archctl metrics` exposes.
pub fn render(records: &[Record], unreadable: usize, entries: &[Entry]) -> String {
    let mut out = String::new();
    let mut counts: BTreeMap<(bool, &str), u64> = BTreeMap::new();
    let mut ckpt_dur = Histogram::new(&DURATION_BUCKETS);
    let mut rest_dur = Histogram::new(&DURATION_BUCKETS);
    let mut size = Histogram::new(&SIZE_BUCKETS);
    for r in records {
        let is_ckpt = r.op == Operation::Checkpoint;
        *counts
            .entry((is_ckpt, outcome_label(r.outcome)))
            .or_default() += 1;
        let secs = r.total_ms as f64 / 1000.0;
        if is_ckpt {
            ckpt_dur.observe(secs);
            if r.outcome == Outcome::Ok {
                size.observe(r.bytes as f64);
            }
        } else {
            rest_dur.observe(secs);
        }
    }
    let get = |ckpt: bool, o: &str| counts.get(&(ckpt, o)).copied().unwrap_or(0);
    for (ckpt, name, what, outcomes) in [
        (
            true,
            "arch_checkpoints_total",
            "Checkpoints by outcome.",
            &["ok", "failed", "skipped"][..],
        ),
        (
            false,
            "arch_restores_total",
            "Restores by outcome.",
            &["ok", "failed", "fallback"][..],
        ),
    ] {
        header(&mut out, name, what, "counter");
        for o in outcomes {
            let _ = writeln!(out, "{name}{{outcome=\"{o}\"}} {}", get(ckpt, o));
        }
    }
    header(
        &mut out,
        "arch_restore_fallbacks_total",
        "Restores that fell back to a fresh start.",
        "counter",
    );
    let _ = writeln!(
        out,
        "arch_restore_fallbacks_total {}",
        get(false, "fallback")
    );
    ckpt_dur.render(
        &mut out,
        "arch_checkpoint_duration_seconds",
        "Checkpoint wall time (all outcomes).",
    );
    rest_dur.render(
        &mut out,
        "arch_restore_duration_seconds",
        "Restore wall time (all outcomes).",
    );
    size.render(
        &mut out,
        "arch_checkpoint_size_bytes",
        "Size of committed checkpoint images.",
    );
    let mut by_status: BTreeMap<&str, u64> = ["committed", "restored", "failed"]
        .iter()
        .map(|s| (*s, 0))
        .collect();
    let mut bytes = 0;
    for e in entries {
        *by_status.entry(e.status()).or_default() += 1;
        bytes += e.size();
    }
    header(
        &mut out,
        "arch_images",
        "Images and sidecars in the store by status.",
        "gauge",
    );
    for (s, n) in &by_status {
        let _ = writeln!(out, "arch_images{{status=\"{s}\"}} {n}");
    }
    header(
        &mut out,
        "arch_image_bytes",
        "Bytes held by images and sidecars in the store.",
        "gauge",
    );
    let _ = writeln!(out, "arch_image_bytes {bytes}");
    header(
        &mut out,
        "arch_records_unreadable",
        "Record lines that did not parse.",
        "gauge",
    );
    let _ = writeln!(out, "arch_records_unreadable {unreadable}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: Operation, outcome: Outcome, ms: u64, bytes: u64) -> Record {
        Record {
            time: 1,
            op,
            outcome,
            trigger: "stop".into(),
            namespace: "default".into(),
            key: "k".into(),
            container_id: "c".into(),
            total_ms: ms,
            durations_ms: BTreeMap::new(),
            bytes,
            error: None,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))[prefix.len() + 1..]
            .trim()
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[1.0, 2.5, 10.0]);
        for v in [0.5, 1.0, 2.0, 3.0, 100.0] {
            h.observe(v);
        }
        let mut s = String::new();
        h.render(&mut s, "x", "help");
        assert_eq!(line(&s, "x_bucket{le=\"1\"}"), "2", "le is inclusive");
        assert_eq!(line(&s, "x_bucket{le=\"2.5\"}"), "3");
        assert_eq!(line(&s, "x_bucket{le=\"10\"}"), "4");
        assert_eq!(line(&s, "x_bucket{le=\"+Inf\"}"), "5");
        assert_eq!(line(&s, "x_count"), "5");
        assert_eq!(line(&s, "x_sum"), "106.5");
        assert!(s.starts_with("# HELP x help\n# TYPE x histogram\n"));
    }

    #[test]
    fn render_counts_and_buckets() {
        use Operation::*;
        use Outcome::*;
        let records = vec![
            rec(Checkpoint, Ok, 40, 2 << 20),
            rec(Checkpoint, Ok, 300, 5 << 30),
            rec(Checkpoint, Failed, 12_000, 0),
            rec(Restore, Ok, 700, 0),
            rec(Restore, Fallback, 50, 0),
            rec(Restore, Fallback, 60, 0),
        ];
        let t = render(&records, 3, &[]);
        assert_eq!(line(&t, "arch_checkpoints_total{outcome=\"ok\"}"), "2");
        assert_eq!(line(&t, "arch_checkpoints_total{outcome=\"failed\"}"), "1");
        assert_eq!(line(&t, "arch_restores_total{outcome=\"ok\"}"), "1");
        assert_eq!(line(&t, "arch_restores_total{outcome=\"failed\"}"), "0");
        assert_eq!(line(&t, "arch_restores_total{outcome=\"fallback\"}"), "2");
        assert_eq!(line(&t, "arch_restore_fallbacks_total"), "2");
        let ck = "arch_checkpoint_duration_seconds";
        assert_eq!(line(&t, &format!("{ck}_bucket{{le=\"0.05\"}}")), "1");
        assert_eq!(line(&t, &format!("{ck}_bucket{{le=\"0.5\"}}")), "2");
        assert_eq!(line(&t, &format!("{ck}_bucket{{le=\"10\"}}")), "2");
        assert_eq!(line(&t, &format!("{ck}_bucket{{le=\"30\"}}")), "3");
        assert_eq!(line(&t, &format!("{ck}_count")), "3");
        assert_eq!(line(&t, &format!("{ck}_sum")), "12.34");
        let sz = "arch_checkpoint_size_bytes";
        assert_eq!(line(&t, &format!("{sz}_bucket{{le=\"1048576\"}}")), "0");
        assert_eq!(line(&t, &format!("{sz}_bucket{{le=\"4194304\"}}")), "1");
        assert_eq!(line(&t, &format!("{sz}_bucket{{le=\"4294967296\"}}")), "1");
        assert_eq!(line(&t, &format!("{sz}_bucket{{le=\"17179869184\"}}")), "2");
        assert_eq!(
            line(&t, &format!("{sz}_count")),
            "2",
            "only committed sizes"
        );
        assert_eq!(line(&t, "arch_restore_duration_seconds_count"), "3");
        assert_eq!(line(&t, "arch_images{status=\"committed\"}"), "0");
        assert_eq!(line(&t, "arch_records_unreadable"), "3");
        // Every sample line belongs to a declared family.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(t.contains(&format!("# TYPE {family} ")), "{l}");
        }
    }
}
