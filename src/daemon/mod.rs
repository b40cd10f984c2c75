//! `ducksnap daemon`: the long-running service.
//!
//! Tasks, all selecting on one [`CancellationToken`] and awaited at shutdown:
//!
//! * **worker** — the only task that changes the store from this process:
//!   takes [`Job`]s from a queue in order and runs each on a blocking thread,
//!   so store mutations never overlap and every caller gets its own answer;
//! * **server** ([`crate::daemon::server`]) — the Unix socket;
//! * **scheduler** — cron slots ([`crate::daemon::schedule`]); queues a scheduled
//!   snapshot (skipped when the database did not change) followed by retention;
//! * **watcher** ([`crate::daemon::watch`]) — the database's directory;
//! * **watchdog** — `WATCHDOG=1` when systemd asks for it.
//!
//! Signals (signal-hook, on a thread) come to the main loop: SIGTERM/SIGINT
//! cancel the token and give the tasks [`SHUTDOWN_BOUND`] to finish (the
//! in-flight job completes or is abandoned, safely, by exiting: the store's
//! commit protocol keeps it consistent); a second one exits at once. SIGHUP
//! reloads the config; an invalid one is logged and the old one stays.
//!
//! Locking rule: shared state sits behind `std::sync::Mutex`es that are only
//! ever held for a copy in or out, never across an `.await`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, HostEnv};
use crate::daemon::sdnotify::Notifier;
use crate::environment;
use crate::ops::dispatch;
use crate::ops::{self, Ctx, DaemonInfo, SnapshotOutcome, SnapshotRequest};
use crate::protocol::{ErrorCode, Request, Response};
use crate::store::Store;

pub mod activation;
pub mod schedule;
pub mod sdnotify;
pub mod server;
pub mod watch;

/// How long shutdown waits for in-flight work before exiting anyway.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(20);

/// What the worker is asked to do.
#[derive(Debug)]
pub enum JobKind {
    /// A protocol request that changes the store.
    Request(Request),
    /// A scheduled snapshot, skipped when nothing changed, then retention.
    Scheduled,
    /// A snapshot after the database changed and settled, then retention.
    Changed,
}

#[derive(Debug)]
pub struct Job {
    pub kind: JobKind,
    pub reply: oneshot::Sender<Response>,
}

/// State shared by the tasks (never locked across an `.await`).
#[derive(Debug, Default)]
pub struct State {
    pub info: DaemonInfo,
    /// Database (size, mtime, inode) and WAL (size, mtime) at the last
    /// snapshot or skip; the scheduler skips while they are unchanged.
    pub fingerprint: Option<Fingerprint>,
    pub last_snapshot_at: Option<Instant>,
}

pub type Fingerprint = (u64, i64, i64, u64, Option<(u64, i64, i64)>);

/// Cheap change detector for the database and its WAL.
pub fn fingerprint(db: &Path) -> Option<Fingerprint> {
    let m = std::fs::metadata(db).ok()?;
    let w = std::fs::metadata(crate::database::duckfile::wal_path(db))
        .ok()
        .map(|w| (w.len(), w.mtime(), w.mtime_nsec()));
    Some((m.len(), m.mtime(), m.mtime_nsec(), m.ino(), w))
}

/// Handles shared by every task.
#[derive(Clone)]
pub struct Shared {
    pub ctx: tokio::sync::watch::Receiver<Arc<Ctx>>,
    pub jobs: mpsc::Sender<Job>,
    pub state: Arc<Mutex<State>>,
    pub token: CancellationToken,
}

impl Shared {
    pub fn ctx(&self) -> Arc<Ctx> {
        self.ctx.borrow().clone()
    }

    pub fn info(&self) -> DaemonInfo {
        self.state.lock().expect("state lock").info.clone()
    }

    /// Queues a job and waits for its answer.
    pub async fn submit(&self, kind: JobKind) -> Response {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job { kind, reply: tx }).await.is_err() {
            return Response::err(ErrorCode::ShuttingDown, "the daemon is shutting down");
        }
        rx.await.unwrap_or_else(|_| {
            Response::err(ErrorCode::ShuttingDown, "the daemon is shutting down")
        })
    }
}

/// Reloads the config the daemon was started with.
pub type Reload = Box<dyn Fn() -> Result<Config, ConfigError> + Send>;

/// Runs the daemon until a signal stops it. Returns the exit code.
pub fn run(ctx: Ctx, env: HostEnv, reload: Reload) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run_async(ctx, env, reload));
    // A job abandoned at the shutdown bound must not hold the exit.
    rt.shutdown_background();
    result
}

async fn run_async(ctx: Ctx, env: HostEnv, reload: Reload) -> anyhow::Result<u8> {
    let notifier = Notifier::from_env(&env);
    let cloud = ctx.detection.is_cloud();
    if cloud {
        tracing::warn!(
            event = "daemon.cloud_mode",
            signals = %ctx.detection.fired().join(","),
            "{}; the daemon idles and answers every request with the disabled result",
            environment::disabled_message(&ctx.detection)
        );
    } else {
        // Open (create) the store now: cleans staging, checks the format.
        Store::open(
            &ctx.config.store.dir,
            true,
            ctx.config.store.compression_level,
        )?;
        crate::ops::restore::journal::recover(&ctx.config.database.path)?;
        // One DuckDB instance for every check: a pre-delete snapshot then
        // does not pay for starting one.
        crate::database::check::keep_instance();
        if !ctx.config.database.path.exists() {
            tracing::warn!(event = "watch.database_missing", database = %ctx.config.database.path.display(), "the database does not exist yet; snapshots start when it appears");
        }
    }
    let socket_path = ctx.config.socket.path.clone();
    let (listener, socket_ino) = match crate::daemon::activation::inherited_listener(&env)? {
        Some(std) => {
            tracing::info!(
                event = "socket.activated",
                "using the socket passed by systemd (socket activation)"
            );
            // systemd owns the socket file: never remove it on exit.
            (tokio::net::UnixListener::from_std(std)?, None)
        }
        None => {
            let l = crate::daemon::server::bind(&socket_path)?;
            (l, std::fs::metadata(&socket_path).map(|m| m.ino()).ok())
        }
    };

    let token = CancellationToken::new();
    let (ctx_tx, ctx_rx) = tokio::sync::watch::channel(Arc::new(ctx));
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(1024);
    let state = Arc::new(Mutex::new(State {
        info: DaemonInfo {
            pid: std::process::id(),
            started_at: Some(Utc::now()),
            ..Default::default()
        },
        ..Default::default()
    }));
    let shared = Shared {
        ctx: ctx_rx,
        jobs: jobs_tx,
        state,
        token: token.clone(),
    };

    let mut tasks = JoinSet::new();
    tasks.spawn(worker(shared.clone(), jobs_rx));
    tasks.spawn(crate::daemon::server::serve(shared.clone(), listener));
    if !cloud {
        tasks.spawn(scheduler(shared.clone()));
        tasks.spawn(crate::daemon::watch::watcher(shared.clone()));
    }
    if let Some(every) = notifier.watchdog_interval() {
        let (n, t) = (notifier.clone(), token.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = t.cancelled() => break,
                    _ = tick.tick() => n.watchdog(),
                }
            }
        });
    }

    let (sig_tx, mut sig_rx) = mpsc::unbounded_channel();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])?;
    let sig_handle = signals.handle();
    std::thread::spawn(move || {
        for s in signals.forever() {
            if sig_tx.send(s).is_err() {
                break;
            }
        }
    });

    let mode = if cloud {
        "cloud mode: backups disabled"
    } else {
        "watching"
    };
    let ready_msg = format!("{mode}; socket {}", socket_path.display());
    tracing::info!(event = "daemon.ready", socket = %socket_path.display(), cloud, "daemon ready");
    notifier.ready(&ready_msg);

    // Main loop: signals.
    loop {
        match sig_rx.recv().await {
            Some(signal_hook::consts::SIGHUP) => {
                notifier.reloading();
                match reload() {
                    Ok(config) => {
                        let old = shared.ctx();
                        let detection =
                            environment::detect(&env, &config.database.path, config.database.mode);
                        if detection.mode != old.detection.mode {
                            tracing::warn!(
                                event = "daemon.reload_mode",
                                "the new config changes the mode; restart the daemon for that to take effect"
                            );
                        }
                        if config.socket.path != old.config.socket.path {
                            tracing::warn!(
                                event = "daemon.reload_socket",
                                "socket.path changed; restart the daemon for that to take effect"
                            );
                        }
                        let new = Ctx {
                            config,
                            detection: old.detection.clone(),
                        };
                        let _ = ctx_tx.send(Arc::new(new));
                        record(&shared, "reload", Ok(()));
                        tracing::info!(event = "daemon.reloaded", "configuration reloaded");
                    }
                    Err(e) => {
                        tracing::error!(event = "daemon.reload_failed", error = %e, "invalid configuration; keeping the previous one");
                        record(&shared, "reload", Err(e.to_string()));
                    }
                }
                notifier.ready(&ready_msg);
            }
            Some(sig) => {
                tracing::info!(
                    event = "daemon.stopping",
                    signal = sig,
                    "stopping: finishing in-flight work"
                );
                notifier.stopping();
                break;
            }
            None => break,
        }
    }
    token.cancel();
    let deadline = tokio::time::sleep(SHUTDOWN_BOUND);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => {
                if next.is_none() {
                    break;
                }
            }
            _ = &mut deadline => {
                tracing::warn!(event = "daemon.shutdown_timeout", "in-flight work did not finish in time; abandoning it (the store stays consistent)");
                break;
            }
            Some(_) = sig_rx.recv() => {
                tracing::warn!(event = "daemon.second_signal", "second signal: exiting at once");
                remove_socket(&socket_path, socket_ino);
                std::process::exit(0);
            }
        }
    }
    sig_handle.close();
    remove_socket(&socket_path, socket_ino);
    tracing::info!(event = "daemon.stopped", "daemon stopped");
    Ok(0)
}

/// Removes the socket file if it is still ours (`ino` is `None` for a
/// socket systemd passed us).
fn remove_socket(path: &PathBuf, ino: Option<u64>) {
    if ino.is_some() && std::fs::metadata(path).map(|m| m.ino()).ok() == ino {
        let _ = std::fs::remove_file(path);
    }
}

/// The one task that runs store mutations, in queue order.
async fn worker(shared: Shared, mut jobs: mpsc::Receiver<Job>) {
    loop {
        let job = tokio::select! {
            _ = shared.token.cancelled() => break,
            job = jobs.recv() => match job { Some(j) => j, None => break },
        };
        let s = shared.clone();
        let answer = tokio::task::spawn_blocking(move || run_job(&s, job.kind))
            .await
            .unwrap_or_else(|e| Response::err(ErrorCode::Failed, format!("internal error: {e}")));
        let _ = job.reply.send(answer);
    }
    // Anything still queued gets a clear answer.
    jobs.close();
    while let Some(job) = jobs.recv().await {
        let _ = job.reply.send(Response::err(
            ErrorCode::ShuttingDown,
            "the daemon is shutting down",
        ));
    }
}

/// The kind of work an error belongs to, so that a later success of the
/// same kind clears it.
fn work_kind(what: &str) -> &str {
    match what {
        "snapshot" | "scheduled" | "change" => "snapshot",
        other => other,
    }
}

/// Records how a piece of the daemon's work went: a failure becomes the
/// last error (with its time), a success clears an error of its kind.
pub(crate) fn record(shared: &Shared, what: &str, outcome: Result<(), String>) {
    let kind = work_kind(what);
    let mut st = shared.state.lock().expect("state lock");
    match outcome {
        Ok(()) => {
            if st.info.last_error.as_ref().is_some_and(|e| e.what == kind) {
                st.info.last_error = None;
            }
        }
        Err(message) => {
            st.info.last_error = Some(ops::LastError {
                at: Utc::now(),
                what: kind.to_string(),
                message,
            });
        }
    }
}

fn set_result(shared: &Shared, what: &str, r: &Response) {
    shared.state.lock().expect("state lock").info.last_run = Some(format!(
        "{} {what}: {}",
        Utc::now().to_rfc3339(),
        if r.ok { "ok" } else { "failed" }
    ));
    match &r.error {
        None => record(shared, what, Ok(())),
        Some(e) if e.code.is_refusal() => {}
        Some(e) => record(shared, what, Err(e.message.clone())),
    }
}

/// Runs one job (blocking).
fn run_job(shared: &Shared, kind: JobKind) -> Response {
    let ctx = shared.ctx();
    match kind {
        JobKind::Request(req) => {
            let what = req.name();
            let is_snapshot = matches!(req, Request::Snapshot { .. });
            let r = dispatch::handle(&ctx, req, shared.info());
            if is_snapshot && r.ok {
                note_snapshot(shared, &ctx.config.database.path);
            }
            set_result(shared, what, &r);
            r
        }
        JobKind::Scheduled | JobKind::Changed => {
            let scheduled = matches!(kind, JobKind::Scheduled);
            let db = &ctx.config.database.path;
            let now_fp = fingerprint(db);
            if now_fp.is_none() {
                tracing::info!(event = "schedule.skipped", reason = "database missing", database = %db.display(), "scheduled snapshot skipped: the database does not exist");
                return Response::ok(serde_json::json!({"skipped": "database missing"}));
            }
            if scheduled && now_fp == shared.state.lock().expect("state lock").fingerprint {
                tracing::info!(
                    event = "schedule.skipped",
                    reason = "unchanged",
                    "scheduled snapshot skipped: the database has not changed since the last snapshot"
                );
                return Response::ok(serde_json::json!({"skipped": "unchanged"}));
            }
            let req = SnapshotRequest {
                reason: if scheduled {
                    "scheduled".into()
                } else {
                    "change".into()
                },
                label: None,
                pin: false,
                skip_unchanged: true,
            };
            let r = match ops::snapshot(&ctx, &req) {
                Ok(o) => {
                    note_snapshot_fp(
                        shared,
                        now_fp,
                        !matches!(o, SnapshotOutcome::Unchanged { .. }),
                    );
                    Response::ok(dispatch::snapshot_json(&o))
                }
                Err(e) => Response::err(e.code(), e.to_string()),
            };
            set_result(shared, &req.reason, &r);
            if r.ok {
                match ops::prune(&ctx, false) {
                    Ok(p) => {
                        if p.removed > 0 {
                            tracing::info!(
                                event = "retention.applied",
                                removed = p.removed,
                                bytes_freed = p.bytes_freed,
                                "retention removed old snapshots"
                            )
                        }
                        record(shared, "retention", Ok(()));
                    }
                    Err(e) => {
                        tracing::error!(event = "retention.failed", error = %e, "retention failed");
                        record(shared, "retention", Err(e.to_string()));
                    }
                }
            } else if let Some(e) = &r.error {
                tracing::error!(event = "schedule.failed", code = %e.code, error = %e.message, "scheduled snapshot failed");
            }
            r
        }
    }
}

fn note_snapshot(shared: &Shared, db: &Path) {
    note_snapshot_fp(shared, fingerprint(db), true);
}

fn note_snapshot_fp(shared: &Shared, fp: Option<Fingerprint>, taken: bool) {
    let mut st = shared.state.lock().expect("state lock");
    st.fingerprint = fp;
    if taken {
        st.last_snapshot_at = Some(Instant::now());
    }
}

/// Fires scheduled jobs; see [`crate::daemon::schedule`] for why it is a loop.
async fn scheduler(shared: Shared) {
    const RECHECK: Duration = Duration::from_secs(60);
    let mut ctx_rx = shared.ctx.clone();
    let mut next = crate::daemon::schedule::next_after(&shared.ctx().config.schedule, Utc::now());
    loop {
        shared.state.lock().expect("state lock").info.next_run = next;
        let wait = match next {
            Some(n) => (n - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(RECHECK),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = shared.token.cancelled() => break,
            changed = ctx_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                next = crate::daemon::schedule::next_after(&shared.ctx().config.schedule, Utc::now());
                tracing::info!(event = "schedule.reloaded", next_run = ?next, "schedule reloaded");
                continue;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(planned) = next else { continue };
        match crate::daemon::schedule::due(planned, Utc::now(), chrono::Duration::seconds(5)) {
            crate::daemon::schedule::Due::NotYet => continue,
            crate::daemon::schedule::Due::OnTime => {}
            crate::daemon::schedule::Due::Missed { late_seconds } => {
                tracing::warn!(event = "schedule.missed", planned = %planned.to_rfc3339(), late_seconds, "a scheduled run was missed (suspend or clock jump?); running it once now");
            }
        }
        tracing::debug!(event = "schedule.fire", planned = %planned.to_rfc3339(), "scheduled run");
        let r = shared.submit(JobKind::Scheduled).await;
        if r.error
            .as_ref()
            .is_some_and(|e| e.code == ErrorCode::ShuttingDown)
        {
            break;
        }
        // Slots missed while that ran (or while suspended) run once, not many times.
        next = crate::daemon::schedule::next_after(&shared.ctx().config.schedule, Utc::now());
    }
}

/// When the last snapshot was taken, for the watcher's minimum interval.
pub fn since_last_snapshot(shared: &Shared) -> Option<Duration> {
    shared
        .state
        .lock()
        .expect("state lock")
        .last_snapshot_at
        .map(|t| t.elapsed())
}
