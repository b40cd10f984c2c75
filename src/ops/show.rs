//! `show`: one snapshot's manifest and the chunks it misses.

use serde::Serialize;

use crate::ops::context::{Ctx, OpError};
use crate::ops::select::SnapshotRef;
use crate::ops::select::resolve;
use crate::store::{Manifest, Store};

/// Result of `show`.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub manifest: Manifest,
    pub missing_chunks: Vec<String>,
}

/// One snapshot's manifest, with the chunks it names that are missing.
pub fn show(ctx: &Ctx, req: &SnapshotRef) -> Result<Shown, OpError> {
    let (store, id) = resolve(ctx, &req.given()?)?;
    let manifest = store.load_manifest(&id)?;
    let present = store.chunk_set()?;
    let missing_chunks = Store::missing_chunks(&manifest, &present);
    Ok(Shown {
        manifest,
        missing_chunks,
    })
}
