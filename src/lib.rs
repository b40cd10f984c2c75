//! ducksnap: point-in-time snapshots of a local DuckDB database.
//!
//! Layout (docs/ARCHITECTURE.md has the "where to change what" map):
//! - [`database`]: facts about the user's DuckDB database — its file header
//!   and side files ([`database::duckfile`]), its real path
//!   ([`database::dbpath`]), the OFD locks that see DuckDB's
//!   ([`database::oslock`]), and opening a copy with the bundled DuckDB
//!   ([`database::check`]).
//! - [`capture`]: consistent copies of a live database — the retry loop,
//!   online and quiescent attempts, incremental attempts from the mirror
//!   ([`capture::mirror`]) with the headers followed by
//!   [`capture::chain`], the parallel copy, the read-only maps of
//!   [`capture::mapped`].
//! - [`archive`]: continuous archiving — the WAL followed as the app
//!   commits ([`archive::tail`]), its records and segments in the store
//!   ([`archive::disk`], [`archive::record`]), restore points and
//!   unprotected windows ([`archive::points`]).
//! - [`store`]: the store on disk — opening, lock and staging, chunks,
//!   manifests and the catalog, reassembly, garbage collection;
//!   [`id`]: snapshot ids.
//! - [`retention`]: the pure retention planner; [`offsite`]: the store
//!   replicated, sealed, to S3-compatible storage or a directory (one
//!   `Backend` trait, two implementations); [`monitor`]: the health
//!   record, the verdict of `status --check`, metrics.
//! - [`ops`]: one module per operation (snapshot, list, show, restore,
//!   diff, export, verify, prune, pin, status, offsite, drill, health,
//!   adopt's owner), each with its one argument type, never printing.
//! - [`protocol`]: the socket's wire contract — requests, typed replies,
//!   [`protocol::dispatch`] (a request answered by its operation) — and the
//!   one table of error codes ([`protocol::ErrorCode`], defined in
//!   [`ops::code`]).
//! - [`daemon`]: the service — the handles its tasks share, the worker, the
//!   socket server, the scheduler, the pusher, the drills, the watcher,
//!   systemd notifications and socket activation.
//! - [`cli`]: the command-line front end and its client of the daemon;
//!   [`config`], [`environment`] (with [`environment::Ctx`]), [`logging`],
//!   [`when`] (times people type): shared by all.
//!
//! The layers, lowest first, and the test that holds them: docs/
//! ARCHITECTURE.md, "Layers"; `tests/it/layers.rs`.
//!
//! `unsafe` is denied crate-wide (`[lints]` in Cargo.toml) and allowed only
//! in [`capture::mapped`] (read-only maps of a locked database) and
//! [`daemon::activation`] (taking ownership of a passed file descriptor).

// The consistency argument rests on Linux's OFD locks (F_OFD_SETLK), which
// see DuckDB's locks and which DuckDB's locks see, and on inotify,
// copy_file_range and SO_PEERCRED: refuse to build a copier without them.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "ducksnap runs on Linux only: its consistent copies rely on open file description locks \
     (F_OFD_SETLK), inotify and copy_file_range (README, \"Platforms\")"
);

pub mod archive;
pub mod capture;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod database;
pub mod environment;
pub mod id;
pub mod logging;
pub mod monitor;
pub mod offsite;
pub mod ops;
pub mod protocol;
pub mod retention;
pub mod store;
pub mod when;
