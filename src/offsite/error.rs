//! [`OffsiteError`]: why an offsite operation failed — a leaf the other
//! offsite files import, never their parent.

use std::path::PathBuf;

use super::seal::SealError;

/// Why an offsite operation failed. Messages name the config key or the
/// object; they never contain a credential or the key.
#[derive(Debug, thiserror::Error)]
pub enum OffsiteError {
    #[error("offsite is not configured: add an [offsite] section (README, \"Offsite\")")]
    NotConfigured,
    #[error("invalid {what}: {reason}")]
    Setup { what: String, reason: String },
    #[error("{op} {object}: {reason}")]
    Remote {
        op: &'static str,
        object: String,
        reason: String,
    },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("the key in offsite.key_file is not the key this remote was set up with")]
    WrongKey,
    #[error(
        "the remote is set up already, with a key that is not at {0}: copy that key file there (ducksnap does not make a new key for a remote that has one)"
    )]
    KeyMissing(PathBuf),
    #[error("the remote is not set up: run `ducksnap offsite init`")]
    NotInitialized,
    #[error(
        "bucket {bucket:?} does not exist at {endpoint}: create it (aws s3 mb s3://{bucket}, or in the provider's console), or fix offsite.url"
    )]
    NoBucket { bucket: String, endpoint: String },
    #[error(
        "the offsite directory {0} does not exist: mount the disk it is on, or create it (mkdir -p) if this is its first use"
    )]
    NoDirectory(PathBuf),
    #[error("offsite object {object} is not an object: {reason}")]
    NotAnObject { object: String, reason: String },
    #[error("offsite layout: {0}")]
    Layout(String),
    #[error("offsite record {object}: {reason}")]
    BadRecord { object: String, reason: String },
}
