//! Pre-copy: `ARCH_PREDUMP=N` (or the `io.arch.predump` annotation; the
//! environment wins, as for the opt-in) asks for N CRIU pre-dumps while the
//! container runs before the final, frozen dump. Each pre-dump copies the
//! memory and resets the kernel's soft-dirty bits (`track_mem`); the final
//! dump then writes only the pages dirtied since the last one and points
//! at it for the rest (`parent_img`), so the freeze is shorter.
//!
//! That needs soft-dirty page tracking in the kernel. A container asking
//! for pre-dumps on a host without it fails Create (see
//! [`require_soft_dirty`]): the user learns it at `ctr run`, not when the
//! stop checkpoint, the one that matters, fails and the work is lost.

use std::collections::HashMap;
use std::path::PathBuf;

use arch_image::predump_dir;

use crate::error::{CheckpointError, Result};
use crate::policy::env_value;

pub const PREDUMP_ENV: &str = "ARCH_PREDUMP";
pub const PREDUMP_ANNOTATION: &str = "io.arch.predump";
/// More rounds than this gain nothing measurable and keep more images.
pub const MAX_PREDUMPS: u8 = 8;
/// The kernel feature pre-dumps need, as errors and docs name it.
pub const SOFT_DIRTY: &str = "soft-dirty memory tracking (CONFIG_MEM_SOFT_DIRTY)";

/// Parses an iteration count, 0..=[`MAX_PREDUMPS`].
pub fn parse_predump(value: &str, origin: &str) -> Result<u8> {
    value
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|n| *n <= MAX_PREDUMPS)
        .ok_or_else(|| {
            CheckpointError::Policy(format!(
                "invalid {origin}={value:?}: the number of pre-dumps must be a whole number from 0 to {MAX_PREDUMPS}"
            ))
        })
}

/// The pre-dump rounds a container asks for (0 without `ARCH_PREDUMP`);
/// an invalid value fails Create.
pub fn predump_iterations(env: &[String], annotations: &HashMap<String, String>) -> Result<u8> {
    match (
        env_value(env, PREDUMP_ENV),
        annotations.get(PREDUMP_ANNOTATION),
    ) {
        (Some(v), _) => parse_predump(v, PREDUMP_ENV),
        (None, Some(v)) => parse_predump(v, PREDUMP_ANNOTATION),
        (None, None) => Ok(0),
    }
}

/// One CRIU request of a pre-copy checkpoint: where its images go (relative
/// to the image directory) and its parent, relative to that directory, as
/// CRIU wants it (`../pre-N`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreDumpRound {
    pub dir: String,
    pub parent: Option<String>,
}

/// The pre-dumps of a checkpoint, each the parent of the next, and the
/// final dump's parent: the last of them.
pub fn predump_plan(iterations: u8) -> (Vec<PreDumpRound>, Option<String>) {
    let parent = |n: u8| (n > 0).then(|| format!("../{}", predump_dir(n)));
    let rounds = (1..=iterations)
        .map(|n| PreDumpRound {
            dir: predump_dir(n),
            parent: parent(n - 1),
        })
        .collect();
    (rounds, parent(iterations))
}

/// Why a [`SoftDirtyProbe`] could not tell. Clone: [`OnceProbe`] keeps it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("criu not found in PATH")]
    NoCriu,
    #[error(transparent)]
    Run(std::sync::Arc<arch_host::cmd::CmdError>),
    #[error("`criu check --feature mem_dirty_track` gave no answer: {0}")]
    NoAnswer(String),
}

/// Whether this host can track dirty pages (the kernel's soft-dirty bits).
pub trait SoftDirtyProbe {
    /// Ok(true/false) as the probe found; Err if it could not ask.
    fn soft_dirty(&self) -> std::result::Result<bool, ProbeError>;
}

/// Asks CRIU: `criu check --feature mem_dirty_track` exits 0 only where
/// the kernel keeps soft-dirty bits.
pub struct CriuFeatureCheck {
    pub criu: PathBuf,
}

impl CriuFeatureCheck {
    /// The `criu` on PATH (or in the sbin directories).
    pub fn from_path() -> std::result::Result<Self, ProbeError> {
        arch_host::cmd::find_in_path("criu")
            .map(|criu| CriuFeatureCheck { criu })
            .ok_or(ProbeError::NoCriu)
    }
}

impl SoftDirtyProbe for CriuFeatureCheck {
    fn soft_dirty(&self) -> std::result::Result<bool, ProbeError> {
        let mut cmd = std::process::Command::new(&self.criu);
        cmd.args(["check", "--feature", "mem_dirty_track"]);
        let ran = arch_host::cmd::run(cmd, Some(arch_host::cmd::CMD_TIMEOUT))
            .map_err(|e| ProbeError::Run(e.into()))?;
        // CRIU says "mem_dirty_track is supported", or "Dirty tracking is
        // OFF" and fails.
        if ran.succeeded() && !ran.output.contains("OFF") {
            Ok(true)
        } else if ran.output.contains("Dirty tracking is OFF") {
            Ok(false)
        } else {
            Err(ProbeError::NoAnswer(ran.output.trim().to_string()))
        }
    }
}

/// The `criu` found on PATH when asked (a shim without CRIU answers Err).
pub struct CriuInPath;

impl SoftDirtyProbe for CriuInPath {
    fn soft_dirty(&self) -> std::result::Result<bool, ProbeError> {
        CriuFeatureCheck::from_path()?.soft_dirty()
    }
}

/// Asks `P` once and keeps the answer: a kernel does not gain or lose
/// soft-dirty tracking while a shim runs.
pub struct OnceProbe<P> {
    inner: P,
    answer: std::sync::OnceLock<std::result::Result<bool, ProbeError>>,
}

impl<P: SoftDirtyProbe> OnceProbe<P> {
    pub fn new(inner: P) -> Self {
        OnceProbe {
            inner,
            answer: std::sync::OnceLock::new(),
        }
    }
}

impl<P: SoftDirtyProbe> SoftDirtyProbe for OnceProbe<P> {
    fn soft_dirty(&self) -> std::result::Result<bool, ProbeError> {
        self.answer.get_or_init(|| self.inner.soft_dirty()).clone()
    }
}

/// Pre-dumps need soft-dirty tracking: Ok for 0 rounds or a host that has
/// it, else the error that names the missing kernel feature.
pub fn require_soft_dirty(iterations: u8, probe: &dyn SoftDirtyProbe) -> Result<()> {
    if iterations == 0 {
        return Ok(());
    }
    match probe.soft_dirty() {
        Ok(true) => Ok(()),
        Ok(false) => Err(CheckpointError::Policy(format!(
            "{PREDUMP_ENV}={iterations} needs {SOFT_DIRTY}, which this host's kernel does not have; \
             unset {PREDUMP_ENV} (full dumps only) or run on a kernel built with CONFIG_MEM_SOFT_DIRTY=y"
        ))),
        Err(e) => Err(CheckpointError::Policy(format!(
            "{PREDUMP_ENV}={iterations} needs {SOFT_DIRTY}, and probing for it failed: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iterations(env: &[&str], ann: &[(&str, &str)]) -> Result<u8> {
        let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        let ann = ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        predump_iterations(&env, &ann)
    }

    #[test]
    fn counts_from_env_or_annotation_env_wins() {
        assert_eq!(iterations(&[], &[]).unwrap(), 0);
        assert_eq!(iterations(&["ARCH_PREDUMP=2"], &[]).unwrap(), 2);
        assert_eq!(iterations(&[], &[("io.arch.predump", "8")]).unwrap(), 8);
        assert_eq!(
            iterations(&["ARCH_PREDUMP=0"], &[("io.arch.predump", "3")]).unwrap(),
            0
        );
    }

    #[test]
    fn invalid_counts_name_the_origin_and_range() {
        for bad in ["9", "-1", "two", "", "2s", "256"] {
            let e = iterations(&[&format!("ARCH_PREDUMP={bad}")], &[])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("ARCH_PREDUMP") && e.contains("0 to 8"),
                "{bad}: {e}"
            );
        }
        let e = iterations(&[], &[("io.arch.predump", "x")]).unwrap_err();
        assert!(e.to_string().contains("io.arch.predump"), "{e}");
    }

    #[test]
    fn plan_chains_each_round_to_the_previous() {
        assert_eq!(predump_plan(0), (vec![], None));
        let (rounds, last) = predump_plan(3);
        let dirs: Vec<_> = rounds.iter().map(|r| r.dir.as_str()).collect();
        assert_eq!(dirs, ["pre-1", "pre-2", "pre-3"]);
        let parents: Vec<_> = rounds.iter().map(|r| r.parent.as_deref()).collect();
        assert_eq!(parents, [None, Some("../pre-1"), Some("../pre-2")]);
        assert_eq!(last.as_deref(), Some("../pre-3"));
    }

    struct Fixed(std::result::Result<bool, ProbeError>);
    impl SoftDirtyProbe for Fixed {
        fn soft_dirty(&self) -> std::result::Result<bool, ProbeError> {
            self.0.clone()
        }
    }

    #[test]
    fn missing_soft_dirty_is_named() {
        assert!(require_soft_dirty(0, &Fixed(Ok(false))).is_ok());
        assert!(require_soft_dirty(2, &Fixed(Ok(true))).is_ok());
        let e = require_soft_dirty(2, &Fixed(Ok(false)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("soft-dirty memory tracking (CONFIG_MEM_SOFT_DIRTY)")
                && e.contains("ARCH_PREDUMP=2"),
            "{e}"
        );
        let e = require_soft_dirty(1, &Fixed(Err(ProbeError::NoCriu)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CONFIG_MEM_SOFT_DIRTY") && e.contains("criu not found"),
            "{e}"
        );
    }

    #[test]
    fn the_probe_runs_once() {
        struct Counting(std::sync::atomic::AtomicU32);
        impl SoftDirtyProbe for Counting {
            fn soft_dirty(&self) -> std::result::Result<bool, ProbeError> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(false)
            }
        }
        let p = OnceProbe::new(Counting(0.into()));
        assert!(require_soft_dirty(2, &p).is_err());
        assert!(require_soft_dirty(1, &p).is_err());
        assert!(require_soft_dirty(0, &p).is_ok());
        assert_eq!(p.inner.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn criu_output_is_read_as_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let fake = |script: &str| {
            let p = dir.path().join(format!("criu-{}", script.len()));
            std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            CriuFeatureCheck { criu: p }
        };
        assert_eq!(fake("exit 0").soft_dirty().ok(), Some(true));
        assert_eq!(
            fake("echo 'mem_dirty_track is supported'")
                .soft_dirty()
                .ok(),
            Some(true)
        );
        let off =
            fake("echo 'Warn: Dirty tracking is OFF. Memory snapshot will not work.' >&2; exit 1");
        assert_eq!(off.soft_dirty().ok(), Some(false));
        assert!(fake("echo 'permission denied' >&2; exit 1")
            .soft_dirty()
            .is_err());
    }
}
