//! A direct ttrpc client to a running ARCH shim, for task API calls that
//! `ctr` cannot make (Update on containerd 1.7) and for feeding the shim
//! bad input that containerd would filter out first.

use std::path::PathBuf;

pub use containerd_shim_protos::api;
pub use containerd_shim_protos::protobuf::well_known_types::any::Any;
pub use containerd_shim_protos::shim_sync::TaskClient;
pub use containerd_shim_protos::ttrpc::{self, Code};

use crate::Ctr;

impl Ctr {
    /// containerd's state directory (the socket's sibling `state/`, as
    /// hack/containerd-test.sh lays it out).
    pub fn state_dir(&self) -> PathBuf {
        std::env::var("ARCH_E2E_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(&self.address).parent().unwrap().join("state"))
    }

    /// The bundle containerd made for container `id`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.state_dir()
            .join("io.containerd.runtime.v2.task")
            .join(&self.namespace)
            .join(id)
    }

    /// Connects to the shim serving container `id`.
    pub fn shim(&self, id: &str) -> TaskClient {
        let address = std::fs::read_to_string(self.bundle(id).join("address"))
            .unwrap_or_else(|e| panic!("shim address of {id}: {e}"));
        let client = ttrpc::Client::connect(address.trim()).expect("connect to shim");
        TaskClient::new(client)
    }
}

pub fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(30_000_000_000)
}

/// The gRPC status code and message of a failed call.
pub fn status<T: std::fmt::Debug>(r: ttrpc::Result<T>) -> (Code, String) {
    match r {
        Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message.clone()),
        other => panic!("expected an RPC error status, got {other:?}"),
    }
}
