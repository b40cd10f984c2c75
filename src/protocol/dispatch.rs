//! Answers one protocol [`Request`] with one [`Response`] by calling the
//! operation of the same name in [`crate::ops`]. Blocking: the daemon runs it
//! on a blocking thread (mutations one at a time, in queue order).

use crate::ops::{self, Ctx, DaemonInfo, OpError, SnapshotReply};
use crate::protocol::{Hello, PROTOCOL_VERSION, Request, Response};

/// An operation's typed result as the wire's answer: the only place one
/// becomes a [`Response`].
pub fn answer<T: serde::Serialize>(r: Result<T, OpError>) -> Response {
    match r {
        Ok(v) => Response::ok(serde_json::to_value(v).expect("result serializes")),
        Err(e) => Response::err(e.code(), e.to_string()),
    }
}

/// What this daemon says about itself.
pub fn hello(ctx: &Ctx) -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        mode: ctx.detection.mode,
        mode_reason: ctx.detection.reason.clone(),
        signals_fired: ctx.detection.fired_names(),
        store: ctx.config.store.dir.clone(),
        database: ctx.config.database.path.clone(),
        pid: std::process::id().into(),
        continuous: ctx.config.continuous.enabled && !ctx.detection.is_cloud(),
    }
}

/// Handles one request. `daemon` is the daemon's own state for `status`.
pub fn handle(ctx: &Ctx, req: Request, daemon: DaemonInfo) -> Response {
    match req {
        Request::Hello { .. } => answer(Ok(hello(ctx))),
        Request::Ping {} => Response::ok(serde_json::json!("pong")),
        Request::Status {} => answer(ops::status(ctx, Some(daemon))),
        Request::Snapshot(r) => answer(ops::snapshot(ctx, &r).map(SnapshotReply::from)),
        Request::List {} => answer(ops::list(ctx).map(|l| l.snapshots)),
        Request::Show(r) => answer(ops::show(ctx, &r)),
        Request::Restore(r) => answer(ops::restore(ctx, &r)),
        Request::Rescue(r) => answer(ops::rescue(ctx, &r)),
        Request::Verify(r) => answer(ops::verify(ctx, &r)),
        Request::Prune(r) => answer(ops::prune(ctx, &r)),
        Request::Pin(r) => answer(ops::pin(ctx, &r, true)),
        Request::Unpin(r) => answer(ops::pin(ctx, &r, false)),
        Request::Diff(mut r) => {
            r.limit = r.limit.min(ops::diff::SOCKET_ROW_CAP);
            answer(ops::diff(ctx, &r))
        }
        Request::Export(r) => answer(ops::export(ctx, &r)),
    }
}
