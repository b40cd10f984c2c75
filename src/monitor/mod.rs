//! Health as seen from outside the daemon: the kinds of work ([`job`]),
//! every job's result recorded in the store ([`state`]), the verdict
//! `status --check` gives ([`check`], pure), the Prometheus textfile
//! ([`metrics`]), and the one-line summary the daemon sends systemd as
//! `STATUS=`.
//!
//! [`note`] is called when an operation finishes, whoever runs it — by
//! `ops::context::run_job`, the one wrapper every operation runs in; a record
//! that cannot be written (no store yet, a read-only store) is logged at
//! debug level and never turns the job's own result into another one. A
//! metrics file that cannot be written is a failure of its own job
//! ([`Job::Metrics`]), so that `status --check` and `STATUS=` say the file
//! is stale.

pub mod check;
pub mod job;
pub mod metrics;
pub mod state;

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::environment::Ctx;
use crate::store::Store;
pub use job::Job;
pub use state::Health;

/// The store, when it exists and opens (no creation, no network).
fn store_of(ctx: &Ctx) -> Option<Store> {
    if ctx.detection.is_cloud() || !crate::store::Store::exists_at(&ctx.config.store.dir) {
        return None;
    }
    let store = Store::open(
        &ctx.config.store.dir,
        false,
        ctx.config.store.compression_level,
    )
    .ok()?;
    // A run with a config that names another database (a typo in
    // database.path, another project's config) is not this store's work:
    // its failure must not become the store's last error.
    let configured = &ctx.config.database.path;
    let db = crate::database::dbpath::real_path(configured).unwrap_or_else(|_| configured.clone());
    if let Ok(Some(owner)) = store.owner()
        && !owner.same_path(&db)
        && !(db.is_file() && owner.same_file(&db))
    {
        tracing::debug!(event = "monitor.foreign_run", store = %store.root().display(), owner = %owner.database.display(), database = %db.display(), "not recorded: the store belongs to another database");
        return None;
    }
    Some(store)
}

/// How a run of a job ended, as the health record counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(String),
    /// Not a run: a request refused for the caller's input, or cloud mode.
    NotARun,
}

/// Records how a run of `job` that started at `started` ended.
pub fn note(ctx: &Ctx, job: Job, started: Instant, outcome: Outcome) {
    let outcome = match outcome {
        Outcome::Done => Ok(started.elapsed()),
        Outcome::Failed(why) => Err(why),
        Outcome::NotARun => return,
    };
    record(ctx, |h| h.note(job, Utc::now(), outcome));
}

/// Applies `change` to the health record, then refreshes the metrics file.
pub fn record(ctx: &Ctx, change: impl FnOnce(&mut Health)) {
    let Some(store) = store_of(ctx) else {
        return;
    };
    match state::update(&store, change) {
        Ok(h) => refresh_metrics(ctx, &store, &h),
        Err(e) => {
            tracing::debug!(event = "monitor.record_failed", error = %e, "could not write the health record")
        }
    }
}

/// Rewrites `[monitor] metrics_file`, when set, and records the outcome
/// as a run of [`Job::Metrics`] when it failed, or succeeded after a
/// failure (not every success: that would double every record's writes).
pub fn refresh_metrics(ctx: &Ctx, store: &Store, h: &Health) {
    let Some(path) = &ctx.config.monitor.metrics_file else {
        return;
    };
    let started = Instant::now();
    let facts = store_facts(ctx, store);
    let result = metrics::write(path, &metrics::render(h, &facts, Utc::now()));
    let was_failing = h.jobs.get(&Job::Metrics).is_some_and(|r| r.failing());
    let outcome = match &result {
        Ok(()) if !was_failing => return,
        Ok(()) => Ok(started.elapsed()),
        Err(e) => {
            tracing::warn!(event = "monitor.metrics_failed", path = %path.display(), error = %e, "could not write the metrics file");
            Err(format!(
                "could not write the metrics file {}: {e}",
                path.display()
            ))
        }
    };
    if let Err(e) = state::update(store, |h| h.note(Job::Metrics, Utc::now(), outcome)) {
        tracing::debug!(event = "monitor.record_failed", error = %e, "could not write the health record");
    }
}

/// Counts, sizes, the newest snapshot and the offsite lag of `store`.
pub fn store_facts(ctx: &Ctx, store: &Store) -> metrics::StoreFacts {
    let catalog = store.catalog().unwrap_or_default();
    let (manifests, _) = store.manifests().unwrap_or_default();
    let mut seen = BTreeSet::new();
    let unique_bytes = manifests
        .iter()
        .flat_map(|m| m.files.iter().flat_map(|f| f.chunks.iter()))
        .filter(|c| seen.insert(c.hash.as_str()))
        .map(|c| c.len)
        .sum();
    let pushed = crate::offsite::cache::pushed_ids(ctx.config.offsite.as_ref(), store);
    let now = Utc::now();
    let offsite_lag = pushed.map(|p| {
        catalog
            .iter()
            .filter(|s| !p.contains(s.id.as_str()))
            .map(|s| (now - s.created_at).num_seconds())
            .max()
            .unwrap_or(0)
    });
    let archive = crate::archive::Archive::of(store, ctx.config.store.compression_level);
    let archive = (ctx.config.continuous.enabled || archive.exists())
        .then(|| crate::archive::state::read(store, ctx.config.store.compression_level).ok())
        .flatten()
        .map(|r| crate::archive::state::standing(&r, &ctx.config.database.path));
    metrics::StoreFacts {
        archive,
        snapshots: catalog.len(),
        store_bytes: store.stored_bytes().unwrap_or(0),
        unique_bytes,
        newest: catalog.iter().map(|s| s.created_at).max(),
        offsite_lag,
    }
}

/// The newest failure of a job the health record says is failing:
/// "metrics at 12:00:00 UTC: could not write …".
pub fn failing_job(ctx: &Ctx) -> Option<String> {
    let h = Health::load(&store_of(ctx)?);
    h.jobs
        .iter()
        .filter(|(_, r)| r.failing())
        .filter_map(|(j, r)| r.last_failure.as_ref().map(|f| (j, f)))
        .max_by_key(|(_, f)| f.at)
        .map(|(j, f)| {
            format!(
                "{} at {}: {}",
                j.name(),
                f.at.format("%H:%M:%S UTC"),
                f.message
            )
        })
}

/// Records that a snapshot job found the database unchanged since snapshot
/// `id` (`None`: the newest in the store) and stored nothing: protection
/// confirmed now, for the age check.
pub fn confirm(ctx: &Ctx, id: Option<String>) {
    let Some(id) = id.or_else(|| {
        let store = store_of(ctx)?;
        let catalog = store.catalog().ok()?;
        catalog
            .iter()
            .max_by_key(|s| (s.created_at, s.id.clone()))
            .map(|s| s.id.to_string())
    }) else {
        return;
    };
    record(ctx, |h| {
        h.confirmed = Some(state::Confirmed { at: Utc::now(), id })
    });
}

/// When the newest snapshot in the store was taken.
pub fn newest_snapshot(ctx: &Ctx) -> Option<DateTime<Utc>> {
    let store = store_of(ctx)?;
    store.catalog().ok()?.iter().map(|s| s.created_at).max()
}

/// The daemon's `STATUS=` line: "last snapshot 12m ago · next 14:00 UTC ·
/// last error: …".
pub fn status_line(
    last_snapshot: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
    last_error: Option<&str>,
    archive_error: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let mut parts = vec![match last_snapshot {
        Some(t) => format!("last snapshot {} ago", crate::when::span(now - t)),
        None => "no snapshot yet".into(),
    }];
    if let Some(n) = next {
        parts.push(format!("next {}", n.format("%Y-%m-%d %H:%M UTC")));
    }
    if let Some(e) = last_error {
        let e: String = e.chars().take(200).collect();
        parts.push(format!("last error: {e}"));
    }
    if let Some(e) = archive_error {
        let e: String = e.chars().take(200).collect();
        parts.push(format!("WAL archiving failing: {e}"));
    }
    parts.join(" · ")
}
