//! `verify`: every chunk of one or all snapshots re-hashed; `--deep`
//! reassembles each and has DuckDB read every column.

use std::collections::HashMap;
use std::fs;

use serde::Serialize;

use crate::database::check;
use crate::database::duckfile::Header;
use crate::id::SnapshotId;
use crate::ops::context::{Ctx, OpError, open_store};
use crate::ops::progress::{Event, Progress, SnapshotCheck};
use crate::ops::restore::compare_tables;
use crate::ops::select::{Selector, resolve_in};
use crate::store::{CheckStatus, Manifest, Store, StoreError, StoreLock};

/// Result of `verify`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct VerifyReport {
    pub disabled: bool,
    pub checked: usize,
    pub problems: usize,
    pub snapshots: Vec<SnapshotCheck>,
    /// The WAL archive (continuous archiving), when verifying everything
    /// and there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveCheck>,
}

/// What `verify` found in the WAL archive.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ArchiveCheck {
    pub generations: usize,
    pub segments: usize,
    /// Each damaged generation or unreadable record, named.
    pub problems: Vec<String>,
}

/// Checks every generation of the store's WAL archive.
fn check_archive(ctx: &Ctx, store: &Store) -> Result<Option<ArchiveCheck>, OpError> {
    let archive = crate::archive::Archive::of(store, ctx.config.store.compression_level);
    if !archive.exists() {
        return Ok(None);
    }
    let (gens, bad) = archive.generations()?;
    let mut problems: Vec<String> = bad
        .into_iter()
        .map(|b| format!("archive record {}: {}", b.file, b.reason))
        .collect();
    for g in &gens {
        if let Err(e) = crate::archive::points::check(&archive, g) {
            tracing::error!(event = "verify.archive_problem", generation = %g.id, error = %e, "archived WAL failed verification");
            problems.push(e);
        }
    }
    Ok(Some(ArchiveCheck {
        generations: gens.len(),
        segments: gens.iter().map(|g| g.segments.len()).sum(),
        problems,
    }))
}

/// What `verify` is asked for (the CLI's arguments and the wire's fields).
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// One snapshot (default: all).
    #[serde(default)]
    pub id: Option<String>,
    /// Also reassemble each snapshot and have DuckDB read every column.
    #[arg(long)]
    #[serde(default)]
    pub deep: bool,
}

/// Re-hashes every chunk of one snapshot (`id`) or of all; `deep` also
/// reassembles each and reads every column with DuckDB.
pub fn verify(ctx: &Ctx, req: &VerifyRequest) -> Result<VerifyReport, OpError> {
    verify_with(ctx, req, &Progress::none())
}

/// [`verify`], reporting the bytes checked and each snapshot's result as it
/// finishes to `progress`.
pub fn verify_with(
    ctx: &Ctx,
    req: &VerifyRequest,
    progress: &Progress,
) -> Result<VerifyReport, OpError> {
    super::context::run_job(ctx, crate::monitor::Job::Verify, false, || {
        let report = check_all(ctx, req, progress)?;
        if !report.disabled {
            record_damage(ctx, &report);
        }
        Ok(report)
    })
}

/// A verify in cloud mode did no work; one that found a damaged snapshot
/// failed (naming each), though the call succeeded.
impl super::context::JobResult for VerifyReport {
    fn ran(&self) -> bool {
        !self.disabled
    }

    fn found_failure(&self) -> Option<String> {
        let bad: Vec<String> = self
            .snapshots
            .iter()
            .filter(|s| !s.ok)
            .map(|s| format!("snapshot {}: {}", s.id, damage_text(s)))
            .chain(
                self.archive
                    .iter()
                    .flat_map(|a| a.problems.iter().map(|p| format!("archive: {p}"))),
            )
            .collect();
        (!bad.is_empty()).then(|| bad.join("; "))
    }
}

/// Records in the health record which snapshots `report` found damaged and
/// which whole (the run itself is recorded by [`super::context::run_job`]).
pub(crate) fn record_damage(ctx: &Ctx, report: &VerifyReport) {
    use crate::monitor::state::Damage;
    let now = chrono::Utc::now();
    let bad: Vec<Damage> = report
        .snapshots
        .iter()
        .filter(|s| !s.ok)
        .map(|s| Damage {
            id: s.id.clone(),
            at: now,
            message: damage_text(s),
        })
        .collect();
    crate::monitor::record(ctx, |h| {
        h.damaged
            .retain(|d| !report.snapshots.iter().any(|s| s.id == d.id));
        h.damaged.extend(bad);
        h.verified(report.snapshots.iter().map(|s| s.id.as_str()));
    });
}

/// What is wrong with one snapshot, naming chunks.
fn damage_text(s: &SnapshotCheck) -> String {
    let mut parts = Vec::new();
    if !s.missing_chunks.is_empty() {
        parts.push(format!("missing chunk(s) {}", s.missing_chunks.join(", ")));
    }
    if !s.corrupt_chunks.is_empty() {
        parts.push(format!("corrupt chunk(s) {}", s.corrupt_chunks.join(", ")));
    }
    parts.extend(s.error.clone());
    if parts.is_empty() {
        parts.push("failed verification".into());
    }
    parts.join("; ")
}

pub(crate) fn check_all(
    ctx: &Ctx,
    req: &VerifyRequest,
    progress: &Progress,
) -> Result<VerifyReport, OpError> {
    let deep = req.deep;
    let selector = req.id.as_deref().map(Selector::parse).transpose()?;
    let empty = |disabled| VerifyReport {
        disabled,
        checked: 0,
        problems: 0,
        snapshots: Vec::new(),
        archive: None,
    };
    if ctx.detection.is_cloud() {
        return Ok(empty(true));
    }
    if !crate::store::Store::exists_at(&ctx.config.store.dir) {
        return match req.id.as_deref() {
            Some(given) => Err(OpError::NoMatch {
                given: format!("{given:?}"),
                store: ctx.config.store.dir.clone(),
                hint: "; there is no store yet (no snapshot was taken)".into(),
            }),
            None => Ok(empty(false)),
        };
    }
    let store = open_store(ctx, false)?;
    let id = match (&selector, req.id.as_deref()) {
        (Some(sel), Some(given)) => Some(resolve_in(&store, sel, given)?),
        _ => None,
    };
    // Lists the chunk directories without following links: a link there is
    // damage to report, not a place to read from.
    store.chunk_set()?;
    let mut results = Vec::new();
    let manifests = verify_targets(&store, id.as_ref(), &mut results)?;
    let lock = if deep { Some(store.lock()?) } else { None };
    progress.emit(Event::Begin {
        total: work_bytes(&manifests, deep),
    });
    // A chunk shared by many snapshots is read once.
    let mut seen: HashMap<String, Result<(), bool>> = HashMap::new();
    for m in &manifests {
        let mut r = check_chunks(&store, m, &mut seen, progress);
        if let Some(lock) = lock.as_ref().filter(|_| r.ok) {
            match deep_check(&store, lock, m)? {
                Ok(msg) => r.deep = Some(msg),
                Err(e) => {
                    r.ok = false;
                    r.error = Some(e);
                }
            }
        }
        if !r.missing_chunks.is_empty() && id.is_none() && !store.manifest_exists(&m.id) {
            // A prune beside us removed this snapshot (and then its chunks)
            // after we listed it: that is no damage.
            tracing::debug!(event = "verify.removed_meanwhile", id = %m.id, "snapshot removed while it was being verified");
            continue;
        }
        if deep {
            progress.emit(Event::Bytes(m.db_size()));
        }
        progress.emit(Event::Checked(&r));
        results.push(r);
    }
    let archive = if id.is_none() {
        check_archive(ctx, &store)?
    } else {
        None
    };
    let problems =
        results.iter().filter(|r| !r.ok).count() + archive.as_ref().map_or(0, |a| a.problems.len());
    for r in results.iter().filter(|r| !r.ok) {
        tracing::error!(event = "verify.problem", id = %r.id, missing = r.missing_chunks.len(), corrupt = r.corrupt_chunks.len(), error = r.error.as_deref(), "snapshot failed verification");
    }
    Ok(VerifyReport {
        disabled: false,
        checked: results.len(),
        problems,
        snapshots: results,
        archive,
    })
}

/// The bytes `verify` reads: every distinct chunk once, plus each database
/// reassembled and read by DuckDB with `deep`.
fn work_bytes(manifests: &[Manifest], deep: bool) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let chunks: u64 = manifests
        .iter()
        .flat_map(|m| m.files.iter().flat_map(|f| f.chunks.iter()))
        .filter(|c| seen.insert(c.hash.as_str()))
        .map(|c| c.len)
        .sum();
    let dbs: u64 = manifests.iter().map(Manifest::db_size).sum();
    chunks + if deep { dbs } else { 0 }
}

/// A failed check of a snapshot that has no chunks to look at.
fn unusable(id: String, error: String) -> SnapshotCheck {
    SnapshotCheck {
        id,
        ok: false,
        chunks: 0,
        missing_chunks: Vec::new(),
        corrupt_chunks: Vec::new(),
        deep: None,
        error: Some(error),
    }
}

/// The manifests `verify` checks (one, or all); those that fail the
/// validation restore applies (`load_manifest`) go into `results` as
/// problems, so verify fails exactly what restore would refuse.
fn verify_targets(
    store: &Store,
    id: Option<&SnapshotId>,
    results: &mut Vec<SnapshotCheck>,
) -> Result<Vec<Manifest>, OpError> {
    let Some(id) = id else {
        let (ms, bad) = store.manifests()?;
        for b in bad {
            results.push(unusable(
                b.file.trim_end_matches(".json").to_string(),
                b.reason,
            ));
        }
        return Ok(ms);
    };
    match store.load_manifest(id) {
        Ok(m) => Ok(vec![m]),
        Err(StoreError::BadManifest { reason, .. }) => {
            results.push(unusable(
                id.to_string(),
                format!("manifest unusable: {reason}"),
            ));
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// Re-hashes every chunk `m` names (`seen` remembers chunks already read:
/// `Err(true)` missing, `Err(false)` corrupt).
fn check_chunks(
    store: &Store,
    m: &Manifest,
    seen: &mut HashMap<String, Result<(), bool>>,
    progress: &Progress,
) -> SnapshotCheck {
    let mut r = SnapshotCheck {
        id: m.id.to_string(),
        ok: true,
        chunks: 0,
        missing_chunks: Vec::new(),
        corrupt_chunks: Vec::new(),
        deep: None,
        error: None,
    };
    for c in m.files.iter().flat_map(|f| f.chunks.iter()) {
        r.chunks += 1;
        let res = seen
            .entry(c.hash.clone())
            .or_insert_with(|| match store.read_chunk(c) {
                Ok(_) => {
                    progress.emit(Event::Bytes(c.len));
                    Ok(())
                }
                Err(StoreError::ChunkMissing { .. }) => Err(true),
                Err(_) => Err(false),
            });
        let list = match res {
            Ok(()) => continue,
            Err(true) => &mut r.missing_chunks,
            Err(false) => &mut r.corrupt_chunks,
        };
        if !list.contains(&c.hash) {
            list.push(c.hash.clone());
        }
    }
    r.ok = r.missing_chunks.is_empty() && r.corrupt_chunks.is_empty();
    r
}

/// `--deep`: reassembles `m` in staging, has DuckDB open it and read every
/// column, and compares tables and row counts. The inner result is the
/// snapshot's verdict; the outer one an error of the store itself.
fn deep_check(
    store: &Store,
    lock: &StoreLock,
    m: &Manifest,
) -> Result<Result<String, String>, OpError> {
    let dir = store.staging_dir(lock, "verify")?;
    let outcome = (|| -> Result<String, String> {
        let db = store
            .reassemble(m, &dir, "db.duckdb")
            .map_err(|e| e.to_string())?;
        let header = Header::read_path(&db).map_err(|e| e.to_string())?;
        let got = check::check_copy(&db, &header, true).map_err(|e| e.to_string())?;
        compare_tables(m, &got)?;
        Ok(match got.status {
            CheckStatus::Verified => format!(
                "opened and read every column of {} table(s)",
                got.tables.len()
            ),
            CheckStatus::NotVerified => got.reason.unwrap_or_default(),
        })
    })();
    let _ = fs::remove_dir_all(&dir);
    Ok(outcome)
}
