//! The operations behind the subcommands, one module each, as plain
//! functions named like them: [`snapshot()`], [`list()`], [`show()`],
//! [`restore()`], [`diff()`], [`export()`], [`verify()`], [`prune()`], [`doctor()`], [`rescue()`],
//! [`pin()`], [`status()`], and [`offsite`], [`drill`], [`health`],
//! [`owner`]. The CLI and the daemon call them (the daemon through
//! [`crate::protocol::dispatch`]); they never print. Each returns a typed
//! outcome, with the documented "disabled" result in cloud mode.
//! [`context`] holds what they share, [`select`] which snapshot an id
//! names, [`point`] which commit restore point one names (and `list
//! --commits`, the archive in `status`), [`code`] the one table of error codes, [`progress`] the events a
//! long operation reports, [`outfile`] the files written outside the store.

pub mod code;
pub mod context;
pub mod diff;
mod doctor;
pub mod drill;
pub mod export;
pub mod health;
mod list;
pub mod offsite;
pub mod outfile;
pub mod owner;
mod pin;
pub mod point;
pub mod progress;
mod prune;
pub mod rescue;
pub mod restore;
pub mod select;
mod show;
mod snapshot;
pub mod status;
mod verify;

pub use context::{Ctx, OpError, database_path};
pub use diff::{DiffReport, DiffRequest, diff};
pub use doctor::{Diagnosed, doctor};
pub use export::{ExportRequest, Exported, export};
pub use list::{ListEntry, Listing, list};
pub use pin::pin;
pub use progress::SnapshotCheck;
pub use prune::{PruneReport, PruneRequest, prune};
pub use rescue::{RescueRequest, Rescued, rescue};
pub use restore::{RestoreRequest, Restored, restore};
pub use select::SnapshotRef;
pub use show::{Shown, show};
pub use snapshot::{
    Following, MarkerReply, SnapshotOutcome, SnapshotReply, SnapshotRequest, snapshot,
};
pub use status::{DaemonInfo, LastError, StatusReport, status};
pub use verify::{VerifyReport, VerifyRequest, verify, verify_with};
