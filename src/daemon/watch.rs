//! Watching the database: its parent directory (DuckDB rewrites in place; a
//! restore or the app may replace the file by rename) and, when the
//! configured path is a link, the real file's directory (DuckDB resolves
//! the link and keeps its WAL beside the real file), filtered to the
//! database and its WAL, debounced. Logs when the database disappears and
//! when it appears; with `watch.snapshot_on_change`, queues a snapshot once
//! the database has been quiet for `quiet_period`, at most once per
//! `min_interval` (a change within it is deferred to its end, not dropped).
//! A reload starts it over with the new database path and `[watch]`. Falls back to polling, with a warning, when inotify
//! cannot be used.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use tokio_util::sync::CancellationToken;

use super::jobs::{JobKind, Queue, Settings, StateHandle};
use crate::config::WatchConfig;
use crate::protocol::ErrorCode;

/// The directories to watch and the file names that matter in them: the
/// configured path's directory (the database, or a link to it, replaced by
/// rename) and, when the path is a link, the real file's directory, where
/// DuckDB writes the file and puts its WAL.
fn targets(db: &Path) -> (Vec<PathBuf>, Vec<OsString>) {
    let dir_of = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    let mut dirs = vec![dir_of(db)];
    let mut names = Vec::new();
    let real = crate::database::dbpath::real_path(db).unwrap_or_else(|_| db.to_path_buf());
    for p in [db, real.as_path()] {
        let Some(name) = p.file_name() else { continue };
        let mut wal = name.to_os_string();
        wal.push(".wal");
        names.extend([name.to_os_string(), wal]);
    }
    if real.parent() != db.parent() {
        dirs.push(dir_of(&real));
    }
    (dirs, names)
}

/// Watches every directory in `dirs` with `w`.
fn watch_all<W: Watcher>(mut w: W, dirs: &[PathBuf]) -> notify::Result<W> {
    for d in dirs {
        w.watch(d, RecursiveMode::NonRecursive)?;
    }
    Ok(w)
}

/// Starts the watcher that sends `()` for each relevant event.
fn start(db: &Path, tx: mpsc::UnboundedSender<()>) -> Option<Box<dyn Watcher + Send>> {
    let (dirs, names) = targets(db);
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let shown = shown.join(", ");
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if matches!(ev.kind, EventKind::Access(_)) {
            return;
        }
        let relevant = ev.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|f| names.iter().any(|n| n.as_os_str() == f))
        });
        if relevant {
            let _ = tx.send(());
        }
    };
    match notify::RecommendedWatcher::new(handler.clone(), notify::Config::default())
        .and_then(|w| watch_all(w, &dirs))
    {
        Ok(w) => Some(Box::new(w)),
        Err(e) => {
            tracing::warn!(event = "watch.polling", error = %e, directory = %shown, "inotify is not available; falling back to polling every 2s");
            let cfg = notify::Config::default().with_poll_interval(Duration::from_secs(2));
            match notify::PollWatcher::new(handler, cfg).and_then(|w| watch_all(w, &dirs)) {
                Ok(w) => Some(Box::new(w)),
                Err(e) => {
                    tracing::error!(event = "watch.failed", error = %e, directory = %shown, "cannot watch the database directory; scheduled snapshots still run");
                    None
                }
            }
        }
    }
}

/// What the watcher needs: the settings (database path and `[watch]`,
/// followed on reload), the queue, the state (when the last snapshot was
/// taken), and the shutdown token.
pub struct Watch {
    pub settings: Settings,
    pub queue: Queue,
    pub state: StateHandle,
    pub token: CancellationToken,
}

/// The watcher task: watches the configured database until cancelled, and
/// starts over with the new path and `[watch]` section after a reload.
pub async fn watcher(w: Watch) {
    let mut changes = w.settings.clone();
    loop {
        let ctx = changes.borrow_and_update().clone();
        let db = ctx.config.database.path.clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watcher = if ctx.config.watch.enabled {
            start(&db, tx)
        } else {
            None
        };
        tokio::select! {
            _ = w.token.cancelled() => return,
            _ = watch_one(&w, &db, &mut rx) => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                tracing::info!(event = "watch.reloaded", database = %w.settings.borrow().config.database.path.display(), "watcher follows the reloaded config");
            }
        }
    }
}

/// Watches `db` through the events on `rx` until cancelled.
async fn watch_one(w: &Watch, db: &Path, rx: &mut mpsc::UnboundedReceiver<()>) {
    let ino = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
    };
    let mut present = db.exists();
    let mut last_ino = ino(db);
    loop {
        if rx.recv().await.is_none() {
            // Not watching (disabled, or no watcher could start): idle
            // until a reload or shutdown ends this.
            std::future::pending::<()>().await;
        }
        let cfg = w.settings.borrow().config.watch.clone();
        // Debounce: wait until no event for `debounce`.
        if !quiet_for(w, rx, cfg.debounce.0).await {
            return;
        }
        let exists = db.exists();
        if present && !exists {
            tracing::warn!(event = "watch.database_missing", database = %db.display(), "the database disappeared; snapshots pause until it is back");
        } else if !present && exists {
            tracing::info!(event = "watch.database_appeared", database = %db.display(), "the database appeared; snapshots resume");
        } else if exists && ino(db) != last_ino {
            tracing::info!(event = "watch.database_replaced", database = %db.display(), "the database file was replaced");
        } else {
            tracing::debug!(event = "watch.changed", database = %db.display(), "database changed");
        }
        present = exists;
        last_ino = ino(db);
        if cfg.snapshot_on_change && exists && !snapshot_when_settled(w, rx, &cfg).await {
            return;
        }
    }
}

/// Waits for `quiet_period` and the end of `min_interval` (a change within
/// it is deferred, never dropped; later events fold into it), then queues a
/// snapshot. False when the daemon is stopping.
async fn snapshot_when_settled(
    w: &Watch,
    rx: &mut mpsc::UnboundedReceiver<()>,
    cfg: &WatchConfig,
) -> bool {
    if !quiet_for(w, rx, cfg.quiet_period.0).await {
        return false;
    }
    while let Some(rest) = w
        .state
        .since_last_snapshot()
        .and_then(|d| cfg.min_interval.0.checked_sub(d))
        .filter(|r| !r.is_zero())
    {
        tracing::debug!(
            event = "watch.deferred",
            wait_ms = rest.as_millis() as u64,
            "change noted; snapshot deferred until watch.min_interval has passed"
        );
        if !absorb_for(w, rx, rest).await {
            return false;
        }
    }
    let r = w.queue.submit(JobKind::Changed).await;
    !r.error
        .as_ref()
        .is_some_and(|e| e.code == ErrorCode::ShuttingDown)
}

/// Waits `span`, folding the events that arrive meanwhile into the pending
/// change. False when cancelled.
async fn absorb_for(w: &Watch, rx: &mut mpsc::UnboundedReceiver<()>, span: Duration) -> bool {
    let end = tokio::time::sleep(span);
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = w.token.cancelled() => return false,
            _ = &mut end => return true,
            ev = rx.recv() => if ev.is_none() { return false },
        }
    }
}

/// Waits until no event arrives for `quiet`. False when cancelled.
async fn quiet_for(w: &Watch, rx: &mut mpsc::UnboundedReceiver<()>, quiet: Duration) -> bool {
    loop {
        tokio::select! {
            _ = w.token.cancelled() => return false,
            _ = tokio::time::sleep(quiet) => return true,
            ev = rx.recv() => if ev.is_none() { return false },
        }
    }
}
