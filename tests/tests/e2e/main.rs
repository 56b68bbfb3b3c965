//! End-to-end tests: real containerd, real `ctr`, the ARCH shim.
//! Run through `make test` (hack/test.sh), which starts the private containerd.

mod archive;
mod bootstrap;
mod checkpoint;
mod cleanup;
mod containerd_checkpoint;
mod control;
mod data_safety;
mod encrypt;
mod errors;
mod events;
mod exec;
mod generations;
mod io;
mod lifecycle;
mod network;
mod parity;
mod periodic;
mod predump;
mod restore;
mod restore_copy;
mod runtime_options;
mod scale;
mod stream;
mod terminal;
mod trust;
mod two_hosts;
