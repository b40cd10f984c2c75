//! The local record of what is offsite (`<store>/offsite/pushed.json`):
//! which snapshots have a remote record and where each pushed chunk is. It
//! lets an incremental push upload only new chunks without listing the
//! packs. It is only a cache: missing, unreadable, of another remote, or
//! naming a snapshot whose record the remote no longer has (pruned from
//! elsewhere), it is rebuilt from the remote's records.
//!
//! Also reads `offsite.credentials_file`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::layout::{self, Record, SNAPSHOTS};
use super::remote::Credentials;
use super::{Offsite, OffsiteError};
use crate::store::Store;

/// Where a pushed chunk is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Where {
    pub pack: String,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cache {
    pub remote_id: String,
    /// Snapshot id → its record's object name.
    pub snapshots: BTreeMap<String, String>,
    /// Chunk hash → where it is.
    pub chunks: BTreeMap<String, Where>,
}

impl Cache {
    /// The cache of `off`'s remote: the saved one when it still matches the
    /// remote's records, else rebuilt from them (and saved).
    pub fn current(store: &Store, off: &Offsite) -> Result<Cache, OffsiteError> {
        let listed: BTreeSet<String> = off
            .remote
            .list(SNAPSHOTS)?
            .into_iter()
            .map(|l| format!("{SNAPSHOTS}/{}", l.name))
            .collect();
        let saved = std::fs::read(super::cache_path(store.root()))
            .ok()
            .and_then(|b| serde_json::from_slice::<Cache>(&b).ok())
            .filter(|c| c.remote_id == off.marker.remote_id)
            .filter(|c| c.snapshots.values().all(|o| listed.contains(o)));
        if let Some(c) = saved {
            return Ok(c);
        }
        let records = fetch_records(off, listed.into_iter().collect())?;
        let c = Cache::from_records(&off.marker.remote_id, &records);
        c.save(store)?;
        Ok(c)
    }

    pub fn from_records(remote_id: &str, records: &[(String, Record)]) -> Cache {
        let mut c = Cache {
            remote_id: remote_id.to_string(),
            ..Cache::default()
        };
        for (object, r) in records {
            c.snapshots
                .insert(r.manifest.id.to_string(), object.clone());
            for (hash, l) in &r.chunks {
                c.chunks.insert(
                    hash.clone(),
                    Where {
                        pack: r.packs[l.pack as usize].clone(),
                        offset: l.offset,
                        len: l.len,
                    },
                );
            }
        }
        c
    }

    pub fn save(&self, store: &Store) -> Result<(), OffsiteError> {
        let path = super::cache_path(store.root());
        let io = |e: std::io::Error| OffsiteError::Layout(format!("{}: {e}", path.display()));
        let dir = path.parent().expect("cache has a directory");
        match std::fs::symlink_metadata(dir) {
            Ok(m) if !m.is_dir() => return Err(io(std::io::Error::other("not a directory"))),
            Ok(_) => {}
            Err(_) => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
            }
        }
        let body = serde_json::to_vec(self).expect("cache serializes");
        store
            .write_atomic(&path, &body)
            .map_err(|e| OffsiteError::Layout(e.to_string()))
    }
}

/// The ids offsite according to the cache, when offsite is configured (an
/// empty set when nothing was pushed yet); `None` without `[offsite]`. No
/// network: retention asks this.
pub fn pushed_ids(
    cfg: Option<&crate::config::OffsiteConfig>,
    store: &Store,
) -> Option<BTreeSet<String>> {
    cfg?;
    let saved = std::fs::read(super::cache_path(store.root()))
        .ok()
        .and_then(|b| serde_json::from_slice::<Cache>(&b).ok());
    Some(
        saved
            .map(|c| c.snapshots.into_keys().collect())
            .unwrap_or_default(),
    )
}

/// Downloads, opens and checks the records named `objects`; returns them
/// with their object names, oldest snapshot first.
pub fn fetch_records(
    off: &Offsite,
    objects: Vec<String>,
) -> Result<Vec<(String, Record)>, OffsiteError> {
    let bodies = off.remote.get_all(&objects)?;
    let mut out = Vec::with_capacity(objects.len());
    for (object, sealed) in objects.into_iter().zip(bodies) {
        let bad = |reason: String| OffsiteError::BadRecord {
            object: object.clone(),
            reason,
        };
        let plain = off.sealer.open(&object, &sealed)?;
        let r: Record = serde_json::from_slice(&plain).map_err(|e| bad(e.to_string()))?;
        r.validate().map_err(bad)?;
        if layout::record_object(&off.sealer, r.manifest.id.as_str()) != object {
            return Err(bad(
                "names another snapshot than its object name says".into()
            ));
        }
        out.push((object, r));
    }
    out.sort_by(|a, b| a.1.manifest.id.cmp(&b.1.manifest.id));
    Ok(out)
}

/// Reads `offsite.credentials_file`: `aws_access_key_id`,
/// `aws_secret_access_key` and optionally `aws_session_token`, as `key =
/// value` lines (an AWS credentials file's first profile works); refused
/// when group or others may read it.
pub fn read_credentials(path: &Path) -> Result<Credentials, OffsiteError> {
    let bad = |reason: String| OffsiteError::Setup {
        what: "offsite.credentials_file".into(),
        reason: format!("{}: {reason}", path.display()),
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "mode {mode:o} lets other users read it; chmod 600 it"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut values = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && !values.is_empty() {
            break; // the first profile only
        }
        if let Some((k, v)) = line.split_once('=') {
            values.insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    let get = |k: &str| values.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(Credentials {
        access_key_id: get("aws_access_key_id")
            .ok_or_else(|| bad("no aws_access_key_id".into()))?,
        secret_access_key: get("aws_secret_access_key")
            .ok_or_else(|| bad("no aws_secret_access_key".into()))?,
        session_token: get("aws_session_token"),
    })
}
