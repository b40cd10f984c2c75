//! [`Backend`]: what the offsite operations need of the place that keeps
//! the copy — put (created only if absent, when the place can promise it),
//! replace, get, list, delete — and nothing of how it is reached. Two
//! implementations: [`super::s3::S3`] (S3-compatible object storage) and
//! [`super::directory::Directory`] (a NAS mount, an external disk);
//! [`super::connect`] chooses by `offsite.url`. Every implementation runs
//! one conformance suite (`tests/it/offsite_backends.rs`).

use super::OffsiteError;

/// Transfers in flight at once, where a backend runs several.
pub const PARALLEL: usize = 4;

/// One object listed: its name under the listed directory, size and time.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    pub modified: chrono::DateTime<chrono::Utc>,
}

/// What [`Backend::get_found`] found under one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Bytes(Vec<u8>),
    /// Listed, but gone when read.
    Gone,
    /// Something that is not an object (a symbolic link, a directory): why.
    NotAnObject(String),
}

/// The place an offsite copy lives. Names are relative, `/`-separated,
/// made by ducksnap (`packs/<hash>`, `snapshots/<hash>`, the marker).
pub trait Backend: Send + Sync {
    /// `offsite.url`, for messages.
    fn url(&self) -> &str;

    /// Whether [`Backend::put`] creates only if absent (recorded by
    /// `offsite init` from a probe, in the marker).
    fn conditional(&self) -> bool;

    /// Stores `bytes` as `name`: created only if absent when
    /// [`Backend::conditional`] (an object that exists already counts as
    /// success: names are content hashes), else written over. Returns
    /// whether it was new. Never leaves a part of `bytes` under `name`.
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<bool, OffsiteError>;

    /// Stores `bytes` as `name`, replacing what is there (the one mutable
    /// object: the doomed-pack list).
    fn put_overwrite(&self, name: &str, bytes: Vec<u8>) -> Result<(), OffsiteError>;

    /// The object, or `None` when there is none.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, OffsiteError>;

    /// Every object under `dir/`, at any depth, named relative to `dir/`
    /// (a planted `dir/sub/x` is listed as `sub/x`, so that it is seen as
    /// what it is and not mistaken for `dir/x`). A `dir` with nothing in it
    /// lists nothing.
    fn list(&self, dir: &str) -> Result<Vec<Listed>, OffsiteError>;

    /// Deletes `name`; one that is not there is not an error.
    fn delete(&self, name: &str) -> Result<(), OffsiteError>;

    /// Uploads every `(name, bytes)`; returns how many were new. Stops at
    /// the first error (objects already stored stay: nothing names them
    /// until a record does).
    fn put_all(&self, objects: Vec<(String, Vec<u8>)>) -> Result<usize, OffsiteError> {
        let mut new = 0;
        for (name, bytes) in objects {
            new += usize::from(self.put(&name, bytes)?);
        }
        Ok(new)
    }

    /// Every named object, in the order given; a missing one is an error.
    fn get_all(&self, names: &[String]) -> Result<Vec<Vec<u8>>, OffsiteError> {
        names
            .iter()
            .map(|n| {
                self.get(n)?.ok_or_else(|| OffsiteError::Remote {
                    op: "download",
                    object: format!("{}/{n}", self.url().trim_end_matches('/')),
                    reason: "not found".into(),
                })
            })
            .collect()
    }

    /// Every named object in the order given, each as found: only a remote
    /// that cannot be reached is an error, so that one object gone or not
    /// an object can be named while the others are read.
    fn get_found(&self, names: &[String]) -> Result<Vec<Found>, OffsiteError> {
        if let Ok(all) = self.get_all(names) {
            return Ok(all.into_iter().map(Found::Bytes).collect());
        }
        names
            .iter()
            .map(|n| match self.get(n) {
                Ok(Some(b)) => Ok(Found::Bytes(b)),
                Ok(None) => Ok(Found::Gone),
                Err(OffsiteError::NotAnObject { reason, .. }) => Ok(Found::NotAnObject(reason)),
                Err(e) => Err(e),
            })
            .collect()
    }
}
