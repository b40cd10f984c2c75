//! `restore`: a snapshot reassembled and checked (`staged.rs`), then written
//! as a standalone copy (`to.rs`) or swapped in over the database
//! (`swap.rs`), with the crash-safe journal and its rollback in [`journal`].

pub mod journal;
mod request;
mod staged;
mod swap;
mod to;

pub use request::{RestoreRequest, Restored};
pub(crate) use staged::{compare_tables, lock_out_the_app};
use swap::restore_in_place;
pub(crate) use swap::{check_dir, replace_locked};
pub(crate) use to::restore_to;

use crate::ops::context::{Ctx, OpError, database_path};
use crate::ops::select::resolve;

/// Restores snapshot `id` over the configured database (or to `--to PATH`).
/// A commit restore point (`GENERATION@OFFSET`, or `--as-of` reaching a
/// commit newer than the newest snapshot then: `ops::point`) is restored
/// as its base snapshot's database file with the archived WAL up to that
/// commit, through the same paths.
pub fn restore(ctx: &Ctx, req: &RestoreRequest) -> Result<Restored, OpError> {
    let given = req.given()?;
    let store = crate::ops::context::store_for(ctx, &given)?;
    let chosen = crate::ops::point::choose(ctx, &store, &given)?;
    let (store, lock, m, point) = match chosen {
        Some(c) => {
            let lock = store.lock()?;
            let m = c.manifest(&store, &lock)?;
            (store, lock, m, Some(c.point.to_string()))
        }
        None => {
            let (store, id) = resolve(ctx, &given)?;
            let lock = store.lock()?;
            let m = store.load_manifest(&id)?;
            (store, lock, m, None)
        }
    };
    let db = database_path(ctx)?;
    let mut done = match &req.to {
        Some(to) => restore_to(ctx, &store, &m, &db, to, req),
        // In place, DuckDB always checks the result at the database's own path.
        None => restore_in_place(ctx, &store, &lock, &m, &db),
    }?;
    done.point = point;
    Ok(done)
}
