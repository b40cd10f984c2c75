//! How a command reaches its operation: through the daemon's socket when a
//! daemon serves this store and database (so it queues behind the daemon's
//! work, and the daemon's mode decides), else directly with the same
//! dispatch; and the daemon's error answers as the CLI's errors.

use crate::config::{self, HostEnv};
use crate::environment;
use crate::ops::{self, Ctx};
use crate::protocol::dispatch;
use crate::protocol::{Call, ErrorCode, Request, Response};

use super::client;

/// An operation error that came back over the socket (or from the local
/// dispatch), with its code in the one table.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub code: ErrorCode,
    pub message: String,
}

impl RemoteError {
    /// The documented exit code for the answer's error code.
    pub fn exit_code(&self) -> u8 {
        self.code.exit_code()
    }
}

/// The result of an answer, or its error as a [`RemoteError`].
pub fn answer(resp: Response) -> anyhow::Result<serde_json::Value> {
    match (resp.ok, resp.result, resp.error) {
        (true, Some(v), _) => Ok(v),
        (_, _, Some(e)) => Err(RemoteError {
            code: e.code,
            message: e.message,
        }
        .into()),
        _ => Err(anyhow::anyhow!("malformed answer from the daemon")),
    }
}

/// One truth about the mode: unless `$DUCKSNAP_MODE` says otherwise in
/// this shell, a daemon serving this store decides (so that `list`, which
/// reads the store here, and `restore`, which the daemon runs, agree
/// whatever `STREAMLIT_*` variables the shell has).
pub fn adopt_daemon_mode(ctx: &mut Ctx, env: &HostEnv) -> anyhow::Result<()> {
    if config::mode_from_env(env)?.is_some() {
        return Ok(());
    }
    if let Some((_, hello)) = client::daemon_for(ctx)? {
        if hello.mode != ctx.detection.mode {
            tracing::info!(event = "env.daemon_decides", daemon = %hello.mode, here = %ctx.detection.mode, "the running daemon's mode differs from this shell's detection; using the daemon's");
        }
        ctx.detection =
            environment::Detection::from_daemon(hello.mode, &hello.mode_reason, hello.pid);
    }
    Ok(())
}

/// The daemon to send a request to: one serving this store and database,
/// in local mode, while this command is in local mode too (in cloud mode
/// the local dispatch gives the documented "disabled" answers).
pub fn forward_to(ctx: &Ctx) -> anyhow::Result<Option<client::Client>> {
    if ctx.detection.is_cloud() {
        return Ok(None);
    }
    Ok(client::daemon_for(ctx)?
        .filter(|(_, hello)| hello.mode == environment::Mode::Local)
        .map(|(c, _)| c))
}

/// Runs a request through the daemon when one serves this store, else
/// directly with the same dispatch; returns its typed result.
pub fn call<R: serde::de::DeserializeOwned>(ctx: &Ctx, c: Call<R>) -> anyhow::Result<R> {
    Ok(serde_json::from_value(call_value(ctx, c.request)?)?)
}

fn call_value(ctx: &Ctx, req: Request) -> anyhow::Result<serde_json::Value> {
    let resp = match forward_to(ctx)? {
        Some(mut c) => {
            tracing::debug!(
                event = "client.via_daemon",
                "sending the request to the running daemon"
            );
            c.call(&req)?
        }
        None => dispatch::handle(ctx, req, ops::DaemonInfo::default()),
    };
    answer(resp)
}
