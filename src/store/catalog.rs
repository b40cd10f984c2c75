//! Manifests (the commit point of a snapshot) and the catalog derived
//! from them: writing one atomically, reading and validating them, and
//! rebuilding the catalog when it is missing or stale.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::id::SnapshotId;

use super::disk::{create_private_file, fsync_dir, sort_newest_first, tmp_suffix};
use super::error::{Result, StoreError, io_err};
use super::manifest::{BadEntry, MANIFEST_FORMAT, Manifest, Summary};
use super::open::{Store, StoreLock};

const CATALOG: &str = "snapshot_metadata.json";

#[derive(Debug, Serialize, Deserialize)]
struct Catalog {
    format: u32,
    snapshots: Vec<Summary>,
}

impl Store {
    /// Whether snapshot `id`'s manifest file is (still) there.
    pub fn manifest_exists(&self, id: &SnapshotId) -> bool {
        fs::symlink_metadata(self.manifest_path(id)).is_ok()
    }

    pub fn manifest_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("snapshots").join(format!("{id}.json"))
    }

    /// Writes a manifest: the commit point of a snapshot. Then refreshes the
    /// catalog (derived data; a failure there is logged, not fatal).
    pub fn commit_manifest(&self, _lock: &StoreLock, m: &Manifest) -> Result<()> {
        // The catalog as it stands, checked against the manifests present:
        // adding one line to it spares reading every manifest again.
        let before = self.catalog();
        let path = self.manifest_path(&m.id);
        // Compact: a 10 GB database's manifest names ~40,000 chunks, and
        // every snapshot writes one (`ducksnap show ID` prints it readably).
        let body = serde_json::to_vec(m).expect("manifest serializes");
        self.write_atomic(&path, &body)?;
        let updated = before.and_then(|mut snapshots| {
            snapshots.retain(|s| s.id != m.id);
            snapshots.push(Summary::from(m));
            sort_newest_first(&mut snapshots, |s| (&s.created_at, &s.id));
            self.write_catalog(snapshots)
        });
        if let Err(e) = updated {
            tracing::warn!(event = "store.catalog_failed", error = %e, "could not rewrite the catalog; it will be rebuilt on next read");
        }
        Ok(())
    }

    /// Writes `data` to `path` via a staging file: write, fsync, rename, fsync dir.
    pub fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = self.staging();
        let tmp_dir = if staging.is_dir() {
            staging
        } else {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        let tmp = tmp_dir.join(format!(".{name}.{}.tmp", tmp_suffix()));
        {
            let mut f = create_private_file(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(data).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("fsync", &tmp))?;
        }
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
        fsync_dir(path.parent().unwrap_or(Path::new(".")))
    }

    /// Ids of the manifest files present (names that are not valid ids are
    /// reported in the second list).
    fn manifest_ids(&self) -> Result<(BTreeSet<SnapshotId>, Vec<BadEntry>)> {
        let dir = self.root.join("snapshots");
        let mut ids = BTreeSet::new();
        let mut bad = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let e = e.map_err(io_err("read directory", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".json").map(SnapshotId::parse) {
                Some(Ok(id)) => {
                    ids.insert(id);
                }
                Some(Err(err)) => bad.push(BadEntry {
                    file: name,
                    reason: err.to_string(),
                }),
                None => bad.push(BadEntry {
                    file: name,
                    reason: "not a manifest (.json) file".into(),
                }),
            }
        }
        Ok((ids, bad))
    }

    /// The `stat` stamp of snapshot `id`'s manifest file (a manifest is
    /// written once, by rename: a rewritten one is another inode, and an
    /// edit in place moves its ctime).
    pub fn manifest_stamp(&self, id: &SnapshotId) -> Option<crate::database::stamp::Stamp> {
        fs::symlink_metadata(self.manifest_path(id))
            .ok()
            .map(|m| crate::database::stamp::Stamp::of(&m))
    }

    /// Loads and checks one manifest.
    pub fn load_manifest(&self, id: &SnapshotId) -> Result<Manifest> {
        let path = self.manifest_path(id);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    id: id.clone(),
                    store: self.root.clone(),
                });
            }
            Err(e) => return Err(io_err("read manifest", &path)(e)),
        };
        let bad = |reason: String| StoreError::BadManifest {
            path: path.clone(),
            reason,
        };
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        if &m.id != id {
            return Err(bad(format!("names id {} but the file is {id}.json", m.id)));
        }
        m.validate().map_err(bad)?;
        Ok(m)
    }

    /// Every readable manifest, newest first, and the files that could not be read.
    pub fn manifests(&self) -> Result<(Vec<Manifest>, Vec<BadEntry>)> {
        let (ids, mut bad) = self.manifest_ids()?;
        let mut out = Vec::new();
        for id in ids {
            match self.load_manifest(&id) {
                Ok(m) => out.push(m),
                Err(StoreError::NotFound { .. }) => {} // removed meanwhile
                Err(e) => bad.push(BadEntry {
                    file: format!("{id}.json"),
                    reason: e.to_string(),
                }),
            }
        }
        sort_newest_first(&mut out, |m| (&m.created_at, &m.id));
        Ok((out, bad))
    }

    /// Rewrites the catalog from the manifests.
    pub fn rebuild_catalog(&self) -> Result<Vec<Summary>> {
        let (ms, _) = self.manifests()?;
        self.write_catalog(ms.iter().map(Summary::from).collect())
    }

    fn write_catalog(&self, snapshots: Vec<Summary>) -> Result<Vec<Summary>> {
        let cat = Catalog {
            format: MANIFEST_FORMAT,
            snapshots,
        };
        let body = serde_json::to_vec_pretty(&cat).expect("catalog serializes");
        self.write_atomic(&self.root.join(CATALOG), &body)?;
        Ok(cat.snapshots)
    }

    /// The catalog, newest first: read from `snapshot_metadata.json` when it
    /// matches the manifests present, rebuilt otherwise. A rebuilt catalog
    /// that cannot be written back (a full disk) is still returned: the
    /// cache is an optimisation, and what reads it (status, the archive's
    /// bases) must not go blind when the store is in trouble.
    pub fn catalog(&self) -> Result<Vec<Summary>> {
        let (ids, _) = self.manifest_ids()?;
        let path = self.root.join(CATALOG);
        let cached = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Catalog>(&b).ok())
            .filter(|c| c.format == MANIFEST_FORMAT)
            .filter(|c| {
                c.snapshots.iter().map(|s| &s.id).collect::<BTreeSet<_>>() == ids.iter().collect()
            });
        match cached {
            Some(c) => Ok(c.snapshots),
            None => {
                if path.exists() {
                    tracing::warn!(event = "store.catalog_rebuilt", path = %path.display(), "catalog was unreadable or out of date; rebuilt from the manifests");
                }
                let (ms, _) = self.manifests()?;
                let snapshots: Vec<Summary> = ms.iter().map(Summary::from).collect();
                match self.write_catalog(snapshots.clone()) {
                    Ok(s) => Ok(s),
                    Err(e) => {
                        tracing::warn!(event = "store.catalog_failed", error = %e, "could not rewrite the catalog; read from the manifests");
                        Ok(snapshots)
                    }
                }
            }
        }
    }
}
