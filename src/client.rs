//! A blocking client for the daemon's socket, used by the CLI so that its
//! commands queue behind the daemon's work when a daemon runs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::ops::Ctx;
use crate::protocol::{Request, Response};

pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects; `None` when nothing listens there.
    pub fn connect(path: &Path) -> Option<Client> {
        let s = UnixStream::connect(path).ok()?;
        let writer = s.try_clone().ok()?;
        Some(Client {
            reader: BufReader::new(s),
            writer,
        })
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

/// A connection to a daemon that serves the same store as `ctx`, if one runs.
pub fn daemon_for(ctx: &Ctx) -> Option<Client> {
    let mut c = Client::connect(&ctx.config.socket.path)?;
    c.writer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    c.reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let hello = c
        .call(&Request::Hello {
            client: Some("ducksnap-cli".into()),
        })
        .ok()?;
    let store = hello.result.as_ref()?.get("store")?.as_str()?.to_string();
    if Path::new(&store) != ctx.config.store.dir {
        tracing::debug!(event = "client.other_store", daemon_store = %store, "the daemon on the socket serves another store; working directly");
        return None;
    }
    c.reader.get_ref().set_read_timeout(None).ok()?;
    Some(c)
}
