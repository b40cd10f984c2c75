//! The local record of what is offsite (`<store>/offsite/pushed.json`):
//! which snapshots the remote holds whole — a record *and* every pack it
//! names — and where each pushed chunk is, as last checked against the
//! bucket. It lets an incremental push upload only new chunks.
//!
//! It is checked, never trusted: every push, `offsite verify` and a prune
//! by hand first list the remote's records and packs ([`Cache::current`]).
//! Missing, unreadable, of another remote, naming a record the remote no
//! longer lists or a pack it no longer has, the cache is rebuilt from the
//! records that open, validate and name only packs that exist; a snapshot
//! whose record or pack is gone is then not offsite, and the next push
//! sends it again. Local retention counts a snapshot as offsite only while
//! the last check succeeded ([`pushed_ids`]). It also remembers which
//! snapshots this machine pushed, so that one vanishing from the bucket is
//! an alarm (`status --check`, `offsite verify`), not a silent re-push.
//!
//! One bad object (garbage, a replayed or renamed record, a nested name)
//! is reported and skipped: every intact record stays usable.
//!
//! Also reads `offsite.credentials_file`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backend::Found;
use super::layout::{self, PACKS, Record, SNAPSHOTS};
use super::s3::Credentials;
use super::{Offsite, OffsiteError};
use crate::store::Store;

/// Where a pushed chunk is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Where {
    pub pack: String,
    pub offset: u64,
    pub len: u64,
}

/// The last check of the cache against the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    pub at: DateTime<Utc>,
    /// Why it failed (`None`: it succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cache {
    pub remote_id: String,
    /// Snapshot id → its record's object name: the snapshots the remote
    /// held whole at the last check.
    pub snapshots: BTreeMap<String, String>,
    /// Chunk hash → where it is.
    pub chunks: BTreeMap<String, Where>,
    /// Snapshots this machine pushed (kept across rebuilds; an offsite
    /// prune from here removes what it deletes).
    #[serde(default)]
    pub pushed_here: BTreeSet<String>,
    /// Snapshots this machine pushed, still in the local store, that the
    /// remote did not hold whole at the last check: not restorable offsite
    /// until the next push sends them again.
    #[serde(default)]
    pub lost: BTreeSet<String>,
    /// Objects under `snapshots/` that could not be used at the last check,
    /// with why.
    #[serde(default)]
    pub bad_objects: Vec<String>,
    #[serde(default)]
    pub checked: Option<Checked>,
}

/// The remote's records and packs as listed, and the records read.
pub struct Listing {
    /// Record objects listed (`snapshots/<name>`).
    pub records: BTreeSet<String>,
    /// Pack objects listed (`packs/<name>`).
    pub packs: BTreeSet<String>,
}

impl Listing {
    pub fn read(off: &Offsite) -> Result<Listing, OffsiteError> {
        let list = |dir: &str| -> Result<BTreeSet<String>, OffsiteError> {
            Ok(off
                .remote
                .list(dir)?
                .into_iter()
                .map(|l| format!("{dir}/{}", l.name))
                .collect())
        };
        Ok(Listing {
            records: list(SNAPSHOTS)?,
            packs: list(PACKS)?,
        })
    }
}

/// The remote's records, read and checked: those that open, validate and
/// name only listed packs (`whole`), those that name a missing pack
/// (`incomplete`), and objects that are not usable records (`bad`, with
/// why).
#[derive(Default)]
pub struct View {
    pub whole: Vec<(String, Record)>,
    pub incomplete: Vec<(String, Record, Vec<String>)>,
    pub bad: Vec<String>,
}

impl View {
    /// Reads every listed record.
    pub fn read(off: &Offsite, listing: &Listing) -> Result<View, OffsiteError> {
        let (records, bad) = fetch_records(off, listing.records.iter().cloned().collect())?;
        let mut v = View {
            bad,
            ..View::default()
        };
        for (object, r) in records {
            let missing: Vec<String> = r
                .packs
                .iter()
                .filter(|p| !listing.packs.contains(*p))
                .cloned()
                .collect();
            if missing.is_empty() {
                v.whole.push((object, r));
            } else {
                v.incomplete.push((object, r, missing));
            }
        }
        for (object, r, missing) in &v.incomplete {
            tracing::warn!(event = "offsite.record_incomplete", object = %object, id = %r.manifest.id, missing = ?missing, "offsite snapshot {} names missing pack(s): not restorable offsite", r.manifest.id);
        }
        for b in &v.bad {
            tracing::warn!(event = "offsite.bad_object", problem = %b, "offsite object skipped: {b}");
        }
        Ok(v)
    }

    /// Lists and reads the remote.
    pub fn current(off: &Offsite) -> Result<View, OffsiteError> {
        View::read(off, &Listing::read(off)?)
    }
}

impl Cache {
    /// The cache of `off`'s remote, checked against the bucket now: the
    /// saved one when every record it names is listed and every pack it
    /// places a chunk in exists, else rebuilt from the remote's whole
    /// records. Saved either way, with the check's time; a failure to
    /// reach the remote is saved as a failed check (so that local
    /// retention stops counting anything as offsite) and returned.
    pub fn current(store: &Store, off: &Offsite) -> Result<(Cache, Listing), OffsiteError> {
        let saved = Self::saved(store).filter(|c| c.remote_id == off.marker.remote_id);
        let checked: Result<(Cache, Listing), OffsiteError> = (|| {
            let listing = Listing::read(off)?;
            tracing::debug!(
                event = "offsite.listed",
                records = listing.records.len(),
                packs = listing.packs.len(),
                "offsite listing read"
            );
            let fits = |c: &&Cache| {
                c.snapshots.values().all(|o| listing.records.contains(o))
                    && c.chunks.values().all(|w| listing.packs.contains(&w.pack))
            };
            let mut c = match saved.as_ref().filter(fits) {
                Some(c) => c.clone(),
                None => {
                    let view = View::read(off, &listing)?;
                    let mut c = Cache::from_records(&off.marker.remote_id, &view.whole);
                    // Chunks of incomplete records that lie in packs that
                    // exist need not be sent again.
                    for (_, r, _) in &view.incomplete {
                        for (hash, l) in &r.chunks {
                            let pack = &r.packs[l.pack as usize];
                            if listing.packs.contains(pack) && !c.chunks.contains_key(hash) {
                                c.chunks.insert(
                                    hash.clone(),
                                    Where {
                                        pack: pack.clone(),
                                        offset: l.offset,
                                        len: l.len,
                                    },
                                );
                            }
                        }
                    }
                    c.bad_objects = view.bad;
                    c
                }
            };
            c.pushed_here = saved
                .as_ref()
                .map(|s| s.pushed_here.clone())
                .unwrap_or_default();
            Ok((c, listing))
        })();
        match checked {
            Ok((mut c, listing)) => {
                c.checked = Some(Checked {
                    at: Utc::now(),
                    failed: None,
                });
                c.note_lost(store);
                c.save(store)?;
                Ok((c, listing))
            }
            Err(e) => {
                if let Some(mut c) = saved {
                    c.checked = Some(Checked {
                        at: Utc::now(),
                        failed: Some(e.to_string()),
                    });
                    let _ = c.save(store);
                }
                Err(e)
            }
        }
    }

    /// The saved cache, if it reads.
    pub fn saved(store: &Store) -> Option<Cache> {
        std::fs::read(super::cache_path(store.root()))
            .ok()
            .and_then(|b| serde_json::from_slice::<Cache>(&b).ok())
    }

    /// Sets [`Cache::lost`]: pushed from here, still local, not whole
    /// offsite.
    pub fn note_lost(&mut self, store: &Store) {
        let local: BTreeSet<String> = store
            .catalog()
            .unwrap_or_default()
            .iter()
            .map(|s| s.id.to_string())
            .collect();
        self.lost = self
            .pushed_here
            .iter()
            .filter(|id| local.contains(*id) && !self.snapshots.contains_key(*id))
            .cloned()
            .collect();
        if !self.lost.is_empty() {
            tracing::error!(event = "offsite.snapshot_lost", ids = ?self.lost, "snapshot(s) pushed from here are no longer restorable offsite (a record or pack is gone); the next push sends them again");
        }
    }

    pub fn from_records(remote_id: &str, records: &[(String, Record)]) -> Cache {
        let mut c = Cache {
            remote_id: remote_id.to_string(),
            ..Cache::default()
        };
        for (object, r) in records {
            c.add(object, r);
        }
        c
    }

    /// Records that the remote holds `r`, whole, as `object`.
    pub fn add(&mut self, object: &str, r: &Record) {
        self.snapshots
            .insert(r.manifest.id.to_string(), object.to_string());
        for (hash, l) in &r.chunks {
            self.chunks.insert(
                hash.clone(),
                Where {
                    pack: r.packs[l.pack as usize].clone(),
                    offset: l.offset,
                    len: l.len,
                },
            );
        }
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

/// Records a check that could not even reach the remote (no credentials,
/// a bad key): local retention then counts nothing as offsite.
pub fn note_failed_check(store: &Store, why: &str) {
    if let Some(mut c) = Cache::saved(store) {
        c.checked = Some(Checked {
            at: Utc::now(),
            failed: Some(why.to_string()),
        });
        let _ = c.save(store);
    }
}

/// The ids offsite as far as this machine knows — held whole by the remote
/// at the last check that reached it — when offsite is configured; `None`
/// without `[offsite]`. No network: `status`, `list` and the lag ask this.
pub fn pushed_ids(
    cfg: Option<&crate::config::OffsiteConfig>,
    store: &Store,
) -> Option<BTreeSet<String>> {
    ids(cfg, store, |_| true)
}

/// The cache's snapshots when offsite is configured and `trust` accepts
/// the cache (an empty set otherwise).
fn ids(
    cfg: Option<&crate::config::OffsiteConfig>,
    store: &Store,
    trust: impl Fn(&Cache) -> bool,
) -> Option<BTreeSet<String>> {
    cfg?;
    Some(
        Cache::saved(store)
            .filter(|c| trust(c))
            .map(|c| c.snapshots.into_keys().collect())
            .unwrap_or_default(),
    )
}

/// The ids local retention may count as offsite: [`pushed_ids`], but none
/// while the last check failed (or there was none) — nothing local is
/// given up on the word of a remote that could not be asked.
pub fn confirmed_ids(
    cfg: Option<&crate::config::OffsiteConfig>,
    store: &Store,
) -> Option<BTreeSet<String>> {
    ids(cfg, store, |c| {
        c.checked.as_ref().is_some_and(|k| k.failed.is_none())
    })
}

/// Records with their object names.
pub type Records = Vec<(String, Record)>;

/// Downloads, opens and checks the records named `objects`; returns those
/// that are good, with their object names, oldest snapshot first, and a
/// line for each that is not (it cannot be opened, does not validate, is
/// not where its snapshot's record belongs). Only the network failing is
/// an error.
pub fn fetch_records(
    off: &Offsite,
    objects: Vec<String>,
) -> Result<(Records, Vec<String>), OffsiteError> {
    let bodies = off.remote.get_found(&objects)?;
    let mut out = Vec::with_capacity(objects.len());
    let mut bad = Vec::new();
    for (object, sealed) in objects.into_iter().zip(bodies) {
        match open_record(off, &object, sealed) {
            Ok(r) => out.push((object, r)),
            Err(e) => bad.push(e.to_string()),
        }
    }
    // Oldest first by time taken (ids of one second sort by their random
    // suffix, not by age).
    out.sort_by(|a, b| {
        (a.1.manifest.created_at, &a.1.manifest.id)
            .cmp(&(b.1.manifest.created_at, &b.1.manifest.id))
    });
    Ok((out, bad))
}

fn open_record(off: &Offsite, object: &str, found: Found) -> Result<Record, OffsiteError> {
    let bad = |reason: String| OffsiteError::BadRecord {
        object: object.to_string(),
        reason,
    };
    let sealed = match found {
        Found::Bytes(b) => b,
        Found::Gone => return Err(bad("listed, but gone when read".into())),
        Found::NotAnObject(why) => return Err(bad(why)),
    };
    let plain = off.sealer.open(object, &sealed)?;
    let r: Record = serde_json::from_slice(&plain).map_err(|e| bad(e.to_string()))?;
    r.validate().map_err(bad)?;
    if layout::record_object(&off.sealer, r.manifest.id.as_str()) != object {
        return Err(bad(
            "names another snapshot than its object name says".into()
        ));
    }
    Ok(r)
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
