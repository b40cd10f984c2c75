//! The prime: brings the mirror up to date with the live file outside any
//! window, when the headers written since the mirror's were not all seen.
//!
//! The chain must be running first: the prime reads the live header and
//! its block map (so that the chain holds them), then compares the live
//! file with the mirror block by block and writes the blocks that differ —
//! bytes read while the app writes, which need not be consistent. Every
//! block written after that header was, is one its marks or a later
//! header's mark, and the attempt that follows reads those again in its
//! short window; every other block the prime read is the live file's for
//! good (docs/ARCHITECTURE.md, "The chain"). Blocks that already agreed
//! keep the mirror's snapshot as their base; those it wrote are hashed
//! afresh.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::chain::{Chain, Marks, identity, read_settled};
use super::incremental::Basis;
use super::mirror::{self, Mirror};
use super::outcome::{AttemptError, io_err};
use crate::database::duckfile::HEADER_REGION;
use crate::store::Store;

/// How many blocks are compared at a time.
const SEGMENT_BLOCKS: u64 = 32;

/// Primes the mirror of `store` from `file` (the live database at `db`).
/// `was` is the mirror as its record said at the start of the capture; its
/// snapshot stays the base where the prime writes nothing. Adds the blocks
/// it wrote to `touched`.
pub(super) fn prime(
    store: &Store,
    file: &File,
    db: &Path,
    chain: &Chain,
    was: Option<&Mirror>,
    touched: &mut BTreeSet<u64>,
) -> Result<Basis, AttemptError> {
    let id = identity(file).map_err(io_err("stat", db))?;
    let Some(map) = read_settled(file, db) else {
        return Err(AttemptError::Unstable(
            "the block map could not be read whole (checkpoints were writing it)".into(),
        ));
    };
    chain.observe(id, &map);
    let out = mirror::open_for_writing(store)?;
    let path = mirror::file(store);
    let size = file.metadata().map_err(io_err("stat", db))?.len();
    let bs = map.block_size;
    let seg = (bs * SEGMENT_BLOCKS) as usize;
    let (mut a, mut b) = (vec![0u8; seg], vec![0u8; seg]);
    // The header region is always read again in the window.
    let mut at = HEADER_REGION.min(size);
    while at < size {
        let n = ((size - at) as usize).min(seg);
        let got = crate::store::read_full_at(file, &mut a[..n], at).map_err(io_err("read", db))?;
        let had =
            crate::store::read_full_at(&out, &mut b[..n], at).map_err(io_err("read", &path))?;
        let mut off = 0;
        while off < got {
            let end = (off + bs as usize).min(got);
            if end > had || a[off..end] != b[off..end] {
                out.write_all_at(&a[off..end], at + off as u64)
                    .map_err(io_err("write", &path))?;
                touched.insert((at + off as u64 - HEADER_REGION) / bs);
            }
            off = end;
        }
        if got < n {
            // The file shrank meanwhile: the window reads what is there.
            break;
        }
        at += n as u64;
    }
    out.set_len(size).map_err(io_err("truncate", &path))?;
    let same = was.filter(|m| (m.record.dev, m.record.ino) == id);
    tracing::debug!(
        event = "capture.primed",
        read_bytes = size,
        written_blocks = touched.len(),
        "the mirror was brought up to date outside the window"
    );
    Ok(Basis {
        path,
        base: same.map(|m| m.base.clone()),
        file: id,
        since: Marks::of(&map),
        // Every block was just compared with the live file, and the ones
        // that differed rewritten: the mirror is known whole as of now
        // (what the chain marks is read again in the window).
        compared_at: Some(chrono::Utc::now()),
        primed_bytes: size,
        quiet: None,
    })
}
