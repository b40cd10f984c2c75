//! The archive's records as one hash-linked chain. Each record (format 3)
//! names the one recorded before it — its id, and once that one closed,
//! the hash of its history ([`Generation::history_hash`], which covers its
//! own link in turn); `archive/head` names the newest record; and `prune`
//! leaves a [`Tombstone`] with the hash of each record it removes. Reading
//! each record alone cannot tell that one was deleted, or that a closed one
//! was altered or put back from an older copy: the chain can. Pure: the
//! caller reads the files ([`super::disk::Archive::generations`]).
//!
//! What it cannot tell: a record and every link to it rewritten together
//! (nothing here is signed), nor a record deleted together with the head
//! while it was the newest.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::record::Generation;
use crate::id::SnapshotId;

/// What `prune` leaves of a record it removed: enough for the next record's
/// link to still check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    pub id: SnapshotId,
    /// Its history's hash, when it had closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub removed_at: DateTime<Utc>,
}

impl Tombstone {
    /// The tombstone of `g`, removed at `now`.
    pub fn of(g: &Generation, now: DateTime<Utc>) -> Tombstone {
        Tombstone {
            id: g.id.clone(),
            hash: g.closed.is_some().then(|| g.history_hash()),
            removed_at: now,
        }
    }
}

/// A break in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// Neither a record nor a tombstone for a generation that a record
    /// names as the one before it (`named_by`), or that the head names
    /// (`named_by` is `None`).
    Missing {
        id: SnapshotId,
        named_by: Option<SnapshotId>,
    },
    /// The record of `id` (or its tombstone) does not have the history the
    /// next record (`named_by`) recorded for it.
    Altered {
        id: SnapshotId,
        named_by: SnapshotId,
    },
}

impl Broken {
    /// The generation whose record is missing or altered.
    pub fn id(&self) -> &SnapshotId {
        match self {
            Broken::Missing { id, .. } | Broken::Altered { id, .. } => id,
        }
    }

    /// Why, in words.
    pub fn reason(&self) -> String {
        match self {
            Broken::Missing {
                named_by: Some(n), ..
            } => format!(
                "missing: the record of generation {n} names it as the one before it, and prune did not remove it"
            ),
            Broken::Missing { named_by: None, .. } => {
                "missing: archive/head names it as the newest record".to_string()
            }
            Broken::Altered { named_by, .. } => format!(
                "it is not the history generation {named_by} recorded for it (altered after it closed, or an older copy)"
            ),
        }
    }
}

/// Every break in the chain `gens` (the records read), `tombstones` and
/// `head` form, in the order of `gens`.
pub fn check(
    gens: &[Generation],
    tombstones: &[Tombstone],
    head: Option<&SnapshotId>,
) -> Vec<Broken> {
    let by_id: HashMap<&SnapshotId, &Generation> = gens.iter().map(|g| (&g.id, g)).collect();
    let gone: HashMap<&SnapshotId, &Tombstone> = tombstones.iter().map(|t| (&t.id, t)).collect();
    let mut out = Vec::new();
    for g in gens {
        let Some(l) = &g.prev else { continue };
        let had = match (by_id.get(&l.id), gone.get(&l.id)) {
            (Some(p), _) => Some(l.hash.is_none() || Some(p.history_hash()) == l.hash),
            (None, Some(t)) => Some(l.hash.is_none() || t.hash.is_none() || t.hash == l.hash),
            (None, None) => None,
        };
        match had {
            Some(true) => {}
            Some(false) => out.push(Broken::Altered {
                id: l.id.clone(),
                named_by: g.id.clone(),
            }),
            None => out.push(Broken::Missing {
                id: l.id.clone(),
                named_by: Some(g.id.clone()),
            }),
        }
    }
    if let Some(h) = head
        && !by_id.contains_key(h)
        && !gone.contains_key(h)
    {
        out.push(Broken::Missing {
            id: h.clone(),
            named_by: None,
        });
    }
    out
}

/// The ids a record's link or the head names: the tombstones worth
/// keeping.
pub fn named<'a>(
    gens: &'a [Generation],
    head: Option<&'a SnapshotId>,
) -> impl Iterator<Item = &'a SnapshotId> {
    gens.iter()
        .filter_map(|g| g.prev.as_ref().map(|l| &l.id))
        .chain(head)
}
