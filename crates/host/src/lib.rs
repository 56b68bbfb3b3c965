//! What every ARCH crate needs to know about the host it runs on: the
//! well-known paths ([`paths`]) and the facts an image records and a
//! restore compares ([`facts`]). One definition of each.

pub mod child_exits;
pub mod cmd;
pub mod facts;
pub mod paths;

pub use facts::{cgroup_version, hostname, kernel_release, now_secs, CgroupVersion};
