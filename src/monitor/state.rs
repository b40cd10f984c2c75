//! The health record: `<store>/health.json`, the last success and the last
//! failure of each kind of job (snapshot, prune, verify, offsite) with
//! their messages, run counts, and the snapshots the last verify runs found
//! damaged — written after every job by whichever process ran it (the
//! daemon or a one-shot command), so that `status --check` from cron or a
//! fresh shell tells the truth while the daemon is down.
//!
//! Read-modify-write under an OFD lock on `<store>/health.lock`; the file
//! is replaced atomically (the store's write-fsync-rename).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::database::oslock::{self, LockKind};
use crate::store::Store;

/// The kinds of job recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    Snapshot,
    Prune,
    Verify,
    Offsite,
}

impl Job {
    pub const ALL: [Job; 4] = [Job::Snapshot, Job::Prune, Job::Verify, Job::Offsite];

    pub fn name(self) -> &'static str {
        match self {
            Job::Snapshot => "snapshot",
            Job::Prune => "prune",
            Job::Verify => "verify",
            Job::Offsite => "offsite",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub at: DateTime<Utc>,
    pub message: String,
}

/// One kind of job's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub last_success: Option<DateTime<Utc>>,
    pub last_failure: Option<Failure>,
    /// Failures since the last success.
    pub failing_since_success: u64,
    pub last_duration_ms: Option<u64>,
    pub ok_runs: u64,
    pub failed_runs: u64,
}

impl JobRecord {
    /// Whether the newest run failed.
    pub fn failing(&self) -> bool {
        self.failing_since_success > 0
    }
}

/// A snapshot a verify found damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    pub id: String,
    pub at: DateTime<Utc>,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    #[serde(default)]
    pub jobs: BTreeMap<Job, JobRecord>,
    /// Snapshots found damaged by the latest verify of each (cleared when a
    /// later verify finds it intact or it is pruned).
    #[serde(default)]
    pub damaged: Vec<Damage>,
    /// The restore drill's place in the rolling sample: the oldest snapshot
    /// id it verified last.
    #[serde(default)]
    pub drill_cursor: Option<String>,
}

const FILE: &str = "health.json";

impl Health {
    /// The record in `store`; empty when there is none or it is unreadable
    /// (it is a record of the past, never a reason to fail).
    pub fn load(store: &Store) -> Health {
        std::fs::read(store.root().join(FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Notes one run of `job` at `now`: its duration, or why it failed.
    pub fn note(&mut self, job: Job, now: DateTime<Utc>, outcome: Result<Duration, String>) {
        let r = self.jobs.entry(job).or_default();
        match outcome {
            Ok(took) => {
                r.last_success = Some(now);
                r.last_duration_ms = Some(took.as_millis() as u64);
                r.failing_since_success = 0;
                r.ok_runs += 1;
            }
            Err(message) => {
                r.last_failure = Some(Failure { at: now, message });
                r.failing_since_success += 1;
                r.failed_runs += 1;
            }
        }
    }
}

/// Applies `change` to the store's record under its lock and writes it
/// back; returns the new record.
pub fn update(store: &Store, change: impl FnOnce(&mut Health)) -> std::io::Result<Health> {
    let lock_path = store.root().join("health.lock");
    let lock = crate::store::open_lock_file(&lock_path)?;
    oslock::lock_wait(&lock, LockKind::Write)?;
    let mut h = Health::load(store);
    change(&mut h);
    let body = serde_json::to_vec_pretty(&h).expect("health serializes");
    store
        .write_atomic(&store.root().join(FILE), &body)
        .map_err(std::io::Error::other)?;
    Ok(h)
}
