//! A blocking client for the daemon's socket, used by the CLI so that its
//! commands queue behind the daemon's work when a daemon runs. It trusts
//! only a server run by its own user (`SO_PEERCRED`): anyone can bind a
//! socket at a path in a directory they control.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ops::Ctx;
use crate::protocol::{Hello, Request, Response};

/// A server on the socket that this client must not trust.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "the server on {path} runs as uid {peer}, not as you (uid {me}): refusing to trust its answers; \
         someone else may be squatting the socket path. Remove it (or set socket.path to a path in a \
         directory only you can write) and start your daemon"
    )]
    Impostor { path: PathBuf, peer: u32, me: u32 },
    #[error("cannot ask who serves {path}: {source}")]
    PeerCred {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The uid of the process on the other end of `s`.
pub fn peer_uid(s: &UnixStream) -> std::io::Result<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(s, PeerCredentials)
        .map(|c| c.uid())
        .map_err(std::io::Error::from)
}

pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects; `None` when nothing listens there; an error when another
    /// user's process does.
    pub fn connect(path: &Path) -> Result<Option<Client>, ClientError> {
        let Ok(s) = UnixStream::connect(path) else {
            return Ok(None);
        };
        let me = nix::unistd::getuid().as_raw();
        let peer = peer_uid(&s).map_err(|source| ClientError::PeerCred {
            path: path.to_path_buf(),
            source,
        })?;
        if peer != me {
            return Err(ClientError::Impostor {
                path: path.to_path_buf(),
                peer,
                me,
            });
        }
        let Ok(writer) = s.try_clone() else {
            return Ok(None);
        };
        Ok(Some(Client {
            reader: BufReader::new(s),
            writer,
        }))
    }

    /// Sends one request and reads its answer (waits as long as it takes).
    pub fn call(&mut self, req: &Request) -> std::io::Result<Response> {
        let mut line = serde_json::to_vec(req).expect("request serializes");
        line.push(b'\n');
        self.writer.write_all(&line)?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection",
            ));
        }
        serde_json::from_str(&answer)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// A connection to a daemon that serves the same store and database as
/// `ctx`, if one of the user's own runs, with what it said about itself; an
/// error when another user's process answers.
pub fn daemon_for(ctx: &Ctx) -> Result<Option<(Client, Hello)>, ClientError> {
    Ok(Client::connect(&ctx.config.socket.path)?.and_then(|c| same_store(ctx, c)))
}

fn same_store(ctx: &Ctx, mut c: Client) -> Option<(Client, Hello)> {
    let five = Some(Duration::from_secs(5));
    c.writer.set_write_timeout(five).ok()?;
    c.reader.get_ref().set_read_timeout(five).ok()?;
    let answer = c
        .call(&Request::Hello {
            client: Some("ducksnap-cli".into()),
        })
        .ok()?;
    let hello: Hello = serde_json::from_value(answer.result?).ok()?;
    if hello.store != ctx.config.store.dir
        || !crate::database::dbpath::same_database(&ctx.config.database.path, &hello.database)
    {
        tracing::debug!(event = "client.other_store", daemon_store = %hello.store.display(), daemon_database = %hello.database.display(), "the daemon on the socket serves another store or database; working directly");
        return None;
    }
    c.reader.get_ref().set_read_timeout(None).ok()?;
    Some((c, hello))
}
