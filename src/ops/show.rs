//! `show`: one snapshot's manifest and the chunks it misses — or, for a
//! commit restore point, the point (checked and read from the archive as a
//! restore would) and its base snapshot's manifest.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ops::context::{Ctx, OpError, store_for};
use crate::ops::point::{State, state};
use crate::ops::select::SnapshotRef;
use crate::store::{Manifest, Store};

/// Result of `show`.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    /// The snapshot's (a point's: its base snapshot's).
    pub manifest: Manifest,
    pub missing_chunks: Vec<String>,
    /// The commit restore point, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<ShownPoint>,
}

/// A commit restore point as `show` gives it.
#[derive(Debug, Clone, Serialize)]
pub struct ShownPoint {
    pub id: String,
    /// When ducksnap saw the commit.
    pub at: DateTime<Utc>,
    /// The snapshot its WAL is replayed onto (`manifest`).
    pub base: crate::id::SnapshotId,
    /// Bytes of archived WAL replayed onto it, every entry's checksum
    /// checked.
    pub wal_bytes: u64,
}

/// One snapshot's manifest, with the chunks it names that are missing.
pub fn show(ctx: &Ctx, req: &SnapshotRef) -> Result<Shown, OpError> {
    let given = req.given()?;
    let store = store_for(ctx, &given)?;
    let st = state(ctx, &store, &given)?;
    let point = match &st {
        State::Snapshot(_) => None,
        State::Point(p) => Some(ShownPoint {
            id: p.point.to_string(),
            at: p.at,
            base: p.base.id.clone(),
            wal_bytes: p.wal.len() as u64,
        }),
    };
    let manifest = st.manifest().clone();
    let present = store.chunk_set()?;
    let missing_chunks = Store::missing_chunks(&manifest, &present);
    Ok(Shown {
        manifest,
        missing_chunks,
        point,
    })
}
