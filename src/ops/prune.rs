//! `prune`: the retention plan applied (expired pins released), then the
//! chunks no snapshot names deleted.

use std::collections::HashMap;
use std::fs;

use chrono::Utc;
use serde::Serialize;

use crate::ops::context::{Ctx, OpError, open_store};
use crate::retention::{self, Candidate, Plan};
use crate::store::{Manifest, Store, StoreError, StoreLock};

/// Result of `prune`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PruneReport {
    pub disabled: bool,
    pub dry_run: bool,
    pub plan: Option<Plan>,
    pub removed: usize,
    /// Chunk files deleted and their bytes on disk.
    pub chunks_deleted: usize,
    pub bytes_freed: u64,
}

fn candidates(ctx: &Ctx, store: &Store, manifests: &[Manifest]) -> Vec<Candidate> {
    let bases = crate::ops::point::bases_in_window(ctx, store, Utc::now()).unwrap_or_else(|e| {
        // Unreadable archive: every snapshot any record names is kept.
        tracing::warn!(event = "prune.archive_unreadable", error = %e, "cannot read the WAL archive; keeping every snapshot it may need");
        manifests.iter().map(|m| m.id.clone()).collect()
    });
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let pushed = crate::offsite::cache::confirmed_ids(ctx.config.offsite.as_ref(), store);
    manifests
        .iter()
        .map(|m| {
            let chunks = m
                .chunk_hashes()
                .map(|h| {
                    let size = *sizes.entry(h.to_string()).or_insert_with(|| {
                        fs::metadata(store.chunk_path(h))
                            .map(|m| m.len())
                            .unwrap_or(0)
                    });
                    (h.to_string(), size)
                })
                .collect();
            let pending = pushed.as_ref().is_some_and(|p| !p.contains(m.id.as_str()));
            let mut c = Candidate::of(m, chunks, pending);
            c.base_of_commits = bases.contains(&m.id);
            c
        })
        .collect()
}

/// What `prune` is asked for (the CLI's arguments and the wire's fields).
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// Show what would be removed, and why, without removing anything.
    #[arg(long)]
    #[serde(default)]
    pub dry_run: bool,
}

/// Applies retention, then deletes chunks no manifest names.
pub fn prune(ctx: &Ctx, req: &PruneRequest) -> Result<PruneReport, OpError> {
    super::context::run_job(ctx, crate::monitor::Job::Prune, false, || apply(ctx, req))
}

/// A dry run, or a prune in cloud mode, did no work.
impl super::context::JobResult for PruneReport {
    fn ran(&self) -> bool {
        !self.dry_run && !self.disabled
    }
}

fn apply(ctx: &Ctx, req: &PruneRequest) -> Result<PruneReport, OpError> {
    let dry_run = req.dry_run;
    let empty = |disabled| PruneReport {
        disabled,
        dry_run,
        plan: None,
        removed: 0,
        chunks_deleted: 0,
        bytes_freed: 0,
    };
    if ctx.detection.is_cloud() {
        return Ok(empty(true));
    }
    if !crate::store::Store::exists_at(&ctx.config.store.dir) {
        return Ok(empty(false));
    }
    let store = open_store(ctx, false)?;
    let lock = store.lock()?;
    let (manifests, bad) = store.manifests()?;
    let plan = retention::plan(
        &candidates(ctx, &store, &manifests),
        &ctx.config.retention,
        Utc::now(),
    );
    if dry_run {
        return Ok(PruneReport {
            plan: Some(plan),
            ..empty(false)
        });
    }
    if !bad.is_empty() {
        // Chunks an unusable manifest names cannot be told apart from
        // garbage, and retention cannot weigh a snapshot it cannot read:
        // delete nothing, and say which manifests stopped it.
        let e = StoreError::GcRefused {
            manifests: bad
                .into_iter()
                .map(|b| format!("{} ({})", b.file, b.reason))
                .collect(),
        };
        tracing::error!(event = "prune.refused", error = %e, "prune refused");
        return Err(e.into());
    }
    for d in plan.forgotten() {
        if d.reasons.iter().any(|r| r.contains(retention::NOT_OFFSITE)) {
            tracing::error!(event = "prune.unpushed_removed", id = %d.id, "removing a snapshot that has not reached offsite yet: the size budget (retention.max_total_size) needs its space");
        }
    }
    let removed = remove_forgotten(&store, &plan)?;
    match crate::ops::point::expire(ctx, &store, Utc::now()) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            event = "prune.archive_expired",
            generations = n,
            "archived WAL older than the recovery window removed"
        ),
        Err(e) => {
            tracing::warn!(event = "prune.archive_failed", error = %e, "could not expire old archived WAL")
        }
    }
    release_expired_pins(&store, &lock, &manifests, &plan);
    // Delete before writing anything: on a full disk, the catalog rewrite
    // is what needs the space being freed (and it is rebuilt when stale).
    let (chunks_deleted, bytes_freed) = store.collect_garbage(&lock)?;
    if let Err(e) = store.rebuild_catalog() {
        tracing::warn!(event = "store.catalog_failed", error = %e, "could not rewrite the catalog; it will be rebuilt on next read");
    }
    tracing::info!(
        event = "prune.completed",
        removed,
        chunks_deleted,
        bytes_freed,
        "prune completed"
    );
    Ok(PruneReport {
        disabled: false,
        dry_run,
        plan: Some(plan),
        removed,
        chunks_deleted,
        bytes_freed,
    })
}

/// Removes the manifests of the snapshots the plan forgets (the commit
/// point of each removal), then makes the removals durable.
fn remove_forgotten(store: &Store, plan: &Plan) -> Result<usize, OpError> {
    let mut removed = 0;
    for d in plan.forgotten() {
        let path = store
            .root()
            .join("snapshots")
            .join(format!("{}.json", d.id));
        fs::remove_file(&path).map_err(|source| StoreError::Io {
            op: "remove manifest",
            path: path.clone(),
            source,
        })?;
        removed += 1;
        tracing::info!(event = "prune.removed", id = %d.id, reason = %d.reasons.join("; "), "snapshot removed by retention");
    }
    crate::store::fsync_dir(&store.root().join("snapshots"))?;
    Ok(removed)
}

/// Clears the pins whose time has passed on the snapshots retention keeps
/// (it already treated them as unpinned), so that `list` tells the truth. A
/// failure is logged: the plan does not depend on it.
fn release_expired_pins(store: &Store, lock: &StoreLock, manifests: &[Manifest], plan: &Plan) {
    let now = Utc::now();
    for d in plan.kept() {
        let Some(m) = manifests.iter().find(|m| m.id == d.id) else {
            continue;
        };
        if !(m.pinned && m.pinned_until.is_some_and(|t| t <= now)) {
            continue;
        }
        let mut m = m.clone();
        m.pinned = false;
        m.pinned_until = None;
        match store.commit_manifest(lock, &m) {
            Ok(()) => {
                tracing::info!(event = "prune.pin_expired", id = %m.id, "released an expired pin")
            }
            Err(e) => {
                tracing::warn!(event = "prune.pin_release_failed", id = %m.id, error = %e, "could not release an expired pin")
            }
        }
    }
}
