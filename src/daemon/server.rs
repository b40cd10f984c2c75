//! The daemon's Unix socket: binding (refusing when another daemon answers,
//! replacing a stale file), accepting with a connection cap, and serving
//! newline-delimited JSON with a bounded line length, an idle timeout and a
//! peer uid check. Requests that change the store go through the worker's
//! queue; reads are answered directly on a blocking thread.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use tokio_util::sync::CancellationToken;

use super::jobs::{JobKind, Queue, Settings, StateHandle};
use crate::protocol::dispatch;
use crate::protocol::{self, ErrorCode, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "another ducksnap daemon is already answering on {path}; stop it first (systemctl --user stop ducksnap)"
    )]
    InUse { path: PathBuf },
    #[error(
        "refusing the socket directory {dir}: {reason}; another user could replace the socket and answer \
         in the daemon's place. Remove it (it is recreated private) or set socket.path to a file in a \
         directory that only you own and can write (such as $XDG_RUNTIME_DIR)"
    )]
    UnsafeDir { dir: PathBuf, reason: String },
    #[error("cannot {op} socket {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the socket with mode 0600, creating a private (0700) parent
/// directory when missing. A socket file nobody answers on is stale and
/// replaced; one a live daemon answers on is refused.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let io = |op: &'static str| {
        move |source| BindError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io("create the directory of"))?;
            }
            Err(e) => return Err(io("inspect the directory of")(e)),
            Ok(m) => check_dir(dir, &m)?,
        }
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse {
                path: path.to_path_buf(),
            });
        }
        tracing::info!(event = "socket.stale_removed", socket = %path.display(), "removing a stale socket file");
        std::fs::remove_file(path).map_err(io("remove stale"))?;
    }
    let listener = UnixListener::bind(path).map_err(io("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("set the mode of"))?;
    Ok(listener)
}

/// A socket directory is safe when it is a real directory (not a link) that
/// this user owns and that neither group nor others can write.
fn check_dir(dir: &Path, m: &std::fs::Metadata) -> Result<(), BindError> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::getuid().as_raw();
    let reason = if m.file_type().is_symlink() {
        "it is a symbolic link".to_string()
    } else if !m.is_dir() {
        "it is not a directory".to_string()
    } else if m.uid() != me {
        format!("it belongs to uid {}, not to you (uid {me})", m.uid())
    } else if m.mode() & 0o022 != 0 {
        format!(
            "group or others can write it (mode {:o})",
            m.mode() & 0o7777
        )
    } else {
        return Ok(());
    };
    Err(BindError::UnsafeDir {
        dir: dir.to_path_buf(),
        reason,
    })
}

/// What the server's connections need: the settings (for reads and limits),
/// the queue (for requests that change the store), the state (for
/// `status`), and the shutdown token.
#[derive(Clone)]
pub struct Server {
    pub settings: Settings,
    pub queue: Queue,
    pub state: StateHandle,
    pub token: CancellationToken,
}

impl Server {
    fn ctx(&self) -> std::sync::Arc<crate::ops::Ctx> {
        self.settings.borrow().clone()
    }
}

/// Accepts connections until cancelled; waits for open connections to end.
pub async fn serve(shared: Server, listener: UnixListener) {
    let max = shared.ctx().config.socket.max_connections as usize;
    let permits = Arc::new(Semaphore::new(max));
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shared.token.cancelled() => break,
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(event = "socket.accept_failed", error = %e, "accept failed");
                // EMFILE and friends: back off briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let mut s = stream;
            let line = Response::err(
                ErrorCode::TooManyConnections,
                format!("the daemon serves at most {max} connections at once; try again"),
            )
            .to_line();
            conns.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), s.write_all(&line)).await;
            });
            continue;
        };
        let s = shared.clone();
        conns.spawn(async move {
            connection(s, stream).await;
            drop(permit);
        });
    }
    // Open connections see the token and finish their current request.
    while conns.join_next().await.is_some() {}
}

enum Line {
    Complete,
    Eof,
    TooLong,
}

/// Reads one line into `buf` (newline stripped), never more than `max` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > max + 1 {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if done {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Line::Complete);
        }
    }
}

async fn connection(shared: Server, stream: UnixStream) {
    let my_uid = nix::unistd::getuid().as_raw();
    let (max_line, idle) = {
        let c = shared.ctx();
        (
            c.config.socket.max_line.0 as usize,
            c.config.socket.idle_timeout.0,
        )
    };
    let peer = stream.peer_cred().map(|c| c.uid()).ok();
    let (r, mut w) = stream.into_split();
    if peer != Some(my_uid) {
        tracing::warn!(event = "socket.unauthorized", peer_uid = ?peer, "refused a connection from another user");
        let line = Response::err(
            ErrorCode::Unauthorized,
            "this daemon serves only its own user",
        )
        .to_line();
        let _ = tokio::time::timeout(Duration::from_secs(1), w.write_all(&line)).await;
        return;
    }
    let mut reader = BufReader::with_capacity(8192, r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = tokio::select! {
            _ = shared.token.cancelled() => break,
            r = tokio::time::timeout(idle, read_line(&mut reader, &mut buf, max_line)) => r,
        };
        let response = match read {
            Err(_) => {
                tracing::debug!(event = "socket.idle_timeout", "closing an idle connection");
                Some(Response::err(
                    ErrorCode::IdleTimeout,
                    "no request within the idle timeout; closing",
                ))
            }
            Ok(Err(_)) | Ok(Ok(Line::Eof)) => break,
            Ok(Ok(Line::TooLong)) => Some(Response::err(
                ErrorCode::LineTooLong,
                format!("request line longer than {max_line} bytes; closing"),
            )),
            Ok(Ok(Line::Complete)) => {
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let resp = match protocol::parse_request(&buf) {
                    Err(resp) => resp,
                    Ok(p) => match wrong_database(&shared, p.database.as_deref()) {
                        Some(refusal) => refusal,
                        None => dispatch(&shared, p.request).await,
                    },
                };
                let line = resp.to_line();
                match tokio::time::timeout(idle, w.write_all(&line)).await {
                    Ok(Ok(())) => continue,
                    _ => break,
                }
            }
        };
        // Errors that end the connection.
        if let Some(resp) = response {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), w.write_all(&resp.to_line())).await;
        }
        break;
    }
}

/// The refusal for a request about another database than this daemon's.
fn wrong_database(shared: &Server, asked: Option<&std::path::Path>) -> Option<Response> {
    let asked = asked?;
    let ctx = shared.ctx();
    let ours = &ctx.config.database.path;
    if crate::database::dbpath::same_database(ours, asked) {
        return None;
    }
    tracing::warn!(event = "socket.wrong_database", asked = %asked.display(), protects = %ours.display(), "refused a request about another database");
    Some(Response::err(
        ErrorCode::WrongDatabase,
        format!(
            "this daemon protects {}, not {}: start a daemon for that database (see docs/DEPLOYMENT.md, \"Several projects\") and point the app at its socket",
            ours.display(),
            asked.display()
        ),
    ))
}

async fn dispatch(shared: &Server, req: Request) -> Response {
    if req.mutates() {
        return shared.queue.submit(JobKind::Request(req)).await;
    }
    let ctx = shared.ctx();
    let info = shared.state.info();
    tokio::task::spawn_blocking(move || dispatch::handle(&ctx, req, info))
        .await
        .unwrap_or_else(|e| Response::err(ErrorCode::Failed, format!("internal error: {e}")))
}
