//! The `start` action: containerd runs the binary with `start`, reads where
//! the new shim listens from its stdout, then talks to that socket.
//!
//! 1. decode what containerd sent (params.rs: BootstrapParams or legacy);
//! 2. check the runtime options (refused options fail the start);
//! 3. join ShimCgroup, so the daemon is born in it;
//! 4. spawn the daemon on the socket (in the socket dir containerd asked for);
//! 5. reply with the address and task API version (reply.rs, api_version.rs).

pub mod api_version;
pub mod params;
pub mod reply;

use std::io::{IsTerminal, Read, Write};

use arch_host::facts::cgroup_version;
use arch_host::paths::CGROUP_ROOT;
use thiserror::Error;

use crate::options::{self, OptionsError};
use crate::shim_cgroup::{self, ShimCgroupError};
use params::{LegacyEnv, Protocol};

/// containerd's own bound on what it reads and writes at start.
const MAX_INPUT: u64 = 10 << 20;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("start: {0}")]
    Params(String),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    ShimCgroup(#[from] ShimCgroupError),
    #[error("start: {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("start: {0}")]
    Shim(#[from] containerd_shim::Error),
}

fn read_stdin() -> Result<Vec<u8>, StartError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(Vec::new());
    }
    let mut input = Vec::new();
    stdin
        .lock()
        .take(MAX_INPUT)
        .read_to_end(&mut input)
        .map_err(|source| StartError::Io {
            context: "reading stdin",
            source,
        })?;
    Ok(input)
}

/// Runs the `start` action with the shim's command line `args`.
pub fn run(args: &[String]) -> Result<(), StartError> {
    let flags = containerd_shim::parse(args)?;
    let input = read_stdin()?;
    let req = params::decode(&input, &flags, &LegacyEnv::from_process())?;
    let opts = options::parse(req.options.as_ref(), &options::read_config_file)?;
    let version = match req.protocol {
        Protocol::Bootstrap => api_version::for_version(&req.opts.containerd_version)
            .unwrap_or(api_version::TASK_API_V3),
        Protocol::Legacy => api_version::for_binary_cached(
            &req.opts.publish_binary,
            &arch_host::paths::containerd_versions_dir(),
        ),
    };
    if let Some(cgroup) = &opts.shim_cgroup {
        let root = std::path::Path::new(CGROUP_ROOT);
        shim_cgroup::join(root, cgroup_version(root), cgroup, std::process::id())?;
    }
    // One shim per container: the grouping key is the container id.
    let grouping = req.opts.id.clone();
    let (_pid, address) = containerd_shim::spawn(req.opts, &grouping, Vec::new())?;
    containerd_shim::util::write_address(&address)?;
    let out = reply::encode(req.protocol, version, &address);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|_| stdout.flush())
        .map_err(|source| StartError::Io {
            context: "writing the reply",
            source,
        })
}
