//! ducksnap: point-in-time snapshots of a local DuckDB database.
//!
//! Layout:
//! - [`config`]: locating, parsing and validating the TOML config.
//! - [`environment`]: local vs cloud mode from injected variables and paths.
//! - [`duckfile`]: DuckDB file headers and block-aligned chunk boundaries.
//! - [`oslock`]: OFD locks that see (and are seen by) DuckDB's POSIX locks.
//! - [`capture`]: consistent copies of a live database (quiescent / online).
//! - [`check`]: opening a captured copy read-only with the bundled DuckDB.
//! - [`store`]: chunks, manifests, catalog, lock and staging on disk.
//! - [`id`]: snapshot ids.
//! - [`ops`]: the operations behind the subcommands.
//! - [`cli`], [`logging`]: the command-line front end.

pub mod capture;
pub mod check;
pub mod cli;
pub mod config;
pub mod duckfile;
pub mod environment;
pub mod id;
pub mod logging;
pub mod ops;
pub mod oslock;
pub mod restore;
pub mod retention;
pub mod store;
