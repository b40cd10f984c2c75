//! `list`: the snapshots, newest first, with the missing chunks of each.

use serde::Serialize;

use crate::ops::context::{Ctx, OpError, open_store};
use crate::store::{BadEntry, Store, Summary};

/// One row of `list`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ListEntry {
    #[serde(flatten)]
    pub summary: Summary,
    /// Chunks the manifest names that the store does not have.
    pub missing_chunks: usize,
    /// With `[offsite]`: whether the snapshot is offsite (by the local
    /// record of pushes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<bool>,
}

/// Result of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub disabled: bool,
    /// Newest first.
    pub snapshots: Vec<ListEntry>,
    /// Manifest files that could not be read.
    pub unreadable: Vec<BadEntry>,
}

/// Lists the snapshots, newest first, each checked for missing chunks.
pub fn list(ctx: &Ctx) -> Result<Listing, OpError> {
    if ctx.detection.is_cloud() {
        return Ok(Listing {
            disabled: true,
            snapshots: Vec::new(),
            unreadable: Vec::new(),
        });
    }
    if !crate::store::Store::exists_at(&ctx.config.store.dir) {
        return Ok(Listing {
            disabled: false,
            snapshots: Vec::new(),
            unreadable: Vec::new(),
        });
    }
    let store = open_store(ctx, false)?;
    let summaries = store.catalog()?;
    let (manifests, unreadable) = store.manifests()?;
    let present = store.chunk_set()?;
    let pushed = crate::offsite::cache::pushed_ids(ctx.config.offsite.as_ref(), &store);
    let snapshots = summaries
        .into_iter()
        .map(|summary| {
            let missing_chunks = manifests
                .iter()
                .find(|m| m.id == summary.id)
                .map(|m| Store::missing_chunks(m, &present).len())
                .unwrap_or(0);
            let offsite = pushed.as_ref().map(|p| p.contains(summary.id.as_str()));
            ListEntry {
                summary,
                missing_chunks,
                offsite,
            }
        })
        .collect();
    Ok(Listing {
        disabled: false,
        snapshots,
        unreadable,
    })
}
