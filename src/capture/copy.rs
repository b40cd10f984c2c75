//! The parallel copy: a file cut into chunks aligned to DuckDB blocks, one
//! worker per core hashing, compressing and storing them, the chunk list in
//! file order, and the file's manifest entry.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::outcome::{AttemptError, CaptureError, io_err};
use crate::capture::mapped::Mapped;
use crate::database::duckfile::{self, Header};
use crate::store::{
    ChunkBatch, ChunkRef, Compressors, FileEntry, FileHash, PutChunk, chunk_list_hash,
    read_full_at, workers,
};

/// Chunk size target for database runs and the WAL.
pub const CHUNK_TARGET: u64 = 256 * 1024;

/// Copies the side files a snapshot holds (`.wal`, `.wal.checkpoint`; see
/// [`crate::database::duckfile::SIDE_FILES`]) that exist and then the first `size` bytes of
/// the database into chunks, and, given a `staging` directory, into
/// `staging/db.duckdb` and its side files, so that DuckDB's check of the
/// staged copy opens exactly the captured set. Returns the entries,
/// database first.
///
/// `quiescent`: the caller's lock keeps writers out, so every file is read
/// through a memory map ([`Mapped`]) rather than copied into buffers.
/// `known`: per database chunk (in [`duckfile::db_chunk_bounds`] order),
/// one already in the store that these bytes are known to equal, which is
/// then neither read nor stored again (an incremental capture).
#[allow(clippy::too_many_arguments)]
pub(super) fn copy_files(
    batch: &ChunkBatch,
    file: &File,
    db: &Path,
    size: u64,
    header: &Header,
    staging: Option<&Path>,
    quiescent: bool,
    known: Option<&[Option<ChunkRef>]>,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<Vec<FileEntry>, AttemptError> {
    let map = |f: &File, len: u64, path: &Path| -> Result<Option<Mapped>, CaptureError> {
        if quiescent {
            Mapped::map(f, len).map_err(io_err("map", path))
        } else {
            Ok(None)
        }
    };
    let staged_db = staging.map(|d| d.join("db.duckdb"));
    let mut files = Vec::new();
    for side in duckfile::SIDE_FILES.iter().filter(|s| s.captured) {
        let path = duckfile::side_path(db, side.suffix);
        let Some(w) = open_optional(&path)? else {
            continue;
        };
        let len = w.metadata().map_err(io_err("stat", &path))?.len();
        let bounds = duckfile::fixed_chunk_bounds(len, CHUNK_TARGET);
        let mapped = map(&w, len, &path)?;
        let staged = staged_db
            .as_deref()
            .map(|d| duckfile::side_path(d, side.suffix));
        files.push(copy_chunks(
            batch,
            (&w, mapped.as_ref()),
            &path,
            side.role,
            &bounds,
            staged.as_deref(),
            None,
            new_chunks,
        )?);
    }
    let bounds = duckfile::db_chunk_bounds(size, header.block_size, CHUNK_TARGET);
    let mapped = map(file, size, db)?;
    files.insert(
        0,
        copy_chunks(
            batch,
            (file, mapped.as_ref()),
            db,
            duckfile::DB_ROLE,
            &bounds,
            staged_db.as_deref(),
            known,
            new_chunks,
        )?,
    );
    Ok(files)
}

pub(super) fn open_optional(p: &Path) -> Result<Option<File>, CaptureError> {
    match File::open(p) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("open", p)(e)),
    }
}

/// Copies `src` over `bounds` into chunks in the store, and into `dest`
/// when given (the staged copy DuckDB checks). One worker per core takes the
/// next chunk, reads it (each byte of the file is read once; from the map
/// when `src` comes with one), writes it to `dest` at its offset, and
/// hashes, compresses and stores it. A chunk `known` names is taken as it
/// is. The file's hash is then the chunk list's.
#[allow(clippy::too_many_arguments)]
fn copy_chunks(
    batch: &ChunkBatch,
    (src, map): (&File, Option<&Mapped>),
    src_path: &Path,
    role: &str,
    bounds: &[(u64, u64)],
    dest: Option<&Path>,
    known: Option<&[Option<ChunkRef>]>,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<FileEntry, AttemptError> {
    let known_at = |i: usize| known.and_then(|k| k.get(i)).and_then(Option::as_ref);
    let out = match dest {
        Some(d) => Some(File::create(d).map_err(io_err("create", d))?),
        None => None,
    };
    let n = bounds.len();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<Vec<(usize, PutChunk)>, AttemptError> {
        let mut z = Compressors::default();
        let mut buf = Vec::new();
        let mut done = Vec::new();
        let result = (|| {
            while !failed.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(start, end)) = bounds.get(i) else {
                    break;
                };
                if known_at(i).is_some() {
                    continue;
                }
                let shrank = || {
                    AttemptError::Unstable(format!("{} shrank during the copy", src_path.display()))
                };
                let data: &[u8] = match map {
                    Some(m) => m
                        .bytes()
                        .get(start as usize..end as usize)
                        .ok_or_else(shrank)?,
                    None => {
                        buf.resize((end - start) as usize, 0);
                        let got =
                            read_full_at(src, &mut buf, start).map_err(io_err("read", src_path))?;
                        if got < buf.len() {
                            return Err(shrank());
                        }
                        &buf
                    }
                };
                if let (Some(f), Some(d)) = (&out, dest) {
                    f.write_all_at(data, start).map_err(io_err("write", d))?;
                }
                done.push((i, batch.put(data, &mut z)?));
            }
            Ok(())
        })();
        if result.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        result.map(|()| done)
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let others: Vec<_> = (1..workers().min(n)).map(|_| s.spawn(worker)).collect();
        // This thread is a worker too.
        let mut results = vec![worker()];
        results.extend(
            others
                .into_iter()
                .map(|h| h.join().expect("chunk worker panicked")),
        );
        results
    });
    let puts = in_order(results, n, known)?;
    Ok(file_entry(role, puts, new_chunks))
}

/// The workers' chunks in file order, or the most telling error: a worker
/// that saw the file shrink (or failed) rather than one that merely stopped
/// because another failed.
fn in_order(
    results: Vec<Result<Vec<(usize, PutChunk)>, AttemptError>>,
    n: usize,
    known: Option<&[Option<ChunkRef>]>,
) -> Result<Vec<PutChunk>, AttemptError> {
    let mut slots: Vec<Option<PutChunk>> = (0..n)
        .map(|i| {
            known
                .and_then(|k| k.get(i))
                .and_then(Option::as_ref)
                .map(|chunk| PutChunk {
                    chunk: chunk.clone(),
                    new: false,
                    stored: 0,
                })
        })
        .collect();
    let mut first_error = None;
    for r in results {
        match r {
            Ok(done) => {
                for (i, put) in done {
                    slots[i] = Some(put);
                }
            }
            Err(e) => {
                if first_error.is_none() || matches!(e, AttemptError::Fatal(_)) {
                    first_error = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(slots
        .into_iter()
        .map(|p| p.expect("every chunk index was taken by a worker that succeeded"))
        .collect())
}

/// The manifest entry of a file stored as `puts`; notes the new chunks.
fn file_entry(role: &str, puts: Vec<PutChunk>, new_chunks: &mut HashMap<String, u64>) -> FileEntry {
    let mut size = 0;
    let mut chunks = Vec::with_capacity(puts.len());
    for put in puts {
        if put.new {
            new_chunks.insert(put.chunk.hash.clone(), put.stored);
        }
        size += put.chunk.len;
        chunks.push(put.chunk);
    }
    FileEntry {
        role: role.to_string(),
        size,
        hash: chunk_list_hash(&chunks).expect("chunk hashes are BLAKE3 hex"),
        hash_of: FileHash::ChunkList,
        chunks,
    }
}
