//! When scheduled snapshots run: the next slot of a set of cron expressions in
//! UTC or a named time zone, computed with croner.
//!
//! Why not tokio-cron-scheduler: its known defects (a fixed UTC offset taken
//! when a job is created, so DST shifts every run by an hour; repeated jobs
//! that stop firing once the next tick falls into the past, e.g. after a
//! suspend; detached runs that overlap; `shutdown()` that does not wait for a
//! running job) would each need a wrapper, and together the wrappers are more
//! code than the loop they replace. The daemon's loop (in `daemon`) computes
//! the next slot here, sleeps until it on the monotonic clock while
//! re-checking the wall clock at least once a minute (a suspend or a clock
//! jump is noticed within a minute), runs one job at a time and awaits it,
//! and after a missed slot runs once and logs `schedule.missed`.

use chrono::{DateTime, Utc};

/// Computed in `config`, where operations below the daemon use it too.
pub use crate::config::next_after;

/// What the loop should do when it wakes at `now` for the slot `planned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Woke early (the loop re-checks the wall clock at least once a minute).
    NotYet,
    /// Run now.
    OnTime,
    /// The slot passed more than `tolerance` ago (suspend, clock jump, a long
    /// previous run): run once now and log it as missed.
    Missed { late_seconds: i64 },
}

/// Classifies a wake-up.
pub fn due(planned: DateTime<Utc>, now: DateTime<Utc>, tolerance: chrono::Duration) -> Due {
    if now < planned {
        Due::NotYet
    } else if now - planned > tolerance {
        Due::Missed {
            late_seconds: (now - planned).num_seconds(),
        }
    } else {
        Due::OnTime
    }
}
