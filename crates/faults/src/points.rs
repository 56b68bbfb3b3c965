//! Every fault point's name, defined once: the code that passes a point
//! builds its name here, and the reliability sweep reads the lists.

/// The dump chain's steps, in order (crates/checkpoint checks that its
/// chain is exactly this).
pub const DUMP_STEPS: [&str; 8] = [
    "defaults",
    "validate",
    "process-checks",
    "prepare",
    "predump",
    "dump",
    "rootfs",
    "commit",
];

/// CRIU's notify scripts during a dump, in the order CRIU calls them
/// (`network-lock` only when CRIU dumps a network namespace: a container's
/// own is left out when nothing in it could change it).
pub const CRIU_DUMP_NOTIFIES: [&str; 2] = ["network-lock", "post-dump"];

/// CRIU's notify scripts during a restore, in the order CRIU calls them.
pub const CRIU_RESTORE_NOTIFIES: [&str; 4] = [
    "pre-restore",
    "setup-namespaces",
    "post-restore",
    "pre-resume",
];

/// The image is sealed (hashed, manifest written) but not yet visible.
/// A streamed dump's streamer, as it creates each stored file (CRIU
/// running, the tasks seized): "the streamer fails mid-dump".
pub const STREAM_CAPTURE: &str = "stream:capture";

pub const COMMIT_SEALED: &str = "commit:sealed";
/// A previous image was moved aside; the new one is not yet in place
/// (only when an image is replaced).
pub const COMMIT_REPLACING: &str = "commit:replacing";
/// The image is visible under its key; a replaced one is not yet removed.
pub const COMMIT_PUBLISHED: &str = "commit:published";

/// Restore staging at Create: before anything is read.
pub const RESTORE_STAGING: &str = "restore:staging";
/// The verified copy was made in memory (only when it goes there). Not in
/// [`restore`]: an error here is retried on disk, not a fallback; the e2e
/// suite's restore_copy.rs tests it.
pub const RESTORE_COPY_MEMORY: &str = "restore:copy-memory";
/// The image is validated and compatible; the rootfs is untouched.
pub const RESTORE_VALIDATED: &str = "restore:validated";
/// The rootfs diff is applied.
pub const RESTORE_ROOTFS_APPLIED: &str = "restore:rootfs-applied";
/// CRIU restored the tree; the shim is about to adopt it.
pub const RESTORE_ADOPT: &str = "restore:adopt";

pub fn before(step: &str) -> String {
    format!("before:{step}")
}

pub fn after(step: &str) -> String {
    format!("after:{step}")
}

pub fn criu(script: &str) -> String {
    format!("criu:{script}")
}

/// The points a stop-checkpoint passes, in order, when nothing replaces
/// an earlier image: before/after each step (none after the commit, which
/// nothing may undo), CRIU's notifies inside the dump step, the commit's
/// phases inside the commit step.
/// The points of a checkpoint whose dump runs over CRIU's RPC (unstreamed:
/// `stream = off`, a CRIU without `--stream`, or a dump after pre-dumps).
pub fn checkpoint() -> Vec<String> {
    checkpoint_with(false)
}

/// The points of a streamed checkpoint: CRIU's CLI has no notify channel,
/// so the dump passes the streamer's point instead of CRIU's notifies.
pub fn checkpoint_streamed() -> Vec<String> {
    checkpoint_with(true)
}

fn checkpoint_with(streamed: bool) -> Vec<String> {
    let mut out = Vec::new();
    for step in DUMP_STEPS {
        out.push(before(step));
        match step {
            "dump" if streamed => out.push(STREAM_CAPTURE.to_string()),
            "dump" => out.extend(CRIU_DUMP_NOTIFIES.iter().map(|s| criu(s))),
            "commit" => {
                out.push(COMMIT_SEALED.to_string());
                out.push(COMMIT_PUBLISHED.to_string());
            }
            _ => {}
        }
        if step != "commit" {
            out.push(after(step));
        }
    }
    out
}

/// The points a restore passes, in order: staging at Create, CRIU at Start.
pub fn restore() -> Vec<String> {
    let mut out = vec![
        RESTORE_STAGING.to_string(),
        RESTORE_VALIDATED.to_string(),
        RESTORE_ROOTFS_APPLIED.to_string(),
    ];
    out.extend(CRIU_RESTORE_NOTIFIES.iter().map(|s| criu(s)));
    out.push(RESTORE_ADOPT.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_list_brackets_each_step() {
        let points = checkpoint();
        assert_eq!(points.first().map(String::as_str), Some("before:defaults"));
        assert_eq!(points.last().map(String::as_str), Some(COMMIT_PUBLISHED));
        let dump = points.iter().position(|p| p == "before:dump").unwrap();
        assert_eq!(points[dump + 1], "criu:network-lock");
        assert_eq!(points.len(), 2 * DUMP_STEPS.len() - 1 + 2 + 2);
        let streamed = checkpoint_streamed();
        assert_eq!(streamed[dump + 1], STREAM_CAPTURE);
        assert!(!streamed.iter().any(|p| p.starts_with("criu:")));
        assert_eq!(streamed.len(), points.len() - 1);
    }
}
