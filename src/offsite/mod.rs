//! Offsite copies: the store replicated to S3-compatible object storage or
//! a directory, sealed on this machine ([`seal`]), laid out as immutable
//! packs of chunks and one record per snapshot ([`layout`]), through a
//! [`backend::Backend`] — [`s3`] or [`directory`], chosen by [`connect`]. What was
//! pushed is remembered in the store ([`cache`]); [`push`] uploads what the
//! remote lacks, [`pull`] brings a snapshot back into a (possibly new,
//! empty) local store, from where the usual restore takes over.

pub mod backend;
pub mod cache;
pub mod directory;
mod error;
pub mod layout;
pub mod prune;
pub mod pull;
pub mod push;
pub mod s3;
pub mod seal;
pub mod verify;

use std::path::PathBuf;

use crate::config::{Encryption, HostEnv, OffsiteConfig, OffsiteTarget};
use backend::Backend;
use layout::{MARKER, Marker};
use s3::{Credentials, S3};
use seal::Sealer;

pub use error::OffsiteError;

/// A remote ready for use: connected, its marker read and the key checked.
pub struct Offsite {
    pub remote: Box<dyn Backend>,
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

/// The backend `offsite.url` names (the credentials read for S3):
/// `conditional` asks for puts that create only if absent.
pub fn connect(
    cfg: &OffsiteConfig,
    env: &HostEnv,
    conditional: bool,
) -> Result<Box<dyn Backend>, OffsiteError> {
    match &cfg.target {
        OffsiteTarget::S3 { bucket, prefix } => {
            let creds = credentials(cfg, env)?;
            Ok(Box::new(S3::connect(
                cfg,
                (bucket, prefix),
                &creds,
                conditional,
            )?))
        }
        OffsiteTarget::Directory { path } => Ok(Box::new(directory::Directory::open(
            path,
            &cfg.url,
            conditional,
        )?)),
    }
}

/// Whether [`connect`] has what it needs without asking anyone: S3
/// credentials, when the remote is a bucket.
pub fn reachable_without_asking(cfg: &OffsiteConfig, env: &HostEnv) -> bool {
    match &cfg.target {
        OffsiteTarget::S3 { .. } => credentials(cfg, env).is_ok(),
        OffsiteTarget::Directory { .. } => true,
    }
}

/// Connects to the configured remote and checks its marker and the key.
pub fn open(cfg: Option<&OffsiteConfig>, env: &HostEnv) -> Result<Offsite, OffsiteError> {
    let cfg = cfg.ok_or(OffsiteError::NotConfigured)?;
    let sealer = sealer(cfg)?;
    let probe = connect(cfg, env, false)?;
    let marker = read_marker(probe.as_ref())?.ok_or(OffsiteError::NotInitialized)?;
    marker.check(&sealer, cfg.encryption.as_str())?;
    let remote = if marker.conditional_put {
        connect(cfg, env, true)?
    } else {
        probe
    };
    Ok(Offsite {
        remote,
        sealer,
        marker,
    })
}

pub fn read_marker(r: &dyn Backend) -> Result<Option<Marker>, OffsiteError> {
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
