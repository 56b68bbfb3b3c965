//! A blocking CRI (Kubernetes runtime API v1) client, making the calls the
//! kubelet makes for a pod, against the CRI-enabled private containerd that
//! `hack/test.sh` starts (`ARCH_TEST_CRI=1 hack/containerd-test.sh`).
//!
//! Pods use the host network (no CNI here) and otherwise the kubelet's
//! defaults: a pod-wide IPC namespace, a PID namespace per container.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use cri::{ContainerState, ContainerStatus};

/// The documented RuntimeClass, whose `handler` the tests pass as
/// RunPodSandbox's `runtime_handler`, as the kubelet does for
/// `runtimeClassName: arch`.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

/// The `handler:` of docs/examples/runtimeclass.yaml.
pub fn runtime_class_handler() -> String {
    let path = examples_dir().join("runtimeclass.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("handler:"))
        .map(|h| h.split('#').next().unwrap_or("").trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| panic!("{} has no handler", path.display()))
}

pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// CRI errors are test failures: every call panics with the RPC's status.
fn ok<T>(what: &str, r: Result<tonic::Response<T>, tonic::Status>) -> T {
    match r {
        Ok(resp) => resp.into_inner(),
        Err(s) => panic!("CRI {what}: {:?}: {}", s.code(), s.message()),
    }
}

/// Connects to containerd's CRI service on `ARCH_CRI_ADDRESS`.
pub fn cri() -> Cri {
    let address = std::env::var("ARCH_CRI_ADDRESS").unwrap_or_else(|_| {
        panic!("ARCH_CRI_ADDRESS is not set: run the CRI tests with `make test` (hack/test.sh), which starts a CRI-enabled containerd")
    });
    assert!(
        Path::new(&address).exists(),
        "containerd socket {address} does not exist"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let channel = rt
        .block_on(
            // The URI is a placeholder: the connector dials the socket.
            Endpoint::from_static("http://localhost")
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(120))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let address = address.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(address).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                })),
        )
        .expect("connect to containerd's CRI socket");
    Cri {
        rt,
        client: RuntimeServiceClient::new(channel.clone()),
        images: ImageServiceClient::new(channel),
    }
}

/// What a test needs from a pod's spec.
pub struct PodSpec {
    pub name: String,
    pub uid: String,
    pub handler: String,
    pub log_directory: PathBuf,
}

impl PodSpec {
    /// A pod named `name` under the documented runtime class, logging to a
    /// fresh directory (as the kubelet's /var/log/pods/<ns>_<name>_<uid>).
    pub fn new(name: &str) -> PodSpec {
        let uid = crate::unique_id("uid");
        let log_directory = std::env::temp_dir().join(format!("arch-cri-{name}-{uid}"));
        std::fs::create_dir_all(&log_directory).expect("pod log directory");
        PodSpec {
            name: name.to_string(),
            uid,
            handler: runtime_class_handler(),
            log_directory,
        }
    }

    fn namespaces() -> cri::NamespaceOption {
        cri::NamespaceOption {
            network: cri::NamespaceMode::Node as i32,
            pid: cri::NamespaceMode::Container as i32,
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    fn cgroup_parent(&self) -> String {
        format!("/arch-cri/pod{}", self.uid)
    }

    fn config(&self) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: "arch-cri-test".into(),
                attempt: 0,
            }),
            log_directory: self.log_directory.display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(Self::namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A container in a pod: image, command, environment.
pub struct ContainerSpec<'a> {
    pub name: &'a str,
    /// None: the busybox test image.
    pub image: Option<String>,
    pub command: Vec<String>,
    pub env: Vec<(&'a str, String)>,
}

impl ContainerSpec<'_> {
    /// `sh -c script` in the busybox test image.
    pub fn sh<'a>(name: &'a str, script: &str) -> ContainerSpec<'a> {
        ContainerSpec {
            name,
            image: None,
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: Vec::new(),
        }
    }

    /// Another image than the busybox test image (already imported).
    pub fn image(mut self, image: &str) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Opts the container into ARCH under `key`, as a pod's `env` would.
    pub fn arch(mut self, key: &str) -> Self {
        self.env.push(("ARCH_ENABLE", "1".into()));
        self.env.push(("ARCH_KEY", key.into()));
        self
    }
}

/// A running pod sandbox; dropping it stops and removes it (and with it
/// its containers), as the kubelet does when a pod is deleted.
pub struct Pod<'c> {
    cri: &'c Cri,
    pub id: String,
    pub spec: PodSpec,
}

impl Cri {
    fn client(&self) -> RuntimeServiceClient<Channel> {
        self.client.clone()
    }

    /// The image id (config digest) CRI resolves `image` to, if it knows it.
    pub fn image_id(&self, image: &str) -> Option<String> {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let resp = ok(
            "ImageStatus",
            self.rt.block_on(self.images.clone().image_status(req)),
        );
        resp.image.map(|i| i.id)
    }

    /// RunPodSandbox with the spec's runtime handler.
    pub fn run_pod(&self, spec: PodSpec) -> Pod<'_> {
        let req = cri::RunPodSandboxRequest {
            config: Some(spec.config()),
            runtime_handler: spec.handler.clone(),
        };
        let resp = ok(
            "RunPodSandbox",
            self.rt.block_on(self.client().run_pod_sandbox(req)),
        );
        Pod {
            cri: self,
            id: resp.pod_sandbox_id,
            spec,
        }
    }

    pub fn start_container(&self, id: &str) {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        ok(
            "StartContainer",
            self.rt.block_on(self.client().start_container(req)),
        );
    }

    /// StopContainer with a grace period, as the kubelet on pod deletion:
    /// the stop signal, then SIGKILL after `grace`.
    pub fn stop_container(&self, id: &str, grace: Duration) {
        let req = cri::StopContainerRequest {
            container_id: id.into(),
            timeout: grace.as_secs() as i64,
        };
        ok(
            "StopContainer",
            self.rt.block_on(self.client().stop_container(req)),
        );
    }

    pub fn remove_container(&self, id: &str) {
        let req = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        ok(
            "RemoveContainer",
            self.rt.block_on(self.client().remove_container(req)),
        );
    }

    pub fn container_status(&self, id: &str) -> ContainerStatus {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        ok(
            "ContainerStatus",
            self.rt.block_on(self.client().container_status(req)),
        )
        .status
        .expect("ContainerStatus has a status")
    }

    /// ExecSync: (exit code, stdout, stderr).
    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> (i32, String, String) {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        };
        let r = ok("ExecSync", self.rt.block_on(self.client().exec_sync(req)));
        (
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        )
    }

    /// The verbose `info` of PodSandboxStatus (containerd puts the sandbox
    /// init's pid and the runtime handler there).
    pub fn pod_info(&self, pod_id: &str) -> serde_json::Value {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.into(),
            verbose: true,
        };
        let r = ok(
            "PodSandboxStatus",
            self.rt.block_on(self.client().pod_sandbox_status(req)),
        );
        let info: HashMap<String, String> = r.info;
        let raw = info.get("info").expect("verbose PodSandboxStatus has info");
        serde_json::from_str(raw).expect("PodSandboxStatus info is JSON")
    }

    fn stop_and_remove_pod(&self, id: &str) -> Result<(), tonic::Status> {
        let stop = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt.block_on(self.client().stop_pod_sandbox(stop))?;
        let remove = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt.block_on(self.client().remove_pod_sandbox(remove))?;
        Ok(())
    }
}

impl Pod<'_> {
    /// CreateContainer in this pod; returns the container id.
    pub fn create_container(&self, c: &ContainerSpec) -> String {
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: c.name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: c.image.as_deref().unwrap_or(crate::IMAGE).into(),
                ..Default::default()
            }),
            command: c.command.clone(),
            envs: c
                .env
                .iter()
                .map(|(k, v)| cri::KeyValue {
                    key: k.to_string(),
                    value: v.clone(),
                })
                .collect(),
            log_path: format!("{}.log", c.name),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(PodSpec::namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(config),
            sandbox_config: Some(self.spec.config()),
        };
        ok(
            "CreateContainer",
            self.cri
                .rt
                .block_on(self.cri.client().create_container(req)),
        )
        .container_id
    }

    /// CreateContainer + StartContainer.
    pub fn run_container(&self, c: &ContainerSpec) -> String {
        let id = self.create_container(c);
        self.cri.start_container(&id);
        id
    }

    /// The container's CRI log (stdout and stderr, one CRI log line each).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.spec.log_directory.join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// The pid of the sandbox's init (the pause process).
    pub fn sandbox_pid(&self) -> i32 {
        let info = self.cri.pod_info(&self.id);
        info["pid"].as_i64().expect("sandbox pid in info") as i32
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if let Err(s) = self.cri.stop_and_remove_pod(&self.id) {
            eprintln!("removing pod {}: {s}", self.id);
        }
        let _ = std::fs::remove_dir_all(&self.spec.log_directory);
        // The pod's parent cgroup is the kubelet's to make and remove, not
        // the runtime's (runc leaves it too): remove it as the kubelet does.
        remove_cgroup_everywhere(&self.spec.cgroup_parent());
    }
}

/// Removes the empty cgroup `rel` from every hierarchy (v1 or v2).
fn remove_cgroup_everywhere(rel: &str) {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let rel = rel.trim_start_matches('/');
    let _ = std::fs::remove_dir(root.join(rel));
    for hierarchy in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(rel));
    }
}
