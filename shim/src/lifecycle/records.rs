//! One record per checkpoint and restore attempt, for archctl and metrics.

use std::path::Path;
use std::time::Instant;

use arch_checkpoint::{ArchIdentity, DumpOutcome};
use arch_records::{Operation, Outcome, Record};

/// What started an operation (the record's `trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The stop signal (a checkpoint).
    Stop,
    /// containerd's Checkpoint RPC.
    Rpc,
    /// Create of a container with an image (a restore).
    Create,
    /// A tick of `ARCH_INTERVAL`.
    Periodic,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Stop => "stop",
            Trigger::Rpc => "rpc",
            Trigger::Create => "create",
            Trigger::Periodic => "periodic",
        }
    }
}

/// Appends a record; a failure to record is logged, never fatal to the
/// operation.
pub fn record(root: &Path, rec: Record) {
    if let Err(e) = arch_records::append(root, &arch_host::hostname(), &rec) {
        log::warn!("could not record {:?} of {}: {e}", rec.op, rec.container_id);
    }
}

/// The record of a checkpoint attempt.
pub fn checkpoint_record(
    trigger: Trigger,
    identity: &ArchIdentity,
    id: &str,
    started: Instant,
    outcome: &arch_checkpoint::Result<DumpOutcome>,
) -> Record {
    let (result, durations_ms, bytes, error) = match outcome {
        Ok(o) => (
            Outcome::Ok,
            o.durations_ms.clone(),
            o.image.manifest().total_size,
            None,
        ),
        Err(e) => (Outcome::Failed, Default::default(), 0, Some(e.to_string())),
    };
    Record {
        time: arch_host::now_secs(),
        op: Operation::Checkpoint,
        outcome: result,
        trigger: trigger.name().to_string(),
        namespace: identity.namespace.clone(),
        key: identity.key.clone(),
        container_id: id.to_string(),
        total_ms: started.elapsed().as_millis() as u64,
        durations_ms,
        bytes,
        error,
    }
}

/// The record of a periodic checkpoint that was not taken, and why.
pub fn skipped_record(identity: &ArchIdentity, id: &str, reason: &str) -> Record {
    Record {
        time: arch_host::now_secs(),
        op: Operation::Checkpoint,
        outcome: Outcome::Skipped,
        trigger: Trigger::Periodic.name().to_string(),
        namespace: identity.namespace.clone(),
        key: identity.key.clone(),
        container_id: id.to_string(),
        total_ms: 0,
        durations_ms: Default::default(),
        bytes: 0,
        error: Some(reason.to_string()),
    }
}

/// The record of a restore: restored (`Ok`) or fallen back to a fresh start.
pub fn restore_record(
    identity: &ArchIdentity,
    id: &str,
    outcome: Outcome,
    total_ms: u64,
    bytes: u64,
    error: Option<String>,
) -> Record {
    Record {
        time: arch_host::now_secs(),
        op: Operation::Restore,
        outcome,
        trigger: Trigger::Create.name().to_string(),
        namespace: identity.namespace.clone(),
        key: identity.key.clone(),
        container_id: id.to_string(),
        total_ms,
        durations_ms: [("restore".to_string(), total_ms)].into(),
        bytes,
        error,
    }
}
