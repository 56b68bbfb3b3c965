//! The steps of a dump, in order. Each is small and testable on its own.

use std::fs;
use std::path::Path;

use arch_host::paths::CGROUP_ROOT;
use arch_image::{unlink_parents, CONFIG, CRIU_DIR, DUMP_LOG, PREDUMP_LOG, ROOTFS_DIFF};

use crate::chain::{DumpContext, Step, FREEZE};
use crate::error::{io, CheckpointError, Result};
use crate::predump::predump_plan;
use crate::procfs::unsupported_reason;
use crate::sealed::write_image_file;

pub fn default_steps() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(Defaults),
        Box::new(Validate),
        Box::new(ProcessChecks),
        Box::new(PrepareDir),
        Box::new(PreDump),
        Box::new(Dump),
        Box::new(RootfsDiff),
        Box::new(Commit),
    ]
}

/// Host facts recorded in the manifest, for restore-time compatibility checks.
pub struct Defaults;
impl Step for Defaults {
    fn name(&self) -> &'static str {
        "defaults"
    }
    fn run(&self, ctx: &mut DumpContext) -> Result<()> {
        ctx.info.kernel = arch_host::kernel_release();
        ctx.info.arch = std::env::consts::ARCH.to_string();
        ctx.info.cgroup_version = arch_host::cgroup_version(Path::new(CGROUP_ROOT));
        ctx.info.criu_version =
            ctx.dumper
                .criu_version()
                .map_err(|source| CheckpointError::Runtime {
                    step: self.name(),
                    source,
                })?;
        Ok(())
    }
}

/// The container must have processes to dump.
pub struct Validate;
impl Step for Validate {
    fn name(&self) -> &'static str {
        "validate"
    }
    fn run(&self, ctx: &mut DumpContext) -> Result<()> {
        let pids = ctx
            .dumper
            .pids()
            .map_err(|source| CheckpointError::Runtime {
                step: self.name(),
                source,
            })?;
        if pids.is_empty() {
            return Err(CheckpointError::Step {
                step: self.name(),
                reason: "the container has no running process".into(),
            });
        }
        Ok(())
    }
}

/// Refuses, with the reason, what CRIU would fail on later and less clearly.
pub struct ProcessChecks;
impl Step for ProcessChecks {
    fn name(&self) -> &'static str {
        "process-checks"
    }
    fn run(&self, ctx: &mut DumpContext) -> Result<()> {
        let pids = ctx
            .dumper
            .pids()
            .map_err(|source| CheckpointError::Runtime {
                step: self.name(),
                source,
            })?;
        for pid in pids {
            // A process that exited meanwhile has nothing left to check.
            let Ok(targets) = ctx.procs.fd_targets(pid) else {
                continue;
            };
            if let Some(why) = targets.iter().find_map(|t| unsupported_reason(t)) {
                return Err(CheckpointError::Unsupported(format!(
                    "process {pid} holds {why}, which CRIU cannot checkpoint"
                )));
            }
        }
        Ok(())
    }
}

/// A private staging directory beside the final image, and the OCI spec.
pub struct PrepareDir;
impl Step for PrepareDir {
    fn name(&self) -> &'static str {
        "prepare"
    }
    fn run(&self, ctx: &mut DumpContext) -> Result<()> {
        let id = &ctx.req.identity;
        let staging = ctx.store.begin(&id.namespace, &id.key)?;
        let dir = staging.path().to_path_buf();
        ctx.staging = Some(staging);
        fs::create_dir(dir.join(CRIU_DIR)).map_err(io("creating criu/"))?;
        let spec = ctx.req.bundle.join(CONFIG);
        write_image_file(ctx, CONFIG, self.name(), |to| {
            fs::File::open(&spec)
                .and_then(|mut from| std::io::copy(&mut from, to))
                .map_err(io(format!("copying {}", spec.display())))
        })?;
        Ok(())
    }
}

/// `ARCH_PREDUMP` rounds of CRIU pre-dump while the container runs, each
/// into its own directory of the image, each the parent of the next.
pub struct PreDump;
impl Step for PreDump {
    fn name(&self) -> &'static str {
        "predump"
    }
    fn run(&self, ctx: &mut DumpContext) -> Result<()> {
        let (rounds, _) = predump_plan(ctx.req.predumps);
        if rounds.is_empty() {
            return Ok(());
        }
        let staging = ctx.staging_dir(self.name())?;
        for round in rounds {
            let dir = staging.join(&round.dir);
            fs::create_dir(&dir).map_err(io(format!("creating {}/", round.dir)))?;
            let started = std::time::Instant::now();
            ctx.dumper
                .pre_dump(&dir, round.parent.as_deref())
                .map_err(|source| CheckpointError::Dump {
                    source,
                    log: criu_log_errors(&dir.join(PREDUMP_LOG)),
                })?;
            log::info!(
                "{}: pre-dump {} in {} ms (container running)",
                ctx.req.container_id,
                round.dir,
                started.elapsed().as_millis()
            );
        }
        Ok(())
    }
}

/// CRIU, through the runtime.
pub struct Dump;
impl Step for Dump {
    fn name(&self) -> &'static str {
        "dump"
    }
    fn run(&self, ctx: &mut DumpContext) -> Result<()> {
        let dir = ctx.staging_dir(self.name())?.join(CRIU_DIR);
        if !ctx.req.paused {
            ctx.dumper
                .freeze()
                .map_err(|source| CheckpointError::Dump {
                    source,
                    log: Vec::new(),
                })?;
            ctx.frozen = true;
            ctx.frozen_at = Some(std::time::Instant::now());
        }
        let (_, parent) = predump_plan(ctx.req.predumps);
        let streamed =
            ctx.dumper
                .dump(&dir, parent.as_deref())
                .map_err(|source| CheckpointError::Dump {
                    source,
                    log: criu_log_errors(&dir.join(DUMP_LOG)),
                })?;
        if let Some(staging) = ctx.staging.as_mut() {
            staging.add_streamed(&streamed);
        }
        if parent.is_some() {
            // The image holds no symlink; the restorer links them again.
            let image = ctx.staging_dir(self.name())?;
            unlink_parents(&image).map_err(io("removing CRIU's parent links"))?;
        }
        Ok(())
    }
}

/// The last error lines of a CRIU log: what explains a failure.
pub fn criu_log_errors(log: &Path) -> Vec<String> {
    // CRIU logs this one on every run here; it is never the cause.
    const BENIGN: [&str; 1] = ["RLIMIT_NOFILE"];
    let text = fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<String> = text
        .lines()
        .filter(|l| l.contains("Error") || l.contains("error"))
        .filter(|l| !BENIGN.iter().any(|b| l.contains(b)))
        .map(|l| l.trim().to_string())
        .collect();
    errors[errors.len().saturating_sub(5)..].to_vec()
}

/// The container's filesystem changes (overlay upperdir) as a tar.
pub struct RootfsDiff;
impl Step for RootfsDiff {
    fn name(&self) -> &'static str {
        "rootfs"
    }
    fn run(&self, ctx: &mut DumpContext) -> Result<()> {
        let upper = ctx.req.upperdir.clone();
        let stats = write_image_file(ctx, ROOTFS_DIFF, self.name(), |file| match &upper {
            Some(upper) => Ok(Some(arch_rootfs::write_diff(upper, file)?)),
            // A rootfs without an upperdir has no recorded changes.
            None => tar_empty(file).map(|()| None),
        })?;
        if let Some(stats) = stats {
            log::info!("rootfs diff of {}: {stats:?}", ctx.req.container_id);
        }
        if ctx.req.leave_running && ctx.frozen {
            // Memory and files are taken: the container goes on.
            ctx.dumper.thaw().map_err(|source| CheckpointError::Dump {
                source,
                log: Vec::new(),
            })?;
            ctx.frozen = false;
            if let Some(at) = ctx.frozen_at.take() {
                let ms = at.elapsed().as_millis() as u64;
                ctx.info.durations_ms.insert(FREEZE.to_string(), ms);
            }
        }
        Ok(())
    }
}

fn tar_empty(file: &mut dyn std::io::Write) -> Result<()> {
    file.write_all(&[0u8; 1024])
        .map_err(io("writing empty rootfs-diff.tar"))
}

/// Seals and publishes the image.
pub struct Commit;
impl Step for Commit {
    fn name(&self) -> &'static str {
        "commit"
    }
    fn run(&self, ctx: &mut DumpContext) -> Result<()> {
        let staging = ctx.staging.take().ok_or(CheckpointError::Step {
            step: self.name(),
            reason: "nothing staged".into(),
        })?;
        let scope = ctx.req.container_id.clone();
        let mut observe = |point: &'static str| arch_faults::hit(&scope, point).map_err(Into::into);
        ctx.image = Some(staging.commit_observed(ctx.info.clone(), &mut observe)?);
        Ok(())
    }
}
