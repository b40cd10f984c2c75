//! Answers one protocol [`Request`] with one [`Response`] by calling the
//! operation of the same name in [`crate::ops`]. Blocking: the daemon runs it
//! on a blocking thread (mutations one at a time, in queue order).

use serde_json::{Value, json};

use crate::ops::{self, Ctx, DaemonInfo, OpError, SnapshotOutcome, SnapshotRequest};
use crate::protocol::{PROTOCOL_VERSION, Request, Response};

fn answer<T: serde::Serialize>(r: Result<T, OpError>) -> Response {
    match r {
        Ok(v) => Response::ok(serde_json::to_value(v).expect("result serializes")),
        Err(e) => Response::err(e.code(), e.to_string()),
    }
}

/// Snapshot outcome as the protocol shows it.
pub fn snapshot_json(o: &SnapshotOutcome) -> Value {
    match o {
        SnapshotOutcome::Disabled { reason } => {
            json!({"snapshot": null, "disabled": true, "reason": reason})
        }
        SnapshotOutcome::Created(m) => json!({"snapshot": m, "disabled": false}),
        SnapshotOutcome::Unchanged { since } => {
            json!({"snapshot": null, "disabled": false, "unchanged": true, "since": since})
        }
    }
}

/// Handles one request. `daemon` is the daemon's own state for `status`.
pub fn handle(ctx: &Ctx, req: Request, daemon: DaemonInfo) -> Response {
    match req {
        Request::Hello { .. } => Response::ok(json!({
            "protocol": PROTOCOL_VERSION,
            "version": env!("CARGO_PKG_VERSION"),
            "mode": ctx.detection.mode,
            "mode_reason": ctx.detection.reason,
            "signals_fired": ctx.detection.fired(),
            "store": ctx.config.store.dir,
            "database": ctx.config.database.path,
            "pid": std::process::id(),
        })),
        Request::Ping {} => Response::ok(json!("pong")),
        Request::Status {} => answer(ops::status(ctx, Some(daemon))),
        Request::Snapshot { reason, label, pin } => {
            let req = SnapshotRequest {
                reason,
                label,
                pin,
                skip_unchanged: false,
            };
            match ops::snapshot(ctx, &req) {
                Ok(o) => Response::ok(snapshot_json(&o)),
                Err(e) => Response::err(e.code(), e.to_string()),
            }
        }
        Request::List {} => match ops::list(ctx) {
            Ok(l) => Response::ok(serde_json::to_value(&l.snapshots).expect("list serializes")),
            Err(e) => Response::err(e.code(), e.to_string()),
        },
        Request::Show { id } => answer(ops::show(ctx, &id)),
        Request::Restore {
            id,
            to,
            force,
            check,
        } => answer(ops::restore(
            ctx,
            &ops::RestoreRequest {
                id,
                to,
                force,
                check,
            },
        )),
        Request::Verify { id, deep } => answer(ops::verify(ctx, id.as_deref(), deep)),
        Request::Prune { dry_run } => answer(ops::prune(ctx, dry_run)),
        Request::Pin { id } => answer(ops::pin(ctx, &id, true)),
        Request::Unpin { id } => answer(ops::pin(ctx, &id, false)),
    }
}
