//! The archiver task: runs the WAL tailer (`archive::tail`) for the
//! configured database while `[continuous] enabled`, follows a reload to
//! another database or store, and turns the tailer's wish for a base image
//! into a snapshot job (coalesced: wishes that arrive while one runs make
//! one more). The worker offers every snapshot it takes or finds unchanged
//! to the tailer as a base (`worker::offer_base`).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::jobs::{JobKind, Queue, Settings, StateHandle};
use super::sdnotify::Notifier;
use crate::archive::tail::{self, Tailer, Want};
use crate::protocol::ErrorCode;

pub struct Archiver {
    pub settings: Settings,
    pub queue: Queue,
    pub state: StateHandle,
    pub notifier: Notifier,
    pub token: CancellationToken,
}

pub async fn archiver(a: Archiver) {
    let mut changes = a.settings.clone();
    loop {
        let ctx = changes.borrow_and_update().clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<Want>();
        let tailer = if ctx.config.continuous.enabled && !ctx.detection.is_cloud() {
            start(&ctx, tx).await
        } else {
            None
        };
        tokio::select! {
            _ = a.token.cancelled() => return,
            _ = bases(&a, &mut rx) => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        drop(tailer);
    }
}

/// Starts the tailer on a blocking thread (it makes its first pass first).
async fn start(ctx: &crate::ops::Ctx, tx: mpsc::UnboundedSender<Want>) -> Option<Arc<Tailer>> {
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        let db = ctx.config.database.path.clone();
        let store = match crate::ops::context::open_store(&ctx, true) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(event = "archive.no_store", error = %e, "cannot open the store: WAL archiving is off");
                return None;
            }
        };
        let want = Box::new(move |w| {
            let _ = tx.send(w);
        });
        match Tailer::start(&db, store, ctx.config.store.compression_level, want) {
            Ok(t) => {
                let t = Arc::new(t);
                tail::register(&db, &t);
                tracing::info!(event = "archive.started", database = %db.display(), "archiving the WAL as the app commits");
                Some(t)
            }
            Err(e) => {
                tracing::error!(event = "archive.failed", error = %e, "cannot start following the WAL: archiving is off");
                None
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Runs a base snapshot for every wish for one (those arriving during one
/// fold into the next), and sends `STATUS=` again when archiving starts
/// or stops failing. Returns when the daemon stops.
async fn bases(a: &Archiver, rx: &mut mpsc::UnboundedReceiver<Want>) {
    while let Some(first) = rx.recv().await {
        let (mut base, mut health) = (false, false);
        for w in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match w {
                Want::Base => base = true,
                Want::Health => health = true,
            }
        }
        if health {
            let ctx = a.settings.borrow().clone();
            let (st, n) = (a.state.clone(), a.notifier.clone());
            let _ = tokio::task::spawn_blocking(move || {
                super::worker::send_status(&ctx, &st, &n);
            })
            .await;
        }
        if !base {
            continue;
        }
        let r = a.queue.submit(JobKind::Base).await;
        if r.error
            .as_ref()
            .is_some_and(|e| e.code == ErrorCode::ShuttingDown)
        {
            return;
        }
    }
    std::future::pending::<()>().await;
}
