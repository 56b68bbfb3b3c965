//! What a capture says about each file: enough for a manifest to list it
//! and for `serve` to check both the stored and the original bytes.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// CRIU's name for the image (`pages-1.img`).
    pub name: String,
    /// The file's name in the store (`pages-1.img.zst` when compressed).
    pub stored_name: String,
    pub original_size: u64,
    /// Hex sha256 of the bytes CRIU wrote.
    pub original_sha256: String,
    pub stored_size: u64,
    /// Hex sha256 of the bytes on disk.
    pub stored_sha256: String,
    /// `none` or `zstd`.
    pub codec: String,
    /// The zstd level; none for `none`.
    pub level: Option<i32>,
    /// Set when the stored bytes are encrypted (after the codec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::Encryption>,
}
