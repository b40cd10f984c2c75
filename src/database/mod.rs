//! The user's DuckDB database, as ducksnap sees it from outside: the file
//! header and the side files (`.wal`, `.wal.checkpoint`, `.wal.recovery`)
//! that make up the database ([`duckfile`]), which blocks the active header
//! uses ([`blocks`]), their `stat` stamps ([`stamp`]), which file is the database
//! ([`dbpath`]), the OFD locks that see and are seen by DuckDB's POSIX locks
//! ([`oslock`]), and opening a captured copy read-only with the bundled
//! DuckDB ([`check`]), and comparing two such copies or writing a table out
//! ([`compare`], [`changes`], [`rows`], [`narrow`]); the WAL read as a stream
//! of commits ([`wal`]), why DuckDB would refuse to open the database
//! ([`diagnose`]) and the longest WAL that verifies ([`salvage`]). ducksnap
//! never opens the user's database read-write.

pub mod blocks;
pub mod changes;
pub mod check;
pub mod compare;
pub mod dbpath;
pub mod diagnose;
pub mod duckfile;
pub mod narrow;
pub mod oslock;
pub mod rows;
pub mod salvage;
pub mod stamp;
pub mod wal;
