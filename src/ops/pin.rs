//! `pin` / `unpin`: keep a snapshot whatever retention says, or not.

use crate::ops::context::{Ctx, OpError};
use crate::ops::select::SnapshotRef;
use crate::ops::select::resolve;
use crate::store::Summary;

/// Sets or clears a snapshot's pin.
pub fn pin(ctx: &Ctx, req: &SnapshotRef, pinned: bool) -> Result<Summary, OpError> {
    let (store, id) = resolve(ctx, &req.given()?)?;
    let lock = store.lock()?;
    let mut m = store.load_manifest(&id)?;
    // A pin by hand has no expiry (it also makes a pre-restore pin permanent).
    if m.pinned != pinned || m.pinned_until.is_some() {
        m.pinned = pinned;
        m.pinned_until = None;
        store.commit_manifest(&lock, &m)?;
    }
    Ok(Summary::from(&m))
}
