//! The daemon's wire contract, in one place.
//!
//! Newline-delimited JSON over a Unix stream socket: each request is one line
//! holding one JSON object, answered by one line. Requests are tagged by
//! `op`; unknown fields are errors. Every response is either
//! `{"ok": true, "result": …}` or
//! `{"ok": false, "error": {"code": "…", "message": "…"}}`.
//! `docs/PROTOCOL.md` documents it with `socat` examples.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped on any incompatible change; `hello` returns it.
pub const PROTOCOL_VERSION: u32 = 1;

fn default_reason() -> String {
    "manual".into()
}

/// One request line. (Variants without arguments are empty structs so that
/// unknown fields are refused for them too.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Handshake: returns the protocol and daemon versions, the mode and the
    /// store directory (clients use it to tell they talk to the right daemon).
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
    Snapshot {
        #[serde(default = "default_reason")]
        reason: String,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        pin: bool,
    },
    /// Snapshots, newest first. Cloud mode: `[]`.
    List {},
    /// One snapshot's manifest and its missing chunks.
    Show { id: String },
    /// Restore a snapshot over the database (or `to` a standalone file).
    /// Cloud mode: error `disabled`.
    Restore {
        id: String,
        #[serde(default)]
        to: Option<PathBuf>,
        #[serde(default)]
        force: bool,
        /// Also open the restored file with DuckDB and compare its tables
        /// and row counts with the snapshot's (the hashes are always checked).
        #[serde(default)]
        check: bool,
    },
    /// Re-hash chunks of one snapshot or all; `deep` also opens each copy.
    Verify {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        deep: bool,
    },
    /// Apply retention and collect garbage. Cloud mode: 0 removed.
    Prune {
        #[serde(default)]
        dry_run: bool,
    },
    /// Pin a snapshot (retention never removes it).
    Pin { id: String },
    /// Unpin a snapshot.
    Unpin { id: String },
}

impl Request {
    /// The `op` name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Ping {} => "ping",
            Request::Status {} => "status",
            Request::Snapshot { .. } => "snapshot",
            Request::List {} => "list",
            Request::Show { .. } => "show",
            Request::Restore { .. } => "restore",
            Request::Verify { .. } => "verify",
            Request::Prune { .. } => "prune",
            Request::Pin { .. } => "pin",
            Request::Unpin { .. } => "unpin",
        }
    }

    /// Whether the request changes the store (and so waits in the queue).
    pub fn mutates(&self) -> bool {
        matches!(
            self,
            Request::Snapshot { .. }
                | Request::Restore { .. }
                | Request::Prune { .. }
                | Request::Pin { .. }
                | Request::Unpin { .. }
                | Request::Verify { deep: true, .. }
        )
    }
}

/// The one table of error codes: what the wire says and what the CLI
/// exits with (README, "Exit codes"). Every failure ducksnap reports — an
/// operation's error, the server refusing a request, the CLI giving the
/// daemon's answer — goes through one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request line is not JSON.
    InvalidJson,
    /// Not a request: unknown `op`, unknown or duplicate field, relative path.
    InvalidRequest,
    LineTooLong,
    IdleTimeout,
    /// The peer runs as another user.
    Unauthorized,
    TooManyConnections,
    ShuttingDown,
    /// Cloud mode: backups are disabled.
    Disabled,
    /// A bad argument or config: an id, reason, label, path, confirmation.
    InvalidArgument,
    /// No snapshot with that id.
    NotFound,
    /// The database is missing, not a file, or not a DuckDB database.
    DatabaseMissing,
    /// No consistent copy within the capture bounds.
    Busy,
    /// Another process holds the database (restore).
    InUse,
    /// A snapshot or the store is damaged, or verification found problems.
    Damaged,
    NoSpace,
    /// The request named another database than the daemon's.
    WrongDatabase,
    /// Anything else (an I/O error, a failed restore that was rolled back);
    /// also what an unknown code from a newer daemon reads as.
    #[serde(other)]
    Failed,
}

impl ErrorCode {
    /// The process exit code (README, "Exit codes").
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidArgument
            | ErrorCode::WrongDatabase => 2,
            ErrorCode::DatabaseMissing => 3,
            ErrorCode::Busy => 4,
            ErrorCode::NotFound => 5,
            ErrorCode::Damaged => 6,
            ErrorCode::Disabled => 7,
            ErrorCode::InUse => 8,
            _ => 1,
        }
    }

    /// The wire name, e.g. `in_use`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Disabled => "disabled",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::DatabaseMissing => "database_missing",
            ErrorCode::Busy => "busy",
            ErrorCode::InUse => "in_use",
            ErrorCode::Damaged => "damaged",
            ErrorCode::NoSpace => "no_space",
            ErrorCode::WrongDatabase => "wrong_database",
            ErrorCode::Failed => "failed",
        }
    }

    /// Whether the daemon refused the request (the caller's answer) rather
    /// than failed at its own work.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            ErrorCode::InvalidJson
                | ErrorCode::InvalidRequest
                | ErrorCode::InvalidArgument
                | ErrorCode::NotFound
                | ErrorCode::InUse
                | ErrorCode::Disabled
                | ErrorCode::WrongDatabase
                | ErrorCode::ShuttingDown
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    if let Request::Restore { to: Some(to), .. } = &req
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
