//! The offsite pusher: pushes to `[offsite]` in the background, never in
//! the worker's way. With `push = "after-snapshot"` the worker kicks it
//! after each snapshot (the app's pre-delete answer never waits for the
//! network); with a cron expression it pushes at those times; `manual`
//! leaves it to `ducksnap offsite push`. A failed push is retried with
//! exponential backoff and jitter (5 s doubling to 15 min); snapshots that
//! wait meanwhile are the lag, which drains when the server is back. The
//! push runs on a blocking thread and holds no store lock (retention keeps
//! what is not offsite yet); at shutdown the daemon stops waiting for it
//! after its bound — the remote stays consistent, since a snapshot's record
//! is uploaded after its packs.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::jobs::{Settings, StateHandle};
use super::schedule;
use super::sdnotify::Notifier;
use crate::config::{HostEnv, OffsitePush, ScheduleConfig};
use crate::monitor::Job;

const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(15 * 60);

/// What the pusher task gets.
pub struct Pusher {
    pub settings: Settings,
    pub state: StateHandle,
    pub token: CancellationToken,
    pub env: HostEnv,
    /// Notified by the worker after each snapshot it commits.
    pub kick: Arc<Notify>,
    /// `STATUS=` after each push, as the worker sends after each job.
    pub notifier: Notifier,
}

/// Pushes until cancelled.
pub async fn pusher(mut p: Pusher) {
    let mut retry: Option<Duration> = None;
    // Whatever waits from before this start goes first.
    p.kick.notify_one();
    loop {
        let mode = p
            .settings
            .borrow()
            .config
            .offsite
            .as_ref()
            .map(|o| o.push.clone());
        let wait = match (&mode, retry) {
            (None | Some(OffsitePush::Manual), _) => None,
            (Some(_), Some(r)) => Some(r),
            (Some(OffsitePush::Cron(c)), None) => Some(until_next(&p, c)),
            (Some(OffsitePush::AfterSnapshot), None) => None,
        };
        let after_snapshot = matches!(mode, Some(OffsitePush::AfterSnapshot));
        tokio::select! {
            _ = p.token.cancelled() => break,
            changed = p.settings.changed() => {
                if changed.is_err() { break; }
                continue;
            }
            _ = p.kick.notified(), if after_snapshot && retry.is_none() => {}
            _ = sleep_opt(wait) => {}
        }
        if matches!(mode, None | Some(OffsitePush::Manual)) {
            continue;
        }
        retry = match push_once(&p).await {
            Some(true) => None,
            Some(false) => {
                let next = next_retry(retry);
                tracing::info!(
                    event = "offsite.retry_scheduled",
                    retry_in_ms = next.as_millis() as u64,
                    "offsite push will be retried"
                );
                Some(next)
            }
            None => break,
        };
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn until_next(p: &Pusher, cron: &crate::config::CronExpr) -> Duration {
    let tz = p.settings.borrow().config.schedule.timezone.clone();
    let cfg = ScheduleConfig {
        enabled: true,
        cron: vec![cron.clone()],
        timezone: tz,
        verify: None,
    };
    schedule::next_after(&cfg, Utc::now())
        .and_then(|t| (t - Utc::now()).to_std().ok())
        .unwrap_or(Duration::from_secs(3600))
}

/// The next wait: doubled, at most [`MAX_RETRY`], with up to a quarter of
/// jitter so that many daemons do not retry in step.
fn next_retry(prev: Option<Duration>) -> Duration {
    let base = prev.map_or(FIRST_RETRY, |d| (d * 2).min(MAX_RETRY));
    let nanos = Utc::now().timestamp_subsec_nanos() as u64;
    let jitter = blake3::hash(&nanos.to_le_bytes()).as_bytes()[0] as u64;
    base + base.mul_f64(jitter as f64 / 255.0 / 4.0)
}

/// One push on a blocking thread. `Some(ok)`, or `None` when the daemon
/// stops meanwhile (the push is left to finish or be cut off at exit).
async fn push_once(p: &Pusher) -> Option<bool> {
    let ctx = p.settings.borrow().clone();
    let env = p.env.clone();
    let job = tokio::task::spawn_blocking(move || crate::ops::offsite::push(&ctx, &env));
    let result = tokio::select! {
        _ = p.token.cancelled() => return None,
        r = job => r,
    };
    let outcome = match result {
        Ok(Ok(pushed)) => Ok(pushed),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("internal error: {e}")),
    };
    p.state.note_run(Job::Offsite, outcome.is_ok());
    let ok = record(p, outcome);
    let (ctx, st, n) = (
        p.settings.borrow().clone(),
        p.state.clone(),
        p.notifier.clone(),
    );
    let _ = tokio::task::spawn_blocking(move || super::worker::send_status(&ctx, &st, &n)).await;
    Some(ok)
}

/// Records a push's outcome in the daemon's state (`status`) and logs a
/// completed one; returns whether it succeeded.
fn record(p: &Pusher, outcome: Result<crate::offsite::push::Pushed, String>) -> bool {
    match outcome {
        Ok(pushed) => {
            // Recorded before it is logged: whoever sees the log line sees
            // the cleared error in `status`.
            p.state.record(Job::Offsite, Ok(()));
            if !pushed.snapshots.is_empty() {
                tracing::info!(
                    event = "offsite.push_completed",
                    snapshots = pushed.snapshots.len(),
                    objects = pushed.objects,
                    bytes = pushed.bytes,
                    "offsite push completed"
                );
            }
            true
        }
        Err(message) => {
            // ops::offsite::push logged offsite.push_failed.
            p.state.record(Job::Offsite, Err(message));
            false
        }
    }
}
