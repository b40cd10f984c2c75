//! Continuous archiving of the WAL between snapshots: every commit the
//! app makes becomes a restore point. [`record`] is what the archive says
//! about one WAL generation (its segments, commit boundaries, base
//! snapshots, why it ended), [`disk`] the archive inside the store,
//! [`tail`] the tailer that follows the live WAL, and [`points`] the
//! restore points and unprotected windows read from the records;
//! [`chain`] links the records into one hash chain that finds a record
//! deleted or altered.
//! docs/ARCHITECTURE.md, "The WAL as a stream of commits", has the
//! argument, with DuckDB's source lines and the tests that prove them.

pub mod chain;
pub mod disk;
pub mod points;
pub mod record;
pub mod state;
pub mod tail;

pub use disk::{Archive, ArchiveLock};
pub use record::{Generation, PointId};
