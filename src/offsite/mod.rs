//! Offsite copies: the store replicated to S3-compatible object storage,
//! sealed on this machine ([`seal`]), laid out as immutable packs of chunks
//! and one record per snapshot ([`layout`]), through [`remote`]. What was
//! pushed is remembered in the store ([`cache`]); [`push`] uploads what the
//! remote lacks, [`pull`] brings a snapshot back into a (possibly new,
//! empty) local store, from where the usual restore takes over.

pub mod cache;
pub mod layout;
pub mod prune;
pub mod pull;
pub mod push;
pub mod remote;
pub mod seal;
pub mod verify;

use std::path::PathBuf;

use crate::config::{Encryption, HostEnv, OffsiteConfig};
use layout::{MARKER, Marker};
use remote::{Credentials, Remote};
use seal::{SealError, Sealer};

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
    #[error("offsite layout: {0}")]
    Layout(String),
    #[error("offsite record {object}: {reason}")]
    BadRecord { object: String, reason: String },
}

/// A remote ready for use: connected, its marker read and the key checked.
pub struct Offsite {
    pub remote: Remote,
    pub sealer: Sealer,
    pub marker: Marker,
}

/// The credentials: `offsite.credentials_file` when set, else the standard
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.
pub fn credentials(cfg: &OffsiteConfig, env: &HostEnv) -> Result<Credentials, OffsiteError> {
    if let Some(p) = &cfg.credentials_file {
        return cache::read_credentials(p);
    }
    let need = |name: &str| {
        env.nonempty(name)
            .map(str::to_string)
            .ok_or_else(|| OffsiteError::Setup {
                what: "offsite credentials".into(),
                reason: format!("${name} is not set (or set offsite.credentials_file)"),
            })
    };
    Ok(Credentials {
        access_key_id: need("AWS_ACCESS_KEY_ID")?,
        secret_access_key: need("AWS_SECRET_ACCESS_KEY")?,
        session_token: env.nonempty("AWS_SESSION_TOKEN").map(str::to_string),
    })
}

/// The sealer the config asks for (loading the key file).
pub fn sealer(cfg: &OffsiteConfig) -> Result<Sealer, OffsiteError> {
    match cfg.encryption {
        Encryption::None => Ok(Sealer::Plain),
        Encryption::XChaCha20Poly1305 => Ok(Sealer::from_key(&seal::load_key(&cfg.key_file)?)),
    }
}

/// Connects to the configured remote and checks its marker and the key.
pub fn open(cfg: Option<&OffsiteConfig>, env: &HostEnv) -> Result<Offsite, OffsiteError> {
    let cfg = cfg.ok_or(OffsiteError::NotConfigured)?;
    let sealer = sealer(cfg)?;
    let creds = credentials(cfg, env)?;
    let probe = Remote::connect(cfg, &creds, false)?;
    let marker = read_marker(&probe)?.ok_or(OffsiteError::NotInitialized)?;
    marker.check(&sealer, cfg.encryption.as_str())?;
    let remote = if marker.conditional_put {
        Remote::connect(cfg, &creds, true)?
    } else {
        probe
    };
    Ok(Offsite {
        remote,
        sealer,
        marker,
    })
}

pub fn read_marker(r: &Remote) -> Result<Option<Marker>, OffsiteError> {
    match r.get(MARKER)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| OffsiteError::Layout(format!("{MARKER} is not a ducksnap marker: {e}"))),
    }
}

/// Where the local record of what was pushed lives.
pub fn cache_path(store: &std::path::Path) -> PathBuf {
    store.join("offsite").join("pushed.json")
}
