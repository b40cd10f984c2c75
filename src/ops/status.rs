//! `status`: mode, database, last snapshot, store, and what the daemon
//! reports about itself.

use std::fs;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::environment;
use crate::ops::context::{Ctx, OpError};
use crate::store::{Store, Summary};

/// What only a running daemon knows, for `status`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub next_run: Option<DateTime<Utc>>,
    /// The daemon's own last failure (a scheduled or requested snapshot
    /// that could not be taken, retention, a config reload); cleared when
    /// the same kind of work next succeeds. Requests it refused (bad
    /// arguments, an unknown id, a database in use) are the caller's
    /// answer, not the daemon's error.
    pub last_error: Option<LastError>,
    pub last_run: Option<String>,
}

/// One failure of the daemon's work, with when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LastError {
    pub at: DateTime<Utc>,
    /// The kind of work that failed.
    pub what: crate::monitor::Job,
    pub message: String,
}

/// Result of `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StatusReport {
    pub mode: crate::environment::Mode,
    pub mode_reason: String,
    pub signals_fired: Vec<String>,
    pub database: PathBuf,
    pub database_exists: bool,
    pub database_bytes: Option<u64>,
    pub store: PathBuf,
    pub snapshots: usize,
    pub store_bytes: u64,
    pub last_snapshot: Option<Summary>,
    pub last_snapshot_age_seconds: Option<i64>,
    /// From the daemon; `None` when no daemon runs (nothing is scheduled then).
    pub next_run: Option<DateTime<Utc>>,
    pub daemon: Option<DaemonInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
    /// With `[offsite]`: local snapshots not offsite yet (from the local
    /// record of pushes; no network), and how long the oldest has waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<OffsiteLag>,
    /// The newest failure of a job that has not succeeded since, from the
    /// store's health record — the one `status --check` reports, whoever
    /// ran the job (the daemon or a one-shot command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_error: Option<LastError>,
    /// Continuous archiving (`[continuous]`), when on or an archive exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous: Option<super::point::ContinuousStatus>,
}

/// How far offsite is behind.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct OffsiteLag {
    pub url: String,
    pub not_pushed: usize,
    pub lag_seconds: Option<i64>,
}

/// Mode and why, database, last snapshot and its age, next run, store size
/// and count; `daemon` adds what only the daemon knows.
pub fn status(ctx: &Ctx, daemon: Option<DaemonInfo>) -> Result<StatusReport, OpError> {
    let now = Utc::now();
    let db = &ctx.config.database.path;
    let meta = fs::metadata(db).ok().filter(|m| m.is_file());
    let cloud = ctx.detection.is_cloud();
    let mut pushed = None;
    let mut recorded_error = None;
    let mut continuous = None;
    let (summaries, store_bytes) =
        if !cloud && crate::store::Store::exists_at(&ctx.config.store.dir) {
            let store = Store::open(
                &ctx.config.store.dir,
                false,
                ctx.config.store.compression_level,
            )?;
            super::context::check_owner(ctx, &store)?;
            pushed = crate::offsite::cache::pushed_ids(ctx.config.offsite.as_ref(), &store);
            recorded_error = newest_failure(&crate::monitor::state::Health::load(&store));
            continuous = super::point::status(ctx, &store)?;
            if let Some(c) = continuous
                .as_mut()
                .filter(|c| c.enabled && daemon.is_some())
            {
                c.archiver = Some(super::point::archiver(ctx));
            }
            (store.catalog()?, store.stored_bytes()?)
        } else {
            (Vec::new(), 0)
        };
    let offsite = ctx.config.offsite.as_ref().filter(|_| !cloud).map(|o| {
        let waiting: Vec<&Summary> = summaries
            .iter()
            .filter(|s| !pushed.as_ref().is_some_and(|p| p.contains(s.id.as_str())))
            .collect();
        OffsiteLag {
            url: o.url.clone(),
            not_pushed: waiting.len(),
            lag_seconds: waiting
                .iter()
                .map(|s| (now - s.created_at).num_seconds())
                .max(),
        }
    });
    let last = summaries.first().cloned();
    // Only a running daemon runs the schedule.
    let next_run = daemon.as_ref().and_then(|d| d.next_run);
    Ok(StatusReport {
        mode: ctx.detection.mode,
        mode_reason: ctx.detection.reason.clone(),
        signals_fired: ctx.detection.fired_names(),
        database: db.clone(),
        database_exists: meta.is_some(),
        database_bytes: meta.map(|m| m.len()),
        store: ctx.config.store.dir.clone(),
        snapshots: summaries.len(),
        store_bytes,
        last_snapshot_age_seconds: last.as_ref().map(|s| (now - s.created_at).num_seconds()),
        last_snapshot: last,
        next_run,
        daemon,
        disabled: cloud.then(|| environment::disabled_message(&ctx.detection)),
        offsite,
        recorded_error,
        continuous,
    })
}

/// The newest failure among the jobs whose last run failed.
fn newest_failure(h: &crate::monitor::state::Health) -> Option<LastError> {
    h.jobs
        .iter()
        .filter(|(_, r)| r.failing())
        .filter_map(|(job, r)| {
            r.last_failure.as_ref().map(|f| LastError {
                at: f.at,
                what: *job,
                message: f.message.clone(),
            })
        })
        .max_by_key(|e| e.at)
}
