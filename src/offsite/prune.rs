//! `offsite prune`: remote retention, then the packs no record names.
//!
//! Records of the snapshots `[offsite.retention]` forgets are deleted
//! first. Packs are deleted in two phases, so that a push running at the
//! same time from another process never loses a pack it is about to name:
//! a pack no record names is first *doomed* (noted, with the time, in the
//! sealed `doomed` object); a later prune deletes it only if it is still
//! unnamed and was doomed at least `offsite.prune_grace` before. A push
//! that names packs it did not upload itself must write its record within
//! half the grace of reading which packs exist (it re-reads otherwise), and
//! it re-reads them whenever a record it knew of is gone — so a pack
//! doomed after the push looked is either named by the push's record by
//! the time the deleting prune lists the records, or was never chosen.
//!
//! An object under `snapshots/` that is not a usable record may name packs
//! nobody can read: while there is one, no pack is doomed or deleted (the
//! prune names it), as local prune refuses over an unreadable manifest.
//! Records naming a missing pack are weighed by retention like the others.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cache::Cache;
use super::layout::{PACKS, Record};
use super::pull::remote_snapshots;
use super::{Offsite, OffsiteError};
use crate::config::RetentionConfig;
use crate::retention::{self, Candidate, Plan};
use crate::store::Store;

/// The object listing doomed packs.
pub const DOOMED: &str = "doomed";

/// What `offsite prune` did (or would do, with `dry_run`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemotePruned {
    pub dry_run: bool,
    pub plan: Plan,
    pub records_deleted: usize,
    /// Packs no record names that were doomed now (deleted by a later prune).
    pub packs_doomed: usize,
    pub packs_deleted: usize,
    pub bytes_freed: u64,
    /// Objects that kept packs from being deleted (not usable records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep_refused: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Doomed {
    /// Pack object → when a prune first found no record naming it.
    since: BTreeMap<String, DateTime<Utc>>,
}

/// Applies `policy` to the remote's snapshots, then the two-phase pack
/// deletion; `now` is passed in.
pub fn prune(
    store: &Store,
    off: &Offsite,
    policy: &RetentionConfig,
    grace: std::time::Duration,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<RemotePruned, OffsiteError> {
    let view = remote_snapshots(off)?;
    let records: Vec<(String, Record)> = view
        .whole
        .iter()
        .cloned()
        .chain(
            view.incomplete
                .iter()
                .map(|(o, r, _)| (o.clone(), r.clone())),
        )
        .collect();
    let plan = retention::plan(&candidates(&records), policy, now);
    let mut out = RemotePruned {
        dry_run,
        plan,
        records_deleted: 0,
        packs_doomed: 0,
        packs_deleted: 0,
        bytes_freed: 0,
        sweep_refused: Vec::new(),
    };
    if dry_run {
        return Ok(out);
    }
    let forget: BTreeSet<String> = out.plan.forgotten().map(|d| d.id.to_string()).collect();
    for (object, r) in &records {
        if forget.contains(r.manifest.id.as_str()) {
            off.remote.delete(object)?;
            out.records_deleted += 1;
            tracing::info!(event = "offsite.pruned", id = %r.manifest.id, "offsite snapshot removed by retention");
        }
    }
    // The records as they are now (a push may have added one meanwhile).
    let now_view = remote_snapshots(off)?;
    if now_view.bad.is_empty() {
        let named: BTreeSet<String> = now_view
            .whole
            .iter()
            .map(|(_, r)| r)
            .chain(now_view.incomplete.iter().map(|(_, r, _)| r))
            .flat_map(|r| r.packs.iter().cloned())
            .collect();
        sweep(off, &named, grace, now, &mut out)?;
    } else {
        tracing::error!(event = "offsite.sweep_refused", objects = ?now_view.bad, "no pack deleted: object(s) under snapshots/ could not be read, and the packs they name cannot be known");
        out.sweep_refused = now_view.bad.clone();
    }
    // The local record of pushes follows the remote; what was pruned from
    // here is no longer "pushed from here".
    let mut fresh = Cache::from_records(&off.marker.remote_id, &now_view.whole);
    fresh.pushed_here = Cache::saved(store)
        .filter(|c| c.remote_id == off.marker.remote_id)
        .map(|c| c.pushed_here)
        .unwrap_or_default();
    for id in &forget {
        fresh.pushed_here.remove(id);
    }
    fresh.bad_objects = now_view.bad;
    fresh.checked = Some(super::cache::Checked {
        at: now,
        failed: None,
    });
    fresh.note_lost(store);
    fresh.save(store)?;
    Ok(out)
}

fn candidates(records: &[(String, Record)]) -> Vec<Candidate> {
    records
        .iter()
        .map(|(_, r)| {
            let chunks = r.chunks.iter().map(|(h, l)| (h.clone(), l.len)).collect();
            Candidate::of(&r.manifest, chunks, false)
        })
        .collect()
}

/// Dooms the packs no record names, deletes those doomed for `grace`.
fn sweep(
    off: &Offsite,
    named: &BTreeSet<String>,
    grace: std::time::Duration,
    now: DateTime<Utc>,
    out: &mut RemotePruned,
) -> Result<(), OffsiteError> {
    let mut doomed = read_doomed(off)?;
    let packs = off.remote.list(PACKS)?;
    let grace = chrono::TimeDelta::from_std(grace).unwrap_or(chrono::TimeDelta::hours(1));
    let mut next = Doomed::default();
    for p in packs {
        let object = format!("{PACKS}/{}", p.name);
        if named.contains(&object) {
            continue;
        }
        match doomed.since.remove(&object) {
            Some(t) if now - t >= grace => {
                off.remote.delete(&object)?;
                out.packs_deleted += 1;
                out.bytes_freed += p.size;
            }
            Some(t) => {
                next.since.insert(object, t);
            }
            None => {
                next.since.insert(object, now);
                out.packs_doomed += 1;
            }
        }
    }
    let body = serde_json::to_vec(&next).expect("doomed serializes");
    off.remote
        .put_overwrite(DOOMED, off.sealer.seal(DOOMED, &body))
}

fn read_doomed(off: &Offsite) -> Result<Doomed, OffsiteError> {
    match off.remote.get(DOOMED)? {
        None => Ok(Doomed::default()),
        Some(sealed) => {
            let plain = off.sealer.open(DOOMED, &sealed)?;
            serde_json::from_slice(&plain).map_err(|e| OffsiteError::BadRecord {
                object: DOOMED.into(),
                reason: e.to_string(),
            })
        }
    }
}
