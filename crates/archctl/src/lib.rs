//! archctl: the operator's CLI for the ARCH checkpoint store and host.
//!
//! The binary (`main.rs`) only parses arguments and maps errors to exit
//! codes; everything else lives here so it can be unit-tested.

pub mod cli;
pub mod cmd;
pub mod error;
pub mod escape;
pub mod metrics;
pub mod parse;
pub mod progress;
pub mod store;
pub mod tags;

pub use error::{Error, Result};
