//! What the daemon's tasks share, as narrow handles: the [`Settings`] (the
//! config and mode, replaced on reload), the [`Queue`] of jobs for the one
//! worker, and the [`StateHandle`] (what `status` reports, and what the
//! scheduler and the watcher need to know about the last snapshot).
//!
//! Locking rule: the state sits behind a `std::sync::Mutex` that is only
//! ever held for a copy in or out, never across an `.await`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};

use crate::database::stamp::Stamp;
use crate::monitor::Job;
use crate::ops::{Ctx, DaemonInfo, LastError};
use crate::protocol::{ErrorCode, Request, Response};

/// The current config and mode; a reload sends a new one.
pub type Settings = watch::Receiver<Arc<Ctx>>;

/// What the worker is asked to do.
#[derive(Debug)]
pub enum JobKind {
    /// A protocol request that changes the store.
    Request(Request),
    /// A scheduled snapshot, skipped when nothing changed, then retention.
    Scheduled,
    /// A snapshot after the database changed and settled, then retention.
    Changed,
    /// A snapshot the WAL archive wants as a base image (a WAL generation
    /// began, or an optimistic commit was archived), skipped when nothing
    /// changed (the newest snapshot is then the base), then retention.
    Base,
    /// A restore drill: deep-verify the newest snapshot and a rolling
    /// sample of older ones.
    Drill,
}

/// A piece of work in the worker's queue, with where its answer goes.
#[derive(Debug)]
pub struct Queued {
    pub kind: JobKind,
    pub reply: oneshot::Sender<Response>,
}

/// The sending end of the worker's queue.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::Sender<Queued>,
}

impl Queue {
    /// A queue and its receiving end (for the worker).
    pub fn new(capacity: usize) -> (Queue, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Queue { tx }, rx)
    }

    /// Queues a job and waits for its answer.
    pub async fn submit(&self, kind: JobKind) -> Response {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Queued { kind, reply: tx }).await.is_err() {
            return shutting_down();
        }
        rx.await.unwrap_or_else(|_| shutting_down())
    }
}

/// The answer to a job the daemon will not run because it is stopping.
pub fn shutting_down() -> Response {
    Response::err(ErrorCode::ShuttingDown, "the daemon is shutting down")
}

/// The database's and its WAL's stamps at the last snapshot or skip; the
/// scheduler skips while they are unchanged.
pub type Fingerprint = (Stamp, Option<Stamp>);

/// Cheap change detector for the database and its WAL.
pub fn fingerprint(db: &Path) -> Option<Fingerprint> {
    let m = std::fs::metadata(db).ok()?;
    let w = std::fs::metadata(crate::database::duckfile::wal_path(db))
        .ok()
        .map(|w| Stamp::of(&w));
    Some((Stamp::of(&m), w))
}

#[derive(Debug, Default)]
struct State {
    info: DaemonInfo,
    fingerprint: Option<Fingerprint>,
    last_snapshot_at: Option<Instant>,
}

/// The daemon's state, shared by its tasks.
#[derive(Clone, Default)]
pub struct StateHandle(Arc<Mutex<State>>);

impl StateHandle {
    /// A state for a daemon started now.
    pub fn started(pid: u32, at: DateTime<Utc>) -> StateHandle {
        let s = StateHandle::default();
        s.with(|st| {
            st.info.pid = pid;
            st.info.started_at = Some(at);
        });
        s
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().expect("daemon state lock"))
    }

    /// What `status` reports about the daemon.
    pub fn info(&self) -> DaemonInfo {
        self.with(|st| st.info.clone())
    }

    pub fn set_next_run(&self, next: Option<DateTime<Utc>>) {
        self.with(|st| st.info.next_run = next);
    }

    /// The fingerprint noted at the last snapshot or skip.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.with(|st| st.fingerprint)
    }

    /// Notes the database's fingerprint, and the time when a snapshot was
    /// `taken` (the watcher's `min_interval` counts from it).
    pub fn note_snapshot(&self, fp: Option<Fingerprint>, taken: bool) {
        self.with(|st| {
            st.fingerprint = fp;
            if taken {
                st.last_snapshot_at = Some(Instant::now());
            }
        });
    }

    /// How long ago the last snapshot was taken.
    pub fn since_last_snapshot(&self) -> Option<Duration> {
        self.with(|st| st.last_snapshot_at.map(|t| t.elapsed()))
    }

    /// Notes the last run of `what` and whether it succeeded.
    pub fn note_run(&self, what: Job, ok: bool) {
        let line = format!(
            "{} {}: {}",
            Utc::now().to_rfc3339(),
            what.name(),
            if ok { "ok" } else { "failed" }
        );
        self.with(|st| st.info.last_run = Some(line));
    }

    /// Records how a piece of the daemon's work went: a failure becomes the
    /// last error (with its time), a success clears an error of its kind.
    pub fn record(&self, what: Job, outcome: Result<(), String>) {
        self.with(|st| match outcome {
            Ok(()) => {
                if st.info.last_error.as_ref().is_some_and(|e| e.what == what) {
                    st.info.last_error = None;
                }
            }
            Err(message) => {
                st.info.last_error = Some(LastError {
                    at: Utc::now(),
                    what,
                    message,
                });
            }
        });
    }
}

/// The work a request queued for the worker is; `None` for the requests
/// answered beside the queue (they are the caller's reads, not the
/// daemon's work).
pub fn work_of(req: &Request) -> Option<Job> {
    match req {
        Request::Snapshot(_) => Some(Job::Snapshot),
        // A rescue is restore work: it replaces the database.
        Request::Restore(_) | Request::Rescue(_) => Some(Job::Restore),
        Request::Prune(_) => Some(Job::Prune),
        Request::Pin(_) => Some(Job::Pin),
        Request::Unpin(_) => Some(Job::Unpin),
        Request::Verify(_) => Some(Job::Verify),
        Request::Hello { .. }
        | Request::Ping {}
        | Request::Status {}
        | Request::List {}
        | Request::Show(_)
        | Request::Diff(_)
        | Request::Export(_) => None,
    }
}
