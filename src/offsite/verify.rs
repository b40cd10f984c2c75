//! `offsite verify [--sample PERCENT]`: downloads and checks what is
//! offsite — every record (opened and validated), and packs: all of them,
//! or a rolling sample, so that repeated runs cover the whole remote (the
//! cursor lives in the local cache directory). A pack is checked by
//! opening it (the AEAD tag or checksum) and hashing every chunk a record
//! places in it. Problems are also: an object under `snapshots/` that is
//! not a usable record, a record naming a pack that is gone, and a
//! snapshot this machine pushed, still in the local store, that the remote
//! no longer holds whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::backend::Found;
use super::layout::Loc;
use super::pull::remote_snapshots;
use super::{Offsite, OffsiteError};
use crate::store::Store;

/// What `offsite verify` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteVerified {
    pub snapshots: usize,
    pub packs_total: usize,
    pub packs_checked: usize,
    pub chunks_checked: usize,
    /// One line per problem, naming the object.
    pub problems: Vec<String>,
}

/// Checks every record and `percent` of the packs (at least one), starting
/// where the previous sample stopped.
pub fn verify(store: &Store, off: &Offsite, percent: u32) -> Result<RemoteVerified, OffsiteError> {
    // The check of the local record against the bucket, first: it names
    // what this machine pushed and the bucket lost.
    let (cache, _) = super::cache::Cache::current(store, off)?;
    let view = remote_snapshots(off)?;
    let mut problems = listed_problems(&view, &cache);
    let records = view.whole;
    // Pack → every chunk some record places in it.
    let mut packs: BTreeMap<String, BTreeMap<String, Loc>> = BTreeMap::new();
    for (_, r) in &records {
        for (h, l) in &r.chunks {
            packs
                .entry(r.packs[l.pack as usize].clone())
                .or_default()
                .insert(h.clone(), l.clone());
        }
    }
    let names: Vec<&String> = packs.keys().collect();
    let take = (names.len() * percent.min(100) as usize)
        .div_ceil(100)
        .max(1)
        .min(names.len());
    let cursor_file = super::cache_path(store.root()).with_file_name("verify-cursor");
    let start = std::fs::read_to_string(&cursor_file)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let chosen: Vec<String> = (0..take)
        .map(|i| names[(start + i) % names.len()].clone())
        .collect();
    let mut chunks_checked = 0;
    for group in chosen.chunks(super::backend::PARALLEL) {
        for (name, found) in group.iter().zip(off.remote.get_found(group)?) {
            match found {
                Found::Bytes(sealed) => {
                    chunks_checked += check_pack(off, name, &sealed, &packs[name], &mut problems)
                }
                Found::Gone => problems.push(format!("offsite object {name} is gone")),
                Found::NotAnObject(why) => {
                    problems.push(format!("offsite object {name} is not an object: {why}"))
                }
            }
        }
    }
    if !names.is_empty() {
        let _ = store.write_atomic(
            &cursor_file,
            ((start + take) % names.len()).to_string().as_bytes(),
        );
    }
    for p in &problems {
        tracing::error!(event = "offsite.verify_problem", problem = %p, "offsite verification found a problem");
    }
    Ok(RemoteVerified {
        snapshots: records.len(),
        packs_total: names.len(),
        packs_checked: chosen.len(),
        chunks_checked,
        problems,
    })
}

/// What the listing and the records show without reading a pack: objects
/// that are not records, records naming a pack that is gone, snapshots
/// pushed from here whose record is gone.
fn listed_problems(view: &super::cache::View, cache: &super::cache::Cache) -> Vec<String> {
    let mut problems = view.bad.clone();
    for (object, r, missing) in &view.incomplete {
        problems.push(format!(
            "offsite record {object} (snapshot {}): pack(s) {} are gone: not restorable offsite",
            r.manifest.id,
            missing.join(", ")
        ));
    }
    for id in &cache.lost {
        if !view
            .incomplete
            .iter()
            .any(|(_, r, _)| r.manifest.id.as_str() == id)
        {
            problems.push(format!(
                "snapshot {id} was pushed from here and its record is gone from the remote (the next push sends it again)"
            ));
        }
    }
    problems
}

fn check_pack(
    off: &Offsite,
    name: &str,
    sealed: &[u8],
    chunks: &BTreeMap<String, Loc>,
    problems: &mut Vec<String>,
) -> usize {
    let plain = match off
        .sealer
        .open(name, sealed)
        .map_err(OffsiteError::from)
        .and_then(|p| {
            zstd::bulk::decompress(&p, (super::push::PACK_TARGET as usize) * 4).map_err(|e| {
                OffsiteError::BadRecord {
                    object: name.into(),
                    reason: format!("does not decompress: {e}"),
                }
            })
        }) {
        Ok(p) => p,
        Err(e) => {
            problems.push(e.to_string());
            return 0;
        }
    };
    let mut n = 0;
    for (hash, l) in chunks {
        let ok = l
            .offset
            .checked_add(l.len)
            .filter(|e| *e <= plain.len() as u64)
            .is_some_and(|e| {
                blake3::hash(&plain[l.offset as usize..e as usize])
                    .to_hex()
                    .as_str()
                    == hash
            });
        if !ok {
            problems.push(format!(
                "offsite object {name}: chunk {hash} is damaged or missing"
            ));
        }
        n += 1;
    }
    n
}
