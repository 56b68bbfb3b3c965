//! containerd-shim-arch-v1: the ARCH runtime (io.containerd.arch.v1).

mod any;
mod console;
mod container;
mod delete_log;
mod error;
mod events;
mod exit_hold;
mod exits;
mod lifecycle;
mod mountinfo;
mod mounts;
mod options;
mod process;
mod runtime_impl;
mod seams;
mod serve;
mod service;
mod shim;
mod shim_cgroup;
mod spawning;
mod start;
mod stats;
mod stdin_feed;
mod stdio;
mod task;
mod timeouts;

use std::io::Write;

use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};

pub const RUNTIME_ID: &str = "io.containerd.arch.v1";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const REVISION: &str = match option_env!("ARCH_GIT_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// What the shim was asked to do, from the flags containerd passes.
#[derive(Debug, PartialEq)]
enum Mode {
    Version,
    Info,
    /// `start`: spawn the daemon and tell containerd where it listens.
    Start,
    /// `delete`: clean up after a dead shim.
    Delete,
    Serve,
}

fn mode(args: &[String]) -> Mode {
    // Flags that take a value (Go flag syntax: `-name value` or `-name=value`).
    const VALUED: [&str; 6] = [
        "namespace",
        "id",
        "socket",
        "bundle",
        "address",
        "publish-binary",
    ];
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let Some(flag) = arg.strip_prefix('-') else {
            return match arg.as_str() {
                "start" => Mode::Start,
                "delete" => Mode::Delete,
                _ => Mode::Serve,
            };
        };
        let name = flag.trim_start_matches('-');
        match name {
            "v" | "version" => return Mode::Version,
            "info" => return Mode::Info,
            n if VALUED.contains(&n) => {
                iter.next();
            }
            _ => {}
        }
    }
    Mode::Serve
}

fn print_info() -> std::io::Result<()> {
    let info = RuntimeInfo {
        name: RUNTIME_ID.to_string(),
        version: Some(RuntimeVersion {
            version: VERSION.to_string(),
            revision: REVISION.to_string(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    let bytes = info.write_to_bytes().map_err(std::io::Error::other)?;
    std::io::stdout().write_all(&bytes)
}

/// A shim runs ~20 mostly idle threads; glibc would give many of them a
/// malloc arena of their own. Two arenas serve them with far less memory.
fn limit_malloc_arenas() {
    const M_ARENA_MAX: libc::c_int = -8;
    // SAFETY: mallopt only tunes the allocator; called before any thread.
    unsafe { libc::mallopt(M_ARENA_MAX, 2) };
}

fn main() {
    // Run as CRIU's launcher, this becomes CRIU; run as a spawn helper, it
    // creates one container or process and exits (see arch-runtime).
    arch_runtime::criu_launcher_main();
    arch_runtime::spawn_helper_main();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match mode(&args) {
        Mode::Version => {
            println!("containerd-shim-arch-v1:\n  Runtime: {RUNTIME_ID}\n  Version: {VERSION}\n  Revision: {REVISION}");
            if arch_faults::ENABLED {
                // Test builds only: hack/test.sh checks for this line.
                println!("  Features: fault-injection");
            }
        }
        Mode::Info => {
            if let Err(e) = print_info() {
                eprintln!("{RUNTIME_ID}: {e}");
                std::process::exit(1);
            }
        }
        Mode::Start => {
            if let Err(e) = start::run(&args) {
                eprintln!("{RUNTIME_ID}: {e}");
                std::process::exit(1);
            }
        }
        Mode::Delete => {
            delete_log::init();
            containerd_shim::run::<shim::ArchShim>(RUNTIME_ID, None)
        }
        Mode::Serve => {
            limit_malloc_arenas();
            if let Err(e) = serve::run(RUNTIME_ID, &args) {
                eprintln!("{RUNTIME_ID}: {e:#}");
                std::process::exit(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(args: &[&str]) -> Mode {
        mode(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn modes_from_containerd_flags() {
        assert_eq!(m(&["-v"]), Mode::Version);
        assert_eq!(m(&["-info"]), Mode::Info);
        assert_eq!(
            m(&[
                "-namespace",
                "default",
                "-id",
                "c1",
                "-address",
                "/run/c.sock",
                "start"
            ]),
            Mode::Start
        );
        assert_eq!(
            m(&["-namespace", "default", "-id", "c1", "delete"]),
            Mode::Delete
        );
        assert_eq!(
            m(&["-namespace", "default", "-id", "c1", "-socket", "unix:///s"]),
            Mode::Serve
        );
        assert_eq!(
            m(&["-namespace=default", "-id=c1", "-debug", "delete"]),
            Mode::Delete
        );
        assert_eq!(
            m(&["-namespace", "start", "-id", "c1"]),
            Mode::Serve,
            "a flag value is not an action"
        );
    }
}
