//! Container lifecycle on youki's libcontainer.
//!
//! Everything that forks and then runs Rust code (creating a container,
//! exec'ing into one) runs in a helper: the shim's binary exec'd for that
//! one request, single-threaded, gone after it (spawn_helper.rs), since
//! forking a multi-threaded process can leave locks held in the child. The
//! helper builds containers "as sibling", so their processes become direct
//! children of the shim, which reaps them as subreaper. Operations that do
//! not fork, or fork only to exec at once (start, kill, pause, delete,
//! cgroup reads, CRIU), run in the shim itself.

mod cgroup;
mod cgroup_driver;
mod cgroup_v1;
mod container;
mod criu;
mod criu_launch;
mod criu_mounts;
mod dump;
mod error;
mod exec_security;
mod freeze;
mod image_stdio;
mod kill_all;
mod libcontainer_spec;
mod loopback;
mod namespaces;
mod notify;
mod oci_hooks;
mod oom_v2;
mod orphan;
mod parent_thread;
#[cfg(any(test, feature = "test-support"))]
pub mod pid_reuse;
mod pidfd;
mod predump;
mod proc_tree;
mod quiet_network;
mod restore;
mod restore_target;
mod seal_dump;
mod spawn;
mod spawn_helper;
mod stray_criu;
mod stream_dump;
mod v2_controllers;

pub use arch_host::child_exits::child_exited;
pub use arch_host::cmd::criu_can_stream;
pub use arch_imgstream::{Codec as StreamCodec, FileRecord as StreamedFile};
pub use cgroup::{Cgroup, CgroupStats};
pub use cgroup_driver::{cgroup_dir, is_systemd_path, CgroupDriver};
pub use cgroup_v1::own_cgroup;
pub use container::{ContainerHandle, Runtime};
pub use criu::criu_version;
pub use criu_launch::criu_launcher_main;
pub use dump::DumpOptions;
pub use error::{Result, RuntimeError};
pub use image_stdio::{check_image_stdio, ImageStdio, DESCRIPTORS};
pub use libcgroups::stats::MemoryData;
pub use libcontainer::oci_spec;
pub use namespaces::NamespaceError;
pub use notify::{NotifyError, ResumeCheck};
pub use orphan::{kill_recorded_cgroup, record_cgroup};
pub use pidfd::ProcessRef;
pub use proc_tree::process_tree;
pub use restore::{RestoreRequest, Restored};
pub use rust_criu::CriuError;
pub use spawn::{describe_in_helper, CreateRequest, ExecRequest, Stdio};
pub use spawn_helper::spawn_helper_main;
pub use stray_criu::kill_stray_criu;
