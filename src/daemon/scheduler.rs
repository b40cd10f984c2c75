//! The scheduler tasks: each sleeps until the next cron slot
//! ([`super::schedule`] says which, and why it is a loop rather than
//! tokio-cron-scheduler), queues its job — a scheduled snapshot
//! (`[schedule] cron`) or a restore drill (`[schedule] verify`) — and waits
//! for it. It re-reads the wall clock
//! at least once a minute (a suspend or a clock jump is noticed), runs a
//! missed slot once, and follows a reloaded schedule at once.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::ScheduleConfig;

use super::jobs::{JobKind, Queue, Settings, StateHandle};
use super::schedule::{self, Due};
use crate::protocol::ErrorCode;

const RECHECK: Duration = Duration::from_secs(60);

/// Which schedule a scheduler follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `[schedule] cron`: scheduled snapshots (and `status`'s next run).
    Snapshots,
    /// `[schedule] verify`: restore drills.
    Drills,
}

impl Which {
    fn plan(self, s: &ScheduleConfig) -> ScheduleConfig {
        match self {
            Which::Snapshots => s.clone(),
            Which::Drills => ScheduleConfig {
                enabled: s.verify.is_some(),
                cron: s.verify.iter().cloned().collect(),
                timezone: s.timezone.clone(),
                verify: None,
            },
        }
    }

    fn job(self) -> JobKind {
        match self {
            Which::Snapshots => JobKind::Scheduled,
            Which::Drills => JobKind::Drill,
        }
    }
}

/// Fires `which`'s jobs until cancelled.
pub async fn scheduler(
    which: Which,
    mut settings: Settings,
    queue: Queue,
    state: StateHandle,
    token: CancellationToken,
) {
    let next_slot =
        |s: &Settings| schedule::next_after(&which.plan(&s.borrow().config.schedule), Utc::now());
    let mut next = next_slot(&settings);
    loop {
        if which == Which::Snapshots {
            state.set_next_run(next);
        }
        let wait = match next {
            Some(n) => (n - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(RECHECK),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = token.cancelled() => break,
            changed = settings.changed() => {
                if changed.is_err() {
                    break;
                }
                next = next_slot(&settings);
                tracing::info!(event = "schedule.reloaded", next_run = next.map(|t| t.to_rfc3339()), "schedule reloaded");
                continue;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(planned) = next else { continue };
        match schedule::due(planned, Utc::now(), chrono::Duration::seconds(5)) {
            Due::NotYet => continue,
            Due::OnTime => {}
            Due::Missed { late_seconds } => {
                tracing::warn!(event = "schedule.missed", planned = %planned.to_rfc3339(), late_seconds, "a scheduled run was missed (suspend or clock jump?); running it once now");
            }
        }
        tracing::debug!(event = "schedule.fire", planned = %planned.to_rfc3339(), "scheduled run");
        let r = queue.submit(which.job()).await;
        if r.error
            .as_ref()
            .is_some_and(|e| e.code == ErrorCode::ShuttingDown)
        {
            break;
        }
        // Slots missed while that ran (or while suspended) run once, not many times.
        next = next_slot(&settings);
    }
}
