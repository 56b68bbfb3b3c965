//! CRIU image streaming for ARCH (issue 15, first brick): `criu dump
//! --stream` hands each image file to [`Capture`] through a pipe, which
//! hashes, compresses and stores it as it arrives; `criu restore --stream`
//! asks [`Serve`] for them back, verified before CRIU sees a byte.
//! The shim streams dumps through `Capture` (CRIU's CLI: CRIU 4.1 cannot
//! stream in swrk mode) and restores from files [`decode_verified`]
//! decoded into its private verified copy; `Serve` waits for a CRIU whose
//! RPC can stream.

mod capture;
mod chunks;
mod codec;
mod crypt;
mod error;
mod failure;
mod hash_behind;
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
#[cfg(test)]
mod tests_crypt;

pub use capture::{store_file, Capture};
pub use chunks::{chunk_channel, ChunkSender, Chunks, OwnedWrite, CHUNK};
pub use codec::Codec;
pub use crypt::{
    identity, new_image_id, BadEncryption, Crypt, Encryption, SUFFIX as ENCRYPTED_SUFFIX,
};
pub use error::{Result, StreamError};
pub use hashing::OriginalDigest;
pub use record::FileRecord;
pub use serve::{decode_unhashed, decode_verified, Serve, ServeReport};
pub use store::{valid_name, DirStore, Store, StoredFile};
