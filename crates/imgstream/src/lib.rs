//! CRIU image streaming for ARCH (issue 15, first brick): `criu dump
//! --stream` hands each image file to [`Capture`] through a pipe, which
//! hashes, compresses and stores it as it arrives; `criu restore --stream`
//! asks [`Serve`] for them back, verified before CRIU sees a byte.
//! Not yet wired into the shim's dump and restore.

mod capture;
mod codec;
mod error;
mod failure;
mod hashing;
mod listener;
mod pipe;
mod record;
mod serve;
mod store;
pub mod wire;

#[cfg(test)]
mod fake_criu;
#[cfg(test)]
mod tests;

pub use capture::Capture;
pub use codec::Codec;
pub use error::{Result, StreamError};
pub use record::FileRecord;
pub use serve::{Serve, ServeReport};
pub use store::{valid_name, DirStore, Store, StoredFile};
