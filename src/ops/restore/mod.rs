//! `restore`: a snapshot reassembled and checked (`staged.rs`), then written
//! as a standalone copy (`to.rs`) or swapped in over the database
//! (`swap.rs`), with the crash-safe journal and its rollback in [`journal`].

pub mod journal;
mod request;
mod staged;
mod swap;
mod to;

pub use request::{RestoreRequest, Restored};
pub(crate) use staged::compare_tables;
use swap::restore_in_place;
use to::restore_to;

use crate::ops::context::{Ctx, OpError, database_path};
use crate::ops::select::resolve;

/// Restores snapshot `id` over the configured database (or to `--to PATH`).
pub fn restore(ctx: &Ctx, req: &RestoreRequest) -> Result<Restored, OpError> {
    let (store, id) = resolve(ctx, &req.given()?)?;
    let lock = store.lock()?;
    let m = store.load_manifest(&id)?;
    let db = database_path(ctx)?;
    match &req.to {
        Some(to) => restore_to(ctx, &store, &m, &db, to, req),
        // In place, DuckDB always checks the result at the database's own path.
        None => restore_in_place(ctx, &store, &lock, &m, &db),
    }
}
