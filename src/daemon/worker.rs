//! The worker: the only task that changes the store from this process. It
//! takes [`Queued`] work from the queue in order and runs each on a blocking
//! thread, so store mutations never overlap and every caller gets its own
//! answer. A scheduled or change-triggered snapshot is followed by
//! retention.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ops::{self, Ctx, PruneRequest, SnapshotOutcome, SnapshotReply, SnapshotRequest};
use crate::protocol::{ErrorCode, Request, Response, dispatch};

use super::jobs::{self, JobKind, Queued, Settings, StateHandle};
use super::sdnotify::Notifier;
use crate::monitor::Job;

/// Runs jobs until cancelled; answers what is still queued with
/// `shutting_down`.
pub async fn worker(
    settings: Settings,
    state: StateHandle,
    mut jobs: mpsc::Receiver<Queued>,
    token: CancellationToken,
    snapshot_taken: Arc<Notify>,
    notifier: Notifier,
) {
    // The database's headers, followed between snapshots (a thread of its
    // own, woken by inotify); updated after every job (a reload may name
    // another database).
    let mut following = ops::Following::default();
    loop {
        following.update(&settings.borrow().clone());
        let job = tokio::select! {
            _ = token.cancelled() => break,
            job = jobs.recv() => match job { Some(j) => j, None => break },
        };
        let ctx = settings.borrow().clone();
        let st = state.clone();
        let (answer, took) = tokio::task::spawn_blocking(move || run_job(&ctx, &st, job.kind))
            .await
            .unwrap_or_else(|e| {
                let r = Response::err(ErrorCode::Failed, format!("internal error: {e}"));
                (r, Took::Nothing)
            });
        // The answer goes out first: the pusher's work starts after it.
        let _ = job.reply.send(answer);
        if took == Took::Snapshot {
            snapshot_taken.notify_one();
        }
        let ctx = settings.borrow().clone();
        let (st, n) = (state.clone(), notifier.clone());
        let _ = tokio::task::spawn_blocking(move || send_status(&ctx, &st, &n)).await;
    }
    jobs.close();
    while let Some(job) = jobs.recv().await {
        let _ = job.reply.send(jobs::shutting_down());
    }
}

/// Notes the run; a failure of the daemon's own work becomes its last
/// error, a success clears one of its kind; refusals are the caller's.
fn set_result(state: &StateHandle, what: Job, r: &Response) {
    state.note_run(what, r.ok);
    match &r.error {
        None => state.record(what, Ok(())),
        Some(e) if e.code.is_refusal() => {}
        Some(e) => state.record(what, Err(e.message.clone())),
    }
}

/// Sends systemd `STATUS=`: the newest snapshot, the next run, and the
/// daemon's last error — else the newest failure of a job the health
/// record says is failing (the metrics file, a push from another process).
/// Reads the store (blocking).
pub(super) fn send_status(ctx: &Ctx, state: &StateHandle, notifier: &Notifier) {
    let info = state.info();
    let error = info
        .last_error
        .as_ref()
        .map(|e| {
            format!(
                "{} at {}: {}",
                e.what,
                e.at.format("%H:%M:%S UTC"),
                e.message
            )
        })
        .or_else(|| crate::monitor::failing_job(ctx));
    let archive_error = ctx
        .config
        .continuous
        .enabled
        .then(|| crate::ops::point::archiver(ctx).error)
        .flatten();
    let line = crate::monitor::status_line(
        crate::monitor::newest_snapshot(ctx),
        info.next_run,
        error.as_deref(),
        archive_error.as_deref(),
        chrono::Utc::now(),
    );
    notifier.send(&format!("STATUS={line}"));
}

/// Whether a job stored a new snapshot (the pusher is kicked then), from
/// the operation's typed outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Took {
    Snapshot,
    Nothing,
}

impl Took {
    fn of<E>(out: &Result<SnapshotOutcome, E>) -> Took {
        match out {
            Ok(SnapshotOutcome::Created(_)) => Took::Snapshot,
            Ok(SnapshotOutcome::Unchanged { .. } | SnapshotOutcome::Disabled { .. }) | Err(_) => {
                Took::Nothing
            }
        }
    }
}

/// Runs one job (blocking).
fn run_job(ctx: &Ctx, state: &StateHandle, kind: JobKind) -> (Response, Took) {
    match kind {
        JobKind::Request(Request::Snapshot(req)) => {
            let fallback = match marker(ctx, &req) {
                Ok(reply) => {
                    let r = dispatch::answer(Ok::<_, ops::OpError>(reply));
                    set_result(state, Job::Snapshot, &r);
                    return (r, Took::Nothing);
                }
                Err(why) => why,
            };
            let out = ops::snapshot(ctx, &req);
            offer_base(ctx, &out);
            let took = Took::of(&out);
            if out.is_ok() {
                state.note_snapshot(jobs::fingerprint(&ctx.config.database.path), true);
            }
            let r = dispatch::answer(out.map(|o| SnapshotReply {
                marker_fallback: fallback,
                ..SnapshotReply::from(o)
            }));
            set_result(state, Job::Snapshot, &r);
            (r, took)
        }
        JobKind::Request(req) => {
            let what = jobs::work_of(&req);
            let r = dispatch::handle(ctx, req, state.info());
            if let Some(what) = what {
                set_result(state, what, &r);
            }
            (r, Took::Nothing)
        }
        JobKind::Scheduled => background_snapshot(ctx, state, Background::Scheduled),
        JobKind::Changed => background_snapshot(ctx, state, Background::Changed),
        JobKind::Base => background_snapshot(ctx, state, Background::Base),
        JobKind::Drill => {
            let r = dispatch::answer(ops::drill::drill(ctx));
            set_result(state, Job::Verify, &r);
            (r, Took::Nothing)
        }
    }
}

/// Why the daemon takes a snapshot of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Background {
    Scheduled,
    Changed,
    Base,
}

/// With continuous archiving, a `pre-delete` request gets a marker — a
/// named restore point at the last archived commit — instead of a
/// snapshot. `Err(Some(why))`: it could not (the snapshot is taken, and
/// the reply and the log say why); `Err(None)`: not asked for one.
fn marker(ctx: &Ctx, req: &SnapshotRequest) -> Result<SnapshotReply, Option<String>> {
    if req.reason != "pre-delete" || !ctx.config.continuous.enabled || ctx.detection.is_cloud() {
        return Err(None);
    }
    let why = match crate::archive::tail::followed(&ctx.config.database.path) {
        None => "the WAL is not being followed".to_string(),
        Some(t) => {
            let asked = crate::archive::tail::MarkRequest {
                reason: req.reason.clone(),
                label: req.label.clone(),
                pinned: req.pin,
            };
            match t.mark(asked, std::time::Duration::from_secs(10)) {
                Ok(m) => {
                    tracing::info!(event = "snapshot.marker", point = %m.point, base = %m.base, reason = %req.reason, "pre-delete restore point recorded as a marker on the archived WAL");
                    let mut reply = SnapshotReply::from(SnapshotOutcome::Unchanged {
                        since: m.base.clone(),
                    });
                    reply.unchanged = false;
                    reply.since = None;
                    reply.marker = Some(ops::MarkerReply {
                        id: m.point.to_string(),
                        created_at: m.at,
                        reason: req.reason.clone(),
                        label: req.label.clone(),
                        base: m.base,
                    });
                    return Ok(reply);
                }
                Err(why) => why,
            }
        }
    };
    tracing::info!(event = "snapshot.marker_fallback", reason = %why, "a snapshot instead of a marker");
    Err(Some(why))
}

/// Offers the snapshot an outcome names (new, or the newest when nothing
/// changed) to the WAL tailer following `ctx`'s database, as a base image.
fn offer_base(ctx: &Ctx, out: &Result<SnapshotOutcome, ops::OpError>) {
    let Some(t) = crate::archive::tail::followed(&ctx.config.database.path) else {
        return;
    };
    match out {
        Ok(SnapshotOutcome::Created(m)) => t.offer(&m.id),
        Ok(SnapshotOutcome::Unchanged { since }) => t.offer(since),
        Ok(SnapshotOutcome::Disabled { .. }) | Err(_) => {}
    }
}

/// A scheduled (skipped when the database did not change), change-triggered
/// or base snapshot, then retention.
fn background_snapshot(ctx: &Ctx, state: &StateHandle, why: Background) -> (Response, Took) {
    let scheduled = why == Background::Scheduled;
    let db = &ctx.config.database.path;
    let now_fp = jobs::fingerprint(db);
    if now_fp.is_none() {
        // Nothing is protected while the file is gone: a failed run, for
        // `status --check`, the metrics and STATUS=.
        let missing = crate::capture::CaptureError::Missing { path: db.clone() };
        let out = ops::context::run_job(ctx, Job::Snapshot, true, || {
            Err::<SnapshotOutcome, _>(ops::OpError::from(missing))
        });
        let r = dispatch::answer(out.map(SnapshotReply::from));
        set_result(state, Job::Snapshot, &r);
        tracing::warn!(event = "schedule.skipped", reason = "database missing", database = %db.display(), "scheduled snapshot skipped: the database does not exist");
        return (r, Took::Nothing);
    }
    if scheduled && now_fp == state.fingerprint() {
        // Recorded before it is logged: whoever sees the line sees the
        // confirmation in `status --check`.
        crate::monitor::confirm(ctx, None);
        tracing::info!(
            event = "schedule.skipped",
            reason = "unchanged",
            "scheduled snapshot skipped: the database has not changed since the last snapshot"
        );
        return (
            Response::ok(serde_json::json!({"skipped": "unchanged"})),
            Took::Nothing,
        );
    }
    let req = SnapshotRequest {
        reason: match why {
            Background::Scheduled => "scheduled",
            Background::Changed => "change",
            Background::Base => "base",
        }
        .into(),
        label: None,
        pin: false,
        skip_unchanged: true,
        // While the WAL is archived, a background snapshot is most often
        // taken right after the app closed the database (a generation
        // ended: a base is wanted): holding the read lock through the
        // copy and DuckDB's check would make the app's next open fail.
        never_lock: ctx.config.continuous.enabled,
    };
    let out = ops::snapshot(ctx, &req);
    offer_base(ctx, &out);
    let took = Took::of(&out);
    if let Ok(o) = &out {
        state.note_snapshot(now_fp, !matches!(o, SnapshotOutcome::Unchanged { .. }));
    }
    let r = dispatch::answer(out.map(SnapshotReply::from));
    set_result(state, Job::Snapshot, &r);
    match &r.error {
        None => apply_retention(ctx, state),
        Some(e) => {
            tracing::error!(event = "schedule.failed", code = %e.code, error = %e.message, "scheduled snapshot failed")
        }
    }
    (r, took)
}

fn apply_retention(ctx: &Ctx, state: &StateHandle) {
    match ops::prune(ctx, &PruneRequest::default()) {
        Ok(p) => {
            if p.removed > 0 {
                tracing::info!(
                    event = "retention.applied",
                    removed = p.removed,
                    bytes_freed = p.bytes_freed,
                    "retention removed old snapshots"
                )
            }
            state.record(Job::Retention, Ok(()));
        }
        Err(e) => {
            tracing::error!(event = "retention.failed", error = %e, "retention failed");
            state.record(Job::Retention, Err(e.to_string()));
        }
    }
}
