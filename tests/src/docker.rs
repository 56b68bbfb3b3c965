//! The `docker` CLI against the private dockerd that hack/docker-test.sh
//! runs with docs/examples/daemon.json (the ARCH runtime as the default).
//! Like the ctr helpers, nothing here skips: without the rig the tests fail.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cli_deadline, finish_within, wait_until, Run};

/// The test image, as `docker load` named it.
pub const IMAGE: &str = crate::IMAGE;
/// The containerd namespace dockerd uses: the first half of image names.
pub const NAMESPACE: &str = "moby";

/// A `docker` bound to the test daemon.
#[derive(Clone, Debug)]
pub struct Docker {
    pub host: String,
}

pub fn docker() -> Docker {
    let host = std::env::var("ARCH_E2E_DOCKER_HOST").unwrap_or_else(|_| {
        panic!("ARCH_E2E_DOCKER_HOST is not set: run the Docker test with `make test` (hack/test.sh), which starts dockerd")
    });
    let socket = host.strip_prefix("unix://").unwrap_or(&host);
    assert!(
        Path::new(socket).exists(),
        "dockerd socket {socket} does not exist"
    );
    Docker { host }
}

impl Docker {
    /// Runs `docker args…` with a deadline.
    pub fn run(&self, args: &[&str]) -> Run {
        let child = Command::new("docker")
            .args(["--host", &self.host])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn docker (hack/install-docker.sh installs it)");
        finish_within(child, cli_deadline(), &format!("docker {args:?}"))
    }

    /// Runs `docker args…`, fails the test unless it exits 0, and returns
    /// its trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "docker {args:?}: {}{}", r.stdout, r.stderr);
        r.stdout.trim().to_string()
    }

    /// `docker run -d --name NAME [--env E]… IMAGE sh -c CMD`; the guard
    /// removes the container. No network: the rig leaves the host's alone.
    pub fn run_detached(&self, name: &str, env: &[String], cmd: &str) -> DockerContainer {
        self.run_detached_on("none", name, env, cmd)
    }

    /// [`Docker::run_detached`] on docker network `network`.
    pub fn run_detached_on(
        &self,
        network: &str,
        name: &str,
        env: &[String],
        cmd: &str,
    ) -> DockerContainer {
        self.run_detached_with(&["--network", network], name, env, cmd)
    }

    /// [`Docker::run_detached`] with extra `docker run` flags.
    pub fn run_detached_with(
        &self,
        flags: &[&str],
        name: &str,
        env: &[String],
        cmd: &str,
    ) -> DockerContainer {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(flags);
        args.extend(["--name", name]);
        for e in env {
            args.extend(["--env", e.as_str()]);
        }
        args.extend([IMAGE, "sh", "-c", cmd]);
        self.ok(&args);
        DockerContainer {
            docker: self.clone(),
            name: name.to_string(),
        }
    }

    /// `docker exec NAME cmd…`.
    pub fn exec(&self, name: &str, cmd: &[&str]) -> Run {
        let mut args = vec!["exec", name];
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// A file in the container; a read that lands between the workload's
    /// truncate and write is empty and retried.
    pub fn read(&self, name: &str, path: &str) -> String {
        let mut value = String::new();
        wait_until(Duration::from_secs(5), || {
            value = self.exec(name, &["cat", path]).stdout.trim().to_string();
            !value.is_empty()
        });
        value
    }

    /// `docker inspect --format FORMAT NAME`.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
    }

    /// Runs `docker args…` and returns how long it took.
    pub fn timed(&self, args: &[&str]) -> Duration {
        let started = Instant::now();
        self.ok(args);
        started.elapsed()
    }
}

/// A container force-removed when dropped (SIGKILL: no checkpoint).
pub struct DockerContainer {
    pub docker: Docker,
    pub name: String,
}

impl Drop for DockerContainer {
    fn drop(&mut self) {
        let _ = self.docker.run(&["rm", "--force", &self.name]);
    }
}

/// A user-defined docker network, removed when dropped (declare it before
/// the containers on it, so that they go first).
pub struct DockerNetwork {
    docker: Docker,
    pub name: String,
}

impl Docker {
    /// `docker network create --driver bridge NAME`: a bridge of its own
    /// (docker picks the subnet and names the host's bridge device).
    pub fn bridge_network(&self, name: &str) -> DockerNetwork {
        self.ok(&["network", "create", "--driver", "bridge", name]);
        DockerNetwork {
            docker: self.clone(),
            name: name.to_string(),
        }
    }
}

impl Drop for DockerNetwork {
    fn drop(&mut self) {
        let _ = self.docker.run(&["network", "rm", &self.name]);
    }
}
