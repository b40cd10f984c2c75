//! [`Job`]: the one vocabulary for the kinds of work ducksnap does — what
//! the daemon's `status` names (`last_error.what`, `last_run`), what the
//! health record keeps runs of, what the metrics label and `STATUS=`
//! names. A leaf: everything that records or shows a job imports it.

use serde::{Deserialize, Serialize};

/// A kind of work. Scheduled and change-triggered snapshots are `Snapshot`
/// work like a requested one; a restore drill is `Verify` work; the
/// daemon's retention after a scheduled snapshot is `Retention` (its run is
/// recorded as a `Prune`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    Snapshot,
    Restore,
    Prune,
    Pin,
    Unpin,
    Verify,
    Retention,
    Reload,
    Offsite,
    /// Writing `[monitor] metrics_file`.
    Metrics,
}

impl Job {
    pub const ALL: [Job; 10] = [
        Job::Snapshot,
        Job::Restore,
        Job::Prune,
        Job::Pin,
        Job::Unpin,
        Job::Verify,
        Job::Retention,
        Job::Reload,
        Job::Offsite,
        Job::Metrics,
    ];

    /// The word in `status`, on the wire, in the health record and in the
    /// metrics' `job` label.
    pub fn name(self) -> &'static str {
        match self {
            Job::Snapshot => "snapshot",
            Job::Restore => "restore",
            Job::Prune => "prune",
            Job::Pin => "pin",
            Job::Unpin => "unpin",
            Job::Verify => "verify",
            Job::Retention => "retention",
            Job::Reload => "reload",
            Job::Offsite => "offsite",
            Job::Metrics => "metrics",
        }
    }

    /// The kind whose runs in the health record (and so in `status
    /// --check` and the metrics) include this kind's: itself, a prune for
    /// the daemon's retention; `None` for work only the running daemon's
    /// `status` knows of.
    pub fn recorded_as(self) -> Option<Job> {
        match self {
            Job::Snapshot | Job::Prune | Job::Verify | Job::Offsite | Job::Metrics => Some(self),
            Job::Retention => Some(Job::Prune),
            Job::Restore | Job::Pin | Job::Unpin | Job::Reload => None,
        }
    }

    /// Whether the health record keeps this kind's runs.
    pub fn recorded(self) -> bool {
        self.recorded_as() == Some(self)
    }

    /// The kinds the health record keeps, in order.
    pub fn recorded_kinds() -> impl Iterator<Item = Job> {
        Job::ALL.into_iter().filter(|j| j.recorded())
    }
}

/// The word of [`Job::name`].
impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
