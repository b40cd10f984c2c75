//! Saying which snapshot: an exact id, a unique id prefix, `latest`, or
//! `latest:REASON` (the newest snapshot taken for that reason). Every
//! operation that takes an id (`show`, `restore`, `pin`, `unpin`, `verify`)
//! resolves it here, against the store's catalog, before doing anything
//! else — `restore latest` means the newest snapshot *before* the restore's
//! own safety snapshot.

use crate::id::SnapshotId;
use crate::ops::context::{Ctx, OpError, store_for};
use crate::ops::snapshot::valid_reason;
use crate::store::{Store, Summary};

/// How many candidates an ambiguity error lists.
const SHOWN: usize = 10;

/// A parsed snapshot selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A complete, valid id.
    Id(SnapshotId),
    /// The newest snapshot, of any reason or of this one.
    Latest { reason: Option<String> },
    /// The one snapshot whose id starts with this.
    Prefix(String),
}

impl Selector {
    /// Checks a selector that came from outside (CLI, socket).
    pub fn parse(given: &str) -> Result<Selector, OpError> {
        let bad = |reason: &str| OpError::InvalidArgument {
            what: "snapshot",
            reason: format!("{}: {reason}", shown(given)),
        };
        if given == "latest" {
            return Ok(Selector::Latest { reason: None });
        }
        if let Some(reason) = given.strip_prefix("latest:") {
            if !valid_reason(reason) {
                return Err(bad(
                    "the reason after latest: must be letters, digits, - _ or . (e.g. latest:pre-delete)",
                ));
            }
            return Ok(Selector::Latest {
                reason: Some(reason.to_string()),
            });
        }
        if let Ok(id) = SnapshotId::parse(given) {
            return Ok(Selector::Id(id));
        }
        let id_chars = |c: char| matches!(c, '0'..='9' | 'a'..='f' | 'T' | 'Z' | '-');
        if given.is_empty() || given.len() > 20 || !given.chars().all(id_chars) {
            return Err(bad(
                "expected a snapshot id (20261126T084512Z-3f9a), a unique prefix of one, latest or latest:REASON",
            ));
        }
        Ok(Selector::Prefix(given.to_string()))
    }

    /// The one snapshot this selects among `catalog`'s.
    pub fn pick(&self, given: &str, catalog: &[Summary]) -> Result<SnapshotId, Unresolved> {
        let mut hits: Vec<&Summary> = catalog
            .iter()
            .filter(|s| match self {
                Selector::Id(id) => &s.id == id,
                Selector::Latest { reason: None } => true,
                Selector::Latest { reason: Some(r) } => &s.reason == r,
                Selector::Prefix(p) => s.id.as_str().starts_with(p.as_str()),
            })
            .collect();
        hits.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        match (self, hits.as_slice()) {
            (_, []) => Err(Unresolved::None),
            (Selector::Latest { .. }, [newest, ..]) | (_, [newest]) => Ok(newest.id.clone()),
            (_, many) => Err(Unresolved::Ambiguous(ambiguity(given, many))),
        }
    }
}

/// Why a selector picked no snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    None,
    Ambiguous(String),
}

fn ambiguity(given: &str, many: &[&Summary]) -> String {
    let mut list: Vec<String> = many
        .iter()
        .take(SHOWN)
        .map(|s| format!("{} ({})", s.id, s.reason))
        .collect();
    if many.len() > SHOWN {
        list.push(format!("and {} more", many.len() - SHOWN));
    }
    format!(
        "{} matches {} snapshots: {}; give more of the id",
        shown(given),
        many.len(),
        list.join(", ")
    )
}

/// `given` quoted and shortened for an error message.
fn shown(given: &str) -> String {
    let mut t: String = given.chars().take(40).collect();
    if given.chars().count() > 40 {
        t.push('…');
    }
    format!("{t:?}")
}

/// The store and the snapshot `given` selects in it.
pub(crate) fn resolve(ctx: &Ctx, given: &str) -> Result<(Store, SnapshotId), OpError> {
    let sel = Selector::parse(given)?;
    let store = store_for(ctx, given)?;
    let id = resolve_in(&store, &sel, given)?;
    Ok((store, id))
}

/// The snapshot `sel` selects in `store`.
pub(crate) fn resolve_in(
    store: &Store,
    sel: &Selector,
    given: &str,
) -> Result<SnapshotId, OpError> {
    if let Selector::Id(id) = sel {
        // An exact id is looked up directly (the manifest may be unreadable:
        // loading it then says why).
        return Ok(id.clone());
    }
    match sel.pick(given, &store.catalog()?) {
        Ok(id) => Ok(id),
        Err(Unresolved::None) => Err(OpError::NoMatch {
            given: shown(given),
            store: store.root().to_path_buf(),
        }),
        Err(Unresolved::Ambiguous(reason)) => Err(OpError::InvalidArgument {
            what: "snapshot",
            reason,
        }),
    }
}
