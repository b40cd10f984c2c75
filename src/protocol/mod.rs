//! The daemon's wire contract, in one place.
//!
//! Newline-delimited JSON over a Unix stream socket: each request is one line
//! holding one JSON object, answered by one line. Requests are tagged by
//! `op`; unknown fields are errors. Every response is either
//! `{"ok": true, "result": …}` or
//! `{"ok": false, "error": {"code": "…", "message": "…"}}`.
//! `docs/PROTOCOL.md` documents it with `socat` examples.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::environment::Mode;
use crate::ops::{
    DiffReport, DiffRequest, ExportRequest, Exported, ListEntry, PruneReport, PruneRequest,
    RescueRequest, Rescued, RestoreRequest, Restored, Shown, SnapshotRef, SnapshotReply,
    SnapshotRequest, StatusReport, VerifyReport, VerifyRequest,
};
use crate::store::Summary;

pub mod dispatch;

/// The error codes and exit statuses, defined beside the operations
/// that fail with them.
pub use crate::ops::code;

pub use code::ErrorCode;

/// Bumped on any incompatible change; `hello` returns it.
pub const PROTOCOL_VERSION: u32 = 1;

/// One request line. Operations with arguments carry the operation's own
/// argument type (the CLI's too), so a new flag is one field of that type;
/// variants without arguments are empty structs so that unknown fields are
/// refused for them too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Handshake: the protocol and daemon versions, the mode and why, the
    /// store and the database ([`Hello`]; clients use it to find the daemon
    /// that protects their database).
    Hello {
        #[serde(default)]
        client: Option<String>,
    },
    /// Liveness check: returns `"pong"`.
    Ping {},
    /// Mode and why, database, last snapshot and its age, next scheduled run,
    /// store size and count, last error.
    Status {},
    /// Take a snapshot now and wait for it. Cloud mode: `{"snapshot": null,
    /// "disabled": true, "reason": …}`.
    Snapshot(SnapshotRequest),
    /// Snapshots, newest first. Cloud mode: `[]`.
    List {},
    /// One snapshot's manifest and its missing chunks.
    Show(SnapshotRef),
    /// Restore a snapshot over the database (or `to` a standalone file).
    /// Cloud mode: error `disabled`.
    Restore(RestoreRequest),
    /// When DuckDB refuses to open the database: a database that opens,
    /// with every commit that can be got back, over the database (the
    /// files that were there kept as a pinned `pre-rescue` snapshot) or
    /// `to` a standalone file. Cloud mode: error `disabled`.
    Rescue(RescueRequest),
    /// Re-hash chunks of one snapshot or all; `deep` also opens each copy.
    Verify(VerifyRequest),
    /// Apply retention and collect garbage. Cloud mode: 0 removed.
    Prune(PruneRequest),
    /// Pin a snapshot (retention never removes it).
    Pin(SnapshotRef),
    /// Unpin a snapshot.
    Unpin(SnapshotRef),
    /// What changed between two states (snapshots, `as-of:TIME`, `live`);
    /// with `table`, that table's rows (at most 1000 of each kind here).
    Diff(DiffRequest),
    /// One table of a snapshot to a CSV or DuckDB file (`to`: absolute).
    Export(ExportRequest),
}

/// What a daemon says about itself (`hello`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub version: String,
    pub mode: Mode,
    #[serde(default)]
    pub mode_reason: String,
    #[serde(default)]
    pub signals_fired: Vec<String>,
    pub store: PathBuf,
    pub database: PathBuf,
    pub pid: u64,
    /// `[continuous] enabled` in local mode: a `pre-delete` request can be
    /// answered by a marker on the archived WAL (a client then does not
    /// checkpoint first, which would leave no WAL to mark).
    #[serde(default)]
    pub continuous: bool,
}

/// A request together with the type of its result, so that the caller gets
/// a typed reply: `Call::<Restored>`, built by the functions below.
#[derive(Debug, Clone)]
pub struct Call<R> {
    pub request: Request,
    reply: PhantomData<fn() -> R>,
}

fn call<R>(request: Request) -> Call<R> {
    Call {
        request,
        reply: PhantomData,
    }
}

/// The typed calls, one per request.
pub mod calls {
    use super::*;

    pub fn hello(client: &str) -> Call<Hello> {
        call(Request::Hello {
            client: Some(client.into()),
        })
    }
    pub fn status() -> Call<StatusReport> {
        call(Request::Status {})
    }
    pub fn snapshot(r: SnapshotRequest) -> Call<SnapshotReply> {
        call(Request::Snapshot(r))
    }
    pub fn list() -> Call<Vec<ListEntry>> {
        call(Request::List {})
    }
    pub fn show(r: SnapshotRef) -> Call<Shown> {
        call(Request::Show(r))
    }
    pub fn restore(r: RestoreRequest) -> Call<Restored> {
        call(Request::Restore(r))
    }
    pub fn rescue(r: RescueRequest) -> Call<Rescued> {
        call(Request::Rescue(r))
    }
    pub fn verify(r: VerifyRequest) -> Call<VerifyReport> {
        call(Request::Verify(r))
    }
    pub fn prune(r: PruneRequest) -> Call<PruneReport> {
        call(Request::Prune(r))
    }
    pub fn diff(r: DiffRequest) -> Call<DiffReport> {
        call(Request::Diff(r))
    }
    pub fn export(r: ExportRequest) -> Call<Exported> {
        call(Request::Export(r))
    }
    pub fn pin(r: SnapshotRef, pinned: bool) -> Call<Summary> {
        call(if pinned {
            Request::Pin(r)
        } else {
            Request::Unpin(r)
        })
    }
}

impl Request {
    /// The `op` name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Ping {} => "ping",
            Request::Status {} => "status",
            Request::Snapshot(_) => "snapshot",
            Request::List {} => "list",
            Request::Show(_) => "show",
            Request::Restore(_) => "restore",
            Request::Rescue(_) => "rescue",
            Request::Verify(_) => "verify",
            Request::Prune(_) => "prune",
            Request::Pin(_) => "pin",
            Request::Unpin(_) => "unpin",
            Request::Diff(_) => "diff",
            Request::Export(_) => "export",
        }
    }

    /// Whether the request changes the store (and so waits in the queue).
    pub fn mutates(&self) -> bool {
        match self {
            Request::Snapshot(_)
            | Request::Restore(_)
            | Request::Rescue(_)
            | Request::Prune(_)
            | Request::Pin(_)
            | Request::Unpin(_) => true,
            Request::Verify(v) => v.deep,
            // diff captures `live` and export reads through scratch space:
            // both run beside the queue as before, taking the store lock
            // they need themselves.
            Request::Hello { .. }
            | Request::Ping {}
            | Request::Status {}
            | Request::List {}
            | Request::Show(_)
            | Request::Diff(_)
            | Request::Export(_) => false,
        }
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn ok(result: Value) -> Response {
        Response {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(code: ErrorCode, message: impl Into<String>) -> Response {
        Response {
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }

    /// The response as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("response serializes");
        v.push(b'\n');
        v
    }
}

/// A parsed request line: the request, and the database the caller means
/// when it said (any request may carry `"database": "/abs/path"`; the
/// daemon answers `wrong_database` when that is not the file it protects).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub request: Request,
    pub database: Option<PathBuf>,
}

/// Parses a request line into a request or the error response to send.
/// An object with the same key twice (`{"op":"ping","op":"prune"}`), a
/// relative `to` path (it would resolve against the daemon's working
/// directory, not the caller's) and a `database` that is not an absolute
/// path are `invalid_request`.
pub fn parse_request(line: &[u8]) -> Result<Parsed, Response> {
    let mut value: Value = serde_json::from_slice(line).map_err(|e| {
        Response::err(
            ErrorCode::InvalidJson,
            format!("request is not valid JSON: {e}"),
        )
    })?;
    let Some(object) = value.as_object_mut() else {
        return Err(Response::err(
            ErrorCode::InvalidRequest,
            "a request is a JSON object with an \"op\" field",
        ));
    };
    serde_json::from_slice::<NoDuplicateKeys>(line)
        .map_err(|e| Response::err(ErrorCode::InvalidRequest, e.to_string()))?;
    let database = match object.remove("database") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if Path::new(&s).is_absolute() => Some(PathBuf::from(s)),
        Some(other) => {
            return Err(Response::err(
                ErrorCode::InvalidRequest,
                format!("\"database\" must be an absolute path (got {other})"),
            ));
        }
    };
    let req: Request = serde_json::from_value(value)
        .map_err(|e| Response::err(ErrorCode::InvalidRequest, e.to_string()))?;
    let to = match &req {
        Request::Restore(RestoreRequest { to: Some(to), .. }) => Some(to),
        Request::Rescue(RescueRequest { to: Some(to), .. }) => Some(to),
        Request::Export(ExportRequest { to, .. }) => Some(to),
        _ => None,
    };
    if let Some(to) = to
        && !to.is_absolute()
    {
        return Err(Response::err(
            ErrorCode::InvalidRequest,
            format!(
                "\"to\" must be an absolute path (got {:?}); the daemon's working directory is not yours",
                to.display().to_string()
            ),
        ));
    }
    Ok(Parsed {
        request: req,
        database,
    })
}

/// A JSON document walked only to refuse an object holding a key twice
/// (serde_json keeps the last one silently).
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Self, A::Error> {
        while a.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = a.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "key {k:?} appears twice in one object"
                )));
            }
            a.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
    }
}
