//! Container lifecycle on youki's libcontainer.
//!
//! Everything that forks (creating a container, exec'ing into one) runs in a
//! single-threaded zygote that the shim starts before it spawns any thread:
//! forking a multi-threaded process can leave locks held in the child. The
//! zygote builds containers "as sibling", so their processes become direct
//! children of the shim, which reaps them as subreaper. Operations that do not
//! fork (start, kill, pause, delete, cgroup reads) run in the shim itself.

mod cgroup;
mod container;
mod dump;
mod error;
mod namespaces;
mod notify;
mod restore;
mod spawn;

pub use cgroup::{Cgroup, CgroupStats};
pub use container::{criu_version, ContainerHandle, DumpOptions, Runtime};
pub use error::{Result, RuntimeError};
pub use libcgroups::stats::MemoryData;
pub use libcontainer::oci_spec;
pub use restore::{check_image_stdio, process_tree, ImageStdio, RestoreRequest, Restored};
pub use spawn::{init_zygote, CreateRequest, ExecRequest, Stdio};
pub use zygote::WireFd;
