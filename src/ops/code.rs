//! The one table of error codes: what the wire says and what the CLI exits
//! with (README, "Exit codes").

use serde::{Deserialize, Serialize};

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
    /// `--as-of`: no snapshot is that old, or the time is in the future.
    NoSnapshotAtTime,
    /// `rescue`: no database that opens can be made.
    Unrescuable,
    /// Anything else (an I/O error, a failed restore that was rolled back);
    /// also what an unknown code from a newer daemon reads as.
    #[serde(other)]
    Failed,
}

/// Every exit code and what it means: `--help`, README's "Exit codes"
/// (a test keeps the two the same) and `ducksnap version --json`.
pub const EXIT_CODES: &[(u8, &str)] = &[
    (
        0,
        "success, including \"backups are disabled\" in cloud mode",
    ),
    (
        1,
        "the operation failed: an I/O error, an unusable store, an idle database's copy failing DuckDB's check, not enough free space, a restore that failed and was rolled back",
    ),
    (
        2,
        "usage or configuration error: bad arguments, a bad config file (the message names the file, line and key), an invalid $DUCKSNAP_MODE, snapshot, reason, label or time, an ambiguous id prefix (the candidates are listed); a restore not confirmed (answered no, or no --yes without a terminal); a --to file or a ducksnap.toml that exists, without --force; --to naming the database itself, a device, FIFO, socket or directory, or a path in the store; a request about another database than the daemon's; a store that belongs to another database (both are named; `ducksnap adopt`)",
    ),
    (
        3,
        "the database is missing, not a regular file, not a DuckDB database, or an encrypted one (`ENCRYPTION_KEY`: not supported)",
    ),
    (
        4,
        "the database was too busy: no consistent copy within capture.attempts / capture.timeout",
    ),
    (5, "no snapshot matches the id, prefix or latest:REASON"),
    (
        6,
        "the snapshot or store is damaged: chunks it names are missing, a manifest fails validation (then prune deletes nothing and names it), a link inside the store, or verify found problems",
    ),
    (
        7,
        "backups are disabled (cloud mode) and the command cannot do without them (restore, show, pin, unpin)",
    ),
    (
        8,
        "the database is in use: another process holds DuckDB's lock (restore; doctor; rescue)",
    ),
    (
        9,
        "--as-of: no snapshot was taken at or before that time, or the time is in the future",
    ),
    (
        10,
        "doctor: DuckDB will not open the database (its WAL is damaged or another's, a newer storage version, DuckDB refused it), or a .wal.checkpoint holds commits DuckDB will not read; rescue: no database that opens can be made (encrypted, a newer storage version, nothing to build one from)",
    ),
];

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
            ErrorCode::NoSnapshotAtTime => 9,
            ErrorCode::Unrescuable => 10,
            ErrorCode::LineTooLong
            | ErrorCode::IdleTimeout
            | ErrorCode::Unauthorized
            | ErrorCode::TooManyConnections
            | ErrorCode::ShuttingDown
            | ErrorCode::Failed
            | ErrorCode::NoSpace => 1,
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
            ErrorCode::NoSnapshotAtTime => "no_snapshot_at_time",
            ErrorCode::Unrescuable => "unrescuable",
            ErrorCode::Failed => "failed",
        }
    }

    /// Whether the daemon refused the request (the caller's answer) rather
    /// than failed at its own work.
    pub fn is_refusal(self) -> bool {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidArgument
            | ErrorCode::NotFound
            | ErrorCode::NoSnapshotAtTime
            | ErrorCode::Unrescuable
            | ErrorCode::InUse
            | ErrorCode::Disabled
            | ErrorCode::WrongDatabase
            | ErrorCode::ShuttingDown => true,
            ErrorCode::LineTooLong
            | ErrorCode::IdleTimeout
            | ErrorCode::Unauthorized
            | ErrorCode::TooManyConnections
            | ErrorCode::DatabaseMissing
            | ErrorCode::Busy
            | ErrorCode::Damaged
            | ErrorCode::NoSpace
            | ErrorCode::Failed => false,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
