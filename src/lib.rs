//! ducksnap: point-in-time snapshots of a local DuckDB database.
//!
//! Layout:
//! - [`config`]: locating, parsing and validating the TOML config.
//! - [`environment`]: local vs cloud mode from injected variables and paths.
//! - [`duckfile`]: DuckDB file headers and block-aligned chunk boundaries.
//! - [`dbpath`]: the real path of the database, and whether a path names it.
//! - [`oslock`]: OFD locks that see (and are seen by) DuckDB's POSIX locks.
//! - [`capture`]: consistent copies of a live database (quiescent / online);
//!   [`mapped`]: the read-only maps a quiescent capture reads through.
//! - [`check`]: opening captured bytes read-only with the bundled DuckDB.
//! - [`store`]: chunks, manifests, catalog, lock and staging on disk.
//! - [`id`]: snapshot ids.
//! - [`ops`]: the operations behind the subcommands; [`restore`] the crash-safe
//!   file swap and its recovery; [`retention`] the pure retention planner.
//! - [`protocol`]: the socket's wire contract; [`handlers`] answer it.
//! - [`daemon`]: the service's tasks; [`server`] the socket, [`schedule`] cron
//!   slots, [`watch`] the file watcher, [`sdnotify`] systemd notifications,
//!   [`activation`] socket activation; with [`mapped`] (read-only maps of a
//!   locked database) the crate's only `unsafe`.
//! - [`cli`], [`logging`]: the command-line front end.

pub mod activation;
pub mod capture;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dbpath;
pub mod duckfile;
pub mod environment;
pub mod handlers;
pub mod id;
pub mod logging;
pub mod mapped;
pub mod ops;
pub mod oslock;
pub mod protocol;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod sdnotify;
pub mod server;
pub mod store;
pub mod watch;
