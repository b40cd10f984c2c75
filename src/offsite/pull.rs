//! Bringing snapshots back from offsite: the remote's records
//! ([`remote_snapshots`]), and [`pull`], which copies one snapshot into the
//! local store — created if absent, as on a new machine — so that the usual
//! restore takes over. Every pack is opened (a wrong key or an altered byte
//! fails there, naming the object) and every chunk hash-checked before the
//! store's batch commits; on any failure nothing is committed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::cache::View;
use super::layout::Record;
use super::push::PACK_TARGET;
use super::{Offsite, OffsiteError};
use crate::store::{Compressors, Store, StoreLock};

/// The most plain bytes a pack may unpack to (a guard against a hostile
/// object, not a limit real packs come near).
const MAX_PACK_PLAIN: usize = (PACK_TARGET as usize) * 4;

/// The chunks wanted from one pack: hash, offset and length.
type Wanted<'a> = Vec<(&'a str, u64, u64)>;

/// What a pull did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Pulled {
    pub id: String,
    /// The local store had it already.
    pub already: bool,
    pub packs: usize,
    pub bytes: u64,
}

/// Every snapshot offsite: the records that are whole (oldest first), the
/// incomplete ones and the objects that are not records.
pub fn remote_snapshots(off: &Offsite) -> Result<View, OffsiteError> {
    View::current(off)
}

/// Copies the snapshot of `record` into `store`.
pub fn pull(
    store: &Store,
    lock: &StoreLock,
    off: &Offsite,
    record: &Record,
) -> Result<Pulled, OffsiteError> {
    let m = &record.manifest;
    let mut pulled = Pulled {
        id: m.id.to_string(),
        already: false,
        packs: 0,
        bytes: 0,
    };
    if store.manifest_exists(&m.id) {
        pulled.already = true;
        return Ok(pulled);
    }
    // Chunk hash → location, for the chunks the local store lacks, by pack.
    let mut by_pack: BTreeMap<u32, Wanted> = BTreeMap::new();
    let mut wanted = BTreeSet::new();
    for h in m.chunk_hashes() {
        if wanted.insert(h) && !store.chunk_path(h).exists() {
            let l = &record.chunks[h];
            by_pack
                .entry(l.pack)
                .or_default()
                .push((h, l.offset, l.len));
        }
    }
    let batch = store.batch(lock);
    let mut z = Compressors::default();
    let packs: Vec<(u32, Wanted)> = by_pack.into_iter().collect();
    for group in packs.chunks(super::backend::PARALLEL) {
        let names: Vec<String> = group
            .iter()
            .map(|(i, _)| record.packs[*i as usize].clone())
            .collect();
        let bodies = off.remote.get_all(&names)?;
        for ((name, sealed), (_, chunks)) in names.iter().zip(bodies).zip(group) {
            pulled.bytes += sealed.len() as u64;
            pulled.packs += 1;
            let plain = unpack(off, name, &sealed)?;
            for (hash, offset, len) in chunks {
                let data = slice(name, &plain, hash, *offset, *len)?;
                batch
                    .put(data, &mut z)
                    .map_err(|e| OffsiteError::Layout(e.to_string()))?;
            }
        }
    }
    batch
        .commit()
        .map_err(|e| OffsiteError::Layout(e.to_string()))?;
    store
        .commit_manifest(lock, m)
        .map_err(|e| OffsiteError::Layout(e.to_string()))?;
    tracing::info!(event = "offsite.pulled", id = %m.id, packs = pulled.packs, bytes = pulled.bytes, "snapshot pulled from offsite");
    Ok(pulled)
}

fn unpack(off: &Offsite, name: &str, sealed: &[u8]) -> Result<Vec<u8>, OffsiteError> {
    let packed = off.sealer.open(name, sealed)?;
    zstd::bulk::decompress(&packed, MAX_PACK_PLAIN).map_err(|e| OffsiteError::BadRecord {
        object: name.to_string(),
        reason: format!("pack does not decompress: {e}"),
    })
}

/// One chunk's bytes out of a pack, checked against its hash.
fn slice<'a>(
    pack: &str,
    plain: &'a [u8],
    hash: &str,
    offset: u64,
    len: u64,
) -> Result<&'a [u8], OffsiteError> {
    let bad = |reason: String| OffsiteError::BadRecord {
        object: pack.to_string(),
        reason,
    };
    let end = offset.checked_add(len).filter(|e| *e <= plain.len() as u64);
    let data = end
        .map(|e| &plain[offset as usize..e as usize])
        .ok_or_else(|| bad(format!("chunk {hash} lies outside the pack")))?;
    if blake3::hash(data).to_hex().as_str() != hash {
        return Err(bad(format!("chunk {hash} does not match its hash")));
    }
    Ok(data)
}
