//! The health record: `<store>/health.json`, the last success and the last
//! failure of each kind of job (snapshot, prune, verify, offsite) with
//! their messages, run counts, and the snapshots the last verify runs found
//! damaged — written after every job by whichever process ran it (the
//! daemon or a one-shot command), so that `status --check` from cron or a
//! fresh shell tells the truth while the daemon is down.
//!
//! Read-modify-write under an OFD lock on `<store>/health.lock`; the file
//! is replaced atomically (the store's write-fsync-rename).
//!
//! A record that exists but cannot be read (garbage, truncated, a directory
//! in its place) is never taken as "all is well": it is kept aside as
//! `health.json.unreadable`, and the new record starts with [`Lost`] naming
//! every snapshot in the store, which `status --check` reports as CRITICAL
//! until a verify of each has said again whether it is whole.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::database::oslock::{self, LockKind};
use crate::store::Store;

pub use super::job::Job;

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

/// The record was found unreadable: what it said about damage is lost
/// until every snapshot it could have named is verified again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    pub at: DateTime<Utc>,
    pub why: String,
    /// Snapshots that existed then and no verify has checked since.
    pub unverified: Vec<String>,
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
    /// Set when the record was found unreadable (see the module header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<Lost>,
    /// The last time a snapshot job found the database unchanged since a
    /// stored snapshot (so it stored none): protection confirmed then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<Confirmed>,
}

/// The database was found equal to snapshot `id` at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmed {
    pub at: DateTime<Utc>,
    pub id: String,
}

const FILE: &str = "health.json";

impl Health {
    /// The record in `store`: empty when there is none; when it exists but
    /// cannot be read, empty but for [`Lost`] naming every snapshot in the
    /// store (the record is never a reason for a job to fail, and never
    /// forgets damage by being damaged itself).
    pub fn load(store: &Store) -> Health {
        Self::read(store).unwrap_or_else(|why| Self::lost(store, why))
    }

    /// An empty record that remembers it replaces an unreadable one.
    fn lost(store: &Store, why: String) -> Health {
        Health {
            lost: Some(Lost {
                at: Utc::now(),
                why,
                unverified: store
                    .catalog()
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.id.to_string())
                    .collect(),
            }),
            ..Health::default()
        }
    }

    /// The record as it is on disk: `Err` says why it is unreadable.
    fn read(store: &Store) -> Result<Health, String> {
        let path = store.root().join(FILE);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Health::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(m) if !m.is_file() => return Err(format!("{} is not a file", path.display())),
            Ok(_) => {}
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Notes that a verify checked `ids`: what the lost record might have
    /// said about them is known again.
    pub fn verified<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        let Some(lost) = &mut self.lost else {
            return;
        };
        let ids: std::collections::BTreeSet<&str> = ids.into_iter().collect();
        lost.unverified.retain(|id| !ids.contains(id.as_str()));
        if lost.unverified.is_empty() {
            self.lost = None;
        }
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
    let mut h = Health::read(store).unwrap_or_else(|why| {
        // Kept for whoever investigates (whatever it is: the entry itself
        // is moved, never followed), out of the way of the new record.
        let path = store.root().join(FILE);
        if std::fs::rename(&path, store.root().join("health.json.unreadable")).is_err() {
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    let _ = std::fs::remove_dir_all(&path);
                }
                Ok(_) => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(_) => {}
            }
        }
        Health::lost(store, why)
    });
    change(&mut h);
    let body = serde_json::to_vec_pretty(&h).expect("health serializes");
    store
        .write_atomic(&store.root().join(FILE), &body)
        .map_err(std::io::Error::other)?;
    Ok(h)
}
