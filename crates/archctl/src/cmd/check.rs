//! `archctl check`: one line per host requirement — `ok`, `missing`
//! (required, exit 1) or `warn` (degraded) — with what to do about it.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use arch_checkpoint::ArchConfig;
pub(crate) use arch_host::cmd::{find_in_path, run_cmd};

use crate::error::Result;

const DEFAULT_CONTAINERD: &str = "/run/containerd/containerd.sock";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Missing,
    Warn,
}

/// Print one check line: `ok      criu: …`.
pub fn line(level: Level, item: &str, detail: &str) -> String {
    let tag = match level {
        Level::Ok => "ok",
        Level::Missing => "missing",
        Level::Warn => "warn",
    };
    format!("{tag:<8}{item}: {detail}")
}

pub fn run(root: Option<&Path>, address: Option<&Path>) -> Result<i32> {
    let mut missing = false;
    let mut report = |level: Level, item: &str, detail: String| {
        missing |= level == Level::Missing;
        println!("{}", line(level, item, &detail));
    };
    match find_in_path("criu") {
        None => {
            report(
                Level::Missing,
                "criu",
                "not found in PATH; install CRIU >= 3.15 (e.g. apt install criu)".into(),
            );
            report(Level::Warn, "inet sockets", "skipped: no criu".into());
            report(Level::Missing, "criu check", "skipped: no criu".into());
            report(Level::Warn, "dirty tracking", "skipped: no criu".into());
        }
        Some(criu) => {
            let (lvl, detail) = match run_cmd(&criu, &["--version"]) {
                Ok(ran) if ran.succeeded() => (
                    Level::Ok,
                    format!("{} ({})", criu.display(), version_of(&ran.output)),
                ),
                ran => (
                    Level::Missing,
                    format!("`criu --version` failed: {}", what_failed(ran)),
                ),
            };
            report(lvl, "criu", detail);
            let (lvl, detail) = match criu_version() {
                Some(v) => inet_sockets(&v, &arch_host::kernel_release()),
                None => (Level::Warn, "skipped: CRIU's version is unknown".into()),
            };
            report(lvl, "inet sockets", detail);
            let (lvl, detail) = match run_cmd(&criu, &["check"]) {
                Ok(ran) if ran.succeeded() => (Level::Ok, "`criu check` passed".into()),
                ran => (
                    Level::Missing,
                    format!("`criu check` failed: {}; run as root, check kernel config (CONFIG_CHECKPOINT_RESTORE)", what_failed(ran)),
                ),
            };
            report(lvl, "criu check", detail);
            let probe = arch_checkpoint::CriuFeatureCheck { criu: criu.clone() };
            let (lvl, detail) = match arch_checkpoint::SoftDirtyProbe::soft_dirty(&probe) {
                Ok(true) => (Level::Ok, "soft-dirty memory tracking available".into()),
                Ok(false) => (
                    Level::Warn,
                    format!(
                        "no {} in this kernel: ARCH_PREDUMP fails Create; full dumps only",
                        arch_checkpoint::SOFT_DIRTY
                    ),
                ),
                Err(e) => (Level::Warn, format!("could not probe: {e}")),
            };
            report(lvl, "dirty tracking", detail);
        }
    }
    report(
        Level::Ok,
        "cgroup",
        format!(
            "{} ({})",
            cgroup_version(Path::new(arch_host::paths::CGROUP_ROOT)),
            "/sys/fs/cgroup"
        ),
    );
    let addr = address.map(Path::to_path_buf).unwrap_or_else(|| {
        std::env::var_os("CONTAINERD_ADDRESS")
            .map(PathBuf::from)
            .unwrap_or_else(|| DEFAULT_CONTAINERD.into())
    });
    let addr = PathBuf::from(addr.to_string_lossy().trim_start_matches("unix://"));
    match UnixStream::connect(&addr) {
        Ok(_) => report(
            Level::Ok,
            "containerd",
            format!("{} reachable", addr.display()),
        ),
        Err(e) => report(
            Level::Missing,
            "containerd",
            format!(
                "{}: {e}; start containerd or pass --address",
                addr.display()
            ),
        ),
    }
    let config = ArchConfig::from_process_env();
    let cfg_root = match &config {
        Ok(c) => {
            let mode = match c.mode {
                arch_checkpoint::Mode::Basic => "basic",
                arch_checkpoint::Mode::NetworkFs => "network-fs",
            };
            report(
                Level::Ok,
                "config",
                format!(
                    "valid (checkpoint_root {}, mode {mode})",
                    c.checkpoint_root.display()
                ),
            );
            report(Level::Ok, "images", image_path(&c.stream));
            report(Level::Ok, "restore copy", restore_copy(c.restore_copy));
            let (lvl, detail) = encryption_state(c.encryption_key_file.as_deref());
            report(lvl, "encryption", detail);
            Some(c.checkpoint_root.clone())
        }
        Err(e) => {
            report(
                Level::Missing,
                "config",
                format!("{e}; fix the file named by ARCH_CONFIG or the ARCH_* environment"),
            );
            None
        }
    };
    if let Some(root) = root.map(Path::to_path_buf).or(cfg_root) {
        let (lvl, detail) = root_state(&root);
        report(lvl, "checkpoint root", detail);
    }
    Ok(i32::from(missing))
}

/// Whether checkpoints are encrypted, and the key's id when it loads
/// (the key itself is never shown).
fn encryption_state(path: Option<&Path>) -> (Level, String) {
    match arch_image::HostKey::load(path) {
        arch_image::HostKey::None => (Level::Ok, "off (no encryption_key_file)".into()),
        arch_image::HostKey::Loaded(k) => (
            Level::Ok,
            format!(
                "on: {} loads, key id {} ({})",
                path.map(|p| p.display().to_string()).unwrap_or_default(),
                k.id(),
                arch_imgcrypt::CIPHER_NAME
            ),
        ),
        arch_image::HostKey::Unloadable(why) => (
            Level::Missing,
            format!("{why}: checkpoints fail and encrypted images do not restore until it loads"),
        ),
    }
}

/// Which dump path the shims take: streamed (and how stored) or not (why).
fn image_path(s: &arch_checkpoint::StreamConfig) -> String {
    let can = arch_host::cmd::criu_can_stream();
    if !s.streams(can) {
        let why = match s.mode {
            arch_checkpoint::StreamMode::Off => "stream = off",
            _ => "this CRIU cannot stream (--stream)",
        };
        return format!("unstreamed: CRIU writes image files, hashed at commit ({why})");
    }
    let stored = match s.compression {
        arch_checkpoint::Compression::None => "stored as written".to_string(),
        arch_checkpoint::Compression::Zstd => format!(
            "zstd level {}, {} thread(s) per file",
            s.zstd_level,
            s.zstd_threads.max(1)
        ),
    };
    let warn = if can {
        ""
    } else {
        "; this CRIU cannot stream: dumps will fail"
    };
    format!("streamed through the shim (criu dump --stream), {stored}; dumps after pre-dumps are unstreamed{warn}")
}

/// Where restores write their verified copy of an image.
fn restore_copy(setting: arch_checkpoint::RestoreCopy) -> String {
    use arch_host::paths::{RESTORE_COPY_DISK, RESTORE_COPY_MEMORY};
    match setting {
        arch_checkpoint::RestoreCopy::Auto => format!(
            "in memory ({RESTORE_COPY_MEMORY}) when the host and the shim's cgroup have room for it twice, else on disk ({RESTORE_COPY_DISK})"
        ),
        arch_checkpoint::RestoreCopy::Disk => {
            format!("on disk ({RESTORE_COPY_DISK}): restore_copy = disk")
        }
    }
}

/// v2 (unified), hybrid, or v1 from the cgroup mount layout.
pub fn cgroup_version(base: &Path) -> &'static str {
    arch_host::cgroup_version(base).name()
}

/// The root must be a directory; 0700 and root-owned is expected.
pub fn root_state(root: &Path) -> (Level, String) {
    let shown = root.display();
    match std::fs::metadata(root) {
        Err(_) => (
            Level::Missing,
            format!("{shown} does not exist; create it: install -d -m 0700 -o root {shown}"),
        ),
        Ok(m) if !m.is_dir() => (Level::Missing, format!("{shown} is not a directory")),
        Ok(m) => {
            let mode = m.mode() & 0o7777;
            if mode != 0o700 || m.uid() != 0 {
                (
                    Level::Warn,
                    format!("{shown} has mode {mode:04o} owner uid {}; images hold process memory: chown root {shown} && chmod 0700 {shown}", m.uid()),
                )
            } else {
                (Level::Ok, format!("{shown} (0700, root)"))
            }
        }
    }
}

/// The installed CRIU's version ("4.1.1"), from `criu --version`.
pub(crate) fn criu_version() -> Option<String> {
    let ran = run_cmd(&find_in_path("criu")?, &["--version"]).ok()?;
    ran.succeeded()
        .then(|| {
            ran.output
                .lines()
                .find_map(|l| l.trim().strip_prefix("Version:"))
                .map(|v| v.trim().to_string())
        })
        .flatten()
}

/// Whether CRIU `criu` can dump TCP and UDP sockets on kernel `kernel`:
/// 6.16 refuses SO_PASSCRED/SO_PASSSEC on them, which CRIU before 4.2
/// reads for every socket, failing the whole dump of any container with
/// one open (a server's listener among them).
fn inet_sockets(criu: &str, kernel: &str) -> (Level, String) {
    let at_least = |v: &str, want: (u32, u32)| {
        let mut n = v.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        (n.next().unwrap_or(0), n.next().unwrap_or(0)) >= want
    };
    if at_least(kernel, (6, 16)) && !at_least(criu, (4, 2)) {
        let detail = format!(
            "CRIU {criu} cannot dump a TCP or UDP socket on kernel {kernel} (6.16 refuses \
             SO_PASSCRED on them): a container with one open stops without a checkpoint; \
             install CRIU >= 4.2"
        );
        return (Level::Warn, detail);
    }
    (
        Level::Ok,
        "CRIU can dump TCP and UDP sockets on this kernel".into(),
    )
}

fn version_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(|v| format!("version {}", v.trim()))
        .unwrap_or_else(|| last_line(out))
}

/// A failed run's last line of output, or why it did not run.
fn what_failed(ran: std::result::Result<arch_host::cmd::Ran, arch_host::cmd::CmdError>) -> String {
    match ran {
        Ok(ran) => last_line(&ran.output),
        Err(e) => e.to_string(),
    }
}

fn last_line(out: &str) -> String {
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn cgroup_layouts() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_version(d.path()), "v1");
        std::fs::create_dir(d.path().join("unified")).unwrap();
        assert_eq!(cgroup_version(d.path()), "hybrid");
        std::fs::write(d.path().join("cgroup.controllers"), "cpu").unwrap();
        assert_eq!(cgroup_version(d.path()), "v2");
    }

    #[test]
    fn root_states_and_line_format() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(root_state(&d.path().join("nope")).0, Level::Missing);
        let f = d.path().join("file");
        std::fs::write(&f, "").unwrap();
        assert_eq!(root_state(&f).0, Level::Missing);
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let uid_root = std::fs::metadata(d.path()).unwrap().uid() == 0;
        assert_eq!(root_state(d.path()).0, Level::Warn);
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let expect = if uid_root { Level::Ok } else { Level::Warn };
        assert_eq!(root_state(d.path()).0, expect);
        assert_eq!(line(Level::Warn, "x", "y"), "warn    x: y");
        assert_eq!(version_of("Version: 4.1.1\n"), "version 4.1.1");
    }

    #[test]
    fn inet_sockets_need_criu_4_2_from_kernel_6_16() {
        assert_eq!(inet_sockets("4.1.1", "6.18.44").0, Level::Warn);
        assert_eq!(inet_sockets("3.17", "6.16.0-rc1").0, Level::Warn);
        assert_eq!(inet_sockets("4.2.1", "6.18.44").0, Level::Ok);
        assert_eq!(inet_sockets("4.3", "7.0.1").0, Level::Ok);
        assert_eq!(inet_sockets("4.1.1", "6.15.9").0, Level::Ok);
        assert_eq!(inet_sockets("3.17.1", "6.1.0-28-amd64").0, Level::Ok);
    }
}
