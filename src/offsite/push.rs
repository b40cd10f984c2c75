//! `offsite push`: every local snapshot the remote lacks, oldest first.
//! For each: the chunks no earlier push uploaded are packed (up to
//! [`PACK_TARGET`] plain bytes a pack, zstd, sealed) and uploaded
//! [`super::backend::PARALLEL`] at a time; then the snapshot's record — the
//! remote commit point, never visible before every pack it names.
//!
//! "Lacks" is the bucket's word, checked at the start of every push
//! ([`Cache::current`] lists the records and packs): a snapshot whose
//! record was deleted, or whose record names a pack that is gone, is sent
//! again — its missing chunks in new packs, its record replacing the
//! broken one.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cache::{Cache, Where};
use super::layout::{self, FORMAT, Loc, Record};
use super::{Offsite, OffsiteError};
use crate::store::{ChunkRef, Manifest, Store};

/// Plain bytes per pack: 64 chunks of 256 KiB. A 512 MB first push is ~32
/// packs instead of ~2000 chunk objects.
pub const PACK_TARGET: u64 = 16 << 20;

/// What a push did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Pushed {
    /// Snapshots that got a remote record, oldest first.
    pub snapshots: Vec<String>,
    /// Objects uploaded (packs and records) and their bytes.
    pub objects: usize,
    pub bytes: u64,
    /// Local snapshots the remote already had.
    pub already: usize,
}

/// Pushes every local snapshot the remote lacks.
pub fn push(
    store: &Store,
    off: &Offsite,
    grace: std::time::Duration,
) -> Result<Pushed, OffsiteError> {
    let (mut cache, listing) = Cache::current(store, off)?;
    let looked = std::time::Instant::now();
    let (mut manifests, _) = store
        .manifests()
        .map_err(|e| OffsiteError::Layout(e.to_string()))?;
    manifests.sort_by(|a, b| a.id.cmp(&b.id));
    let mut done = Pushed::default();
    let waiting = manifests
        .iter()
        .filter(|m| !cache.snapshots.contains_key(m.id.as_str()))
        .count();
    if waiting > 0 {
        tracing::info!(
            event = "offsite.push_started",
            snapshots = waiting,
            "offsite push started"
        );
    }
    for m in &manifests {
        if cache.snapshots.contains_key(m.id.as_str()) {
            done.already += 1;
            continue;
        }
        let replace = listing
            .records
            .contains(&layout::record_object(&off.sealer, m.id.as_str()));
        push_one(
            store,
            off,
            &mut cache,
            m,
            &mut done,
            (looked, grace),
            replace,
        )?;
        cache.pushed_here.insert(m.id.to_string());
        cache.lost.remove(m.id.as_str());
        cache.save(store)?;
        tracing::info!(event = "offsite.pushed", id = %m.id, objects = done.objects, bytes = done.bytes, "snapshot pushed offsite");
        done.snapshots.push(m.id.to_string());
    }
    Ok(done)
}

fn push_one(
    store: &Store,
    off: &Offsite,
    cache: &mut Cache,
    m: &Manifest,
    done: &mut Pushed,
    (looked, grace): (std::time::Instant, std::time::Duration),
    replace: bool,
) -> Result<(), OffsiteError> {
    let mut needed: Vec<&ChunkRef> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in m.files.iter().flat_map(|f| f.chunks.iter()) {
        if !cache.chunks.contains_key(&c.hash) && seen.insert(c.hash.as_str()) {
            needed.push(c);
        }
    }
    for group in pack_groups(&needed).chunks(super::backend::PARALLEL) {
        let mut objects = Vec::new();
        for chunks in group {
            let (name, sealed, places) = build_pack(store, off, chunks)?;
            for (hash, offset, len) in places {
                cache.chunks.insert(
                    hash,
                    Where {
                        pack: name.clone(),
                        offset,
                        len,
                    },
                );
            }
            done.bytes += sealed.len() as u64;
            objects.push((name, sealed));
        }
        done.objects += objects.len();
        off.remote.put_all(objects)?;
    }
    // A record naming packs this push did not upload must land within half
    // the prune grace of learning they exist (offsite/prune.rs says why).
    let reuses = m.chunk_hashes().any(|h| !seen.contains(h));
    if reuses && looked.elapsed() > grace / 2 {
        return Err(OffsiteError::Layout(format!(
            "this push took longer than half of offsite.prune_grace ({}); the next push re-reads the remote and goes on",
            crate::config::HumanDuration(grace)
        )));
    }
    let (object, sealed) = record_for(off, cache, m)?;
    done.bytes += sealed.len() as u64;
    done.objects += 1;
    if replace {
        // A record is listed under this snapshot's name, but the check
        // found it unusable or naming a pack that is gone.
        off.remote.put_overwrite(&object, sealed)?;
    } else {
        off.remote.put(&object, sealed)?;
    }
    cache.snapshots.insert(m.id.to_string(), object);
    Ok(())
}

/// `chunks` cut into runs of at most [`PACK_TARGET`] plain bytes.
fn pack_groups<'a>(chunks: &[&'a ChunkRef]) -> Vec<Vec<&'a ChunkRef>> {
    let mut groups: Vec<Vec<&ChunkRef>> = Vec::new();
    let mut size = 0;
    for c in chunks {
        if groups.is_empty() || size + c.len > PACK_TARGET {
            groups.push(Vec::new());
            size = 0;
        }
        size += c.len;
        groups.last_mut().expect("just pushed").push(c);
    }
    groups
}

/// One pack: its object name, sealed bytes, and where each chunk is in its
/// plain content. Every chunk is read (and hash-checked) from the store.
type Built = (String, Vec<u8>, Vec<(String, u64, u64)>);

fn build_pack(store: &Store, off: &Offsite, chunks: &[&ChunkRef]) -> Result<Built, OffsiteError> {
    let mut plain = Vec::new();
    let mut places = Vec::with_capacity(chunks.len());
    for c in chunks {
        let data = store
            .read_chunk(c)
            .map_err(|e| OffsiteError::Layout(e.to_string()))?;
        places.push((c.hash.clone(), plain.len() as u64, data.len() as u64));
        plain.extend_from_slice(&data);
    }
    let name = layout::pack_object(&off.sealer, blake3::hash(&plain).to_hex().as_str());
    let packed = zstd::bulk::compress(&plain, 1)
        .map_err(|e| OffsiteError::Layout(format!("compressing a pack: {e}")))?;
    let sealed = off.sealer.seal(&name, &packed);
    Ok((name, sealed, places))
}

/// Snapshot `m`'s record (every chunk's location from the cache) and its
/// object name.
fn record_for(
    off: &Offsite,
    cache: &Cache,
    m: &Manifest,
) -> Result<(String, Vec<u8>), OffsiteError> {
    let mut packs: Vec<String> = Vec::new();
    let mut index: BTreeMap<String, u32> = BTreeMap::new();
    let mut chunks = BTreeMap::new();
    for h in m.chunk_hashes() {
        let w = cache
            .chunks
            .get(h)
            .ok_or_else(|| OffsiteError::Layout(format!("chunk {h} was not uploaded")))?;
        let i = *index.entry(w.pack.clone()).or_insert_with(|| {
            packs.push(w.pack.clone());
            (packs.len() - 1) as u32
        });
        chunks.insert(
            h.to_string(),
            Loc {
                pack: i,
                offset: w.offset,
                len: w.len,
            },
        );
    }
    let record = Record {
        format: FORMAT,
        manifest: m.clone(),
        packs,
        chunks,
    };
    record.validate().map_err(OffsiteError::Layout)?;
    let object = layout::record_object(&off.sealer, m.id.as_str());
    let body = serde_json::to_vec(&record).expect("record serializes");
    let sealed = off.sealer.seal(&object, &body);
    Ok((object, sealed))
}
