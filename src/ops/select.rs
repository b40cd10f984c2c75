//! Saying which snapshot: an exact id, a unique id prefix, `latest`,
//! `latest:REASON` (the newest snapshot taken for that reason), or
//! `as-of:TIME` (the newest snapshot taken at or before TIME, in any form
//! [`crate::when`] accepts; what `--as-of TIME` means). Every
//! operation that takes an id (`show`, `restore`, `pin`, `unpin`, `verify`,
//! `diff`, `export`, `offsite pull`)
//! resolves it here, against the store's catalog, before doing anything
//! else (`restore`, `show`, `diff` and `export` first ask
//! [`crate::ops::point`] whether it names a commit restore point) —
//! `restore latest` means the newest snapshot *before* the restore's
//! own safety snapshot. [`SnapshotRef`] is the id-or-`--as-of` pair as the
//! CLI and the wire give it.

use chrono::{DateTime, Utc};

use crate::id::{SnapshotId, valid_reason};
use crate::ops::context::{Ctx, OpError, store_for};
use crate::store::{Store, Summary};

/// One snapshot: what `show`, `pin` and `unpin` are asked for (the CLI's
/// argument and the wire's field). An id, a unique id prefix, `latest`,
/// `latest:REASON` or `as-of:TIME`; or `--as-of TIME` (see
/// this module).
///
/// `RestoreRequest` and `ExportRequest` repeat these two fields rather
/// than flatten this type: serde does not support `flatten` together with
/// the `deny_unknown_fields` every wire request keeps (a misspelt field is
/// refused, not ignored). `cli::the_snapshot_is_chosen_alike_everywhere`
/// holds the copies to this one.
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRef {
    /// The snapshot: its id (YYYYMMDDTHHMMSSZ-xxxx), a unique prefix of it,
    /// `latest`, or `latest:REASON` (e.g. latest:pre-delete).
    #[arg(required_unless_present = "as_of", conflicts_with = "as_of")]
    #[serde(default)]
    pub id: Option<String>,
    /// Instead of an id: the newest snapshot taken at or before this time
    /// (2h, "90m ago", 2026-11-29T14:00:00Z, "2026-11-29 14:00 local", …).
    #[arg(long, value_name = "TIME")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

impl SnapshotRef {
    pub fn id(id: impl Into<String>) -> SnapshotRef {
        SnapshotRef {
            id: Some(id.into()),
            as_of: None,
        }
    }

    /// The selector as one string (`as-of:TIME` for `--as-of`).
    pub fn given(&self) -> Result<String, OpError> {
        selector_of(self.id.as_deref(), self.as_of.as_deref())
    }
}

/// `id`, or `as-of:TIME`: exactly one of the two (both come from outside).
pub fn selector_of(id: Option<&str>, as_of: Option<&str>) -> Result<String, OpError> {
    match (id, as_of) {
        (Some(id), None) => Ok(id.to_string()),
        (None, Some(t)) => Ok(format!("{AS_OF}{t}")),
        (Some(_), Some(_)) => Err(OpError::InvalidArgument {
            what: "snapshot",
            reason: "give an id or --as-of, not both".into(),
        }),
        (None, None) => Err(OpError::InvalidArgument {
            what: "snapshot",
            reason: "give an id or --as-of TIME".into(),
        }),
    }
}

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
    /// The newest snapshot taken at or before this instant.
    AsOf(DateTime<Utc>),
}

/// The prefix of an as-of selector.
pub const AS_OF: &str = "as-of:";

impl Selector {
    /// Checks a selector that came from outside (CLI, socket).
    pub fn parse(given: &str) -> Result<Selector, OpError> {
        Selector::parse_at(given, Utc::now())
    }

    /// [`Selector::parse`] with relative times counted back from `now`. A
    /// time after `now` is refused: no snapshot can be that new yet.
    pub fn parse_at(given: &str, now: DateTime<Utc>) -> Result<Selector, OpError> {
        if let Some(t) = given.strip_prefix(AS_OF) {
            let at = crate::when::parse(t, now).map_err(|reason| OpError::InvalidArgument {
                what: "--as-of",
                reason,
            })?;
            if at > now {
                return Err(OpError::NoSnapshotAtTime {
                    reason: format!(
                        "{t:?} is {} in the future; no snapshot is taken after now",
                        crate::when::span(at - now)
                    ),
                });
            }
            return Ok(Selector::AsOf(at));
        }
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
                "expected a snapshot id (20261126T084512Z-3f9a), a unique prefix of one, latest or latest:REASON (or --as-of TIME); `ducksnap list` shows the ids",
            ));
        }
        Ok(Selector::Prefix(given.to_string()))
    }

    /// When nothing matched: what there is instead, for the error
    /// (`; the reasons there are: manual, pre-delete`), or empty.
    pub fn instead(&self, catalog: &[Summary]) -> String {
        if catalog.is_empty() {
            return "; it holds no snapshots".into();
        }
        match self {
            Selector::Latest { reason: Some(_) } => {
                let mut reasons: Vec<&str> = catalog.iter().map(|s| s.reason.as_str()).collect();
                reasons.sort_unstable();
                reasons.dedup();
                format!("; the reasons there are: {}", reasons.join(", "))
            }
            Selector::Id(_) | Selector::Prefix(_) => {
                let newest = catalog.iter().max_by_key(|s| (s.created_at, s.id.as_str()));
                newest.map_or_else(String::new, |n| {
                    format!("; `ducksnap list` shows the ids (the newest is {})", n.id)
                })
            }
            Selector::Latest { reason: None } | Selector::AsOf(_) => String::new(),
        }
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
                Selector::AsOf(at) => s.created_at <= *at,
            })
            .collect();
        hits.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        match (self, hits.as_slice()) {
            (_, []) => Err(Unresolved::None),
            (Selector::Latest { .. } | Selector::AsOf(_), [newest, ..]) | (_, [newest]) => {
                Ok(newest.id.clone())
            }
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
    let catalog = store.catalog()?;
    match sel.pick(given, &catalog) {
        Ok(id) => match sel {
            Selector::AsOf(_) => intact_or_older(store, &catalog, prefer_own(store, &catalog, id)),
            _ => Ok(id),
        },
        Err(Unresolved::None) if matches!(sel, Selector::AsOf(_)) => {
            Err(OpError::NoSnapshotAtTime {
                reason: match catalog.iter().min_by_key(|s| s.created_at) {
                    Some(oldest) => format!(
                        "no snapshot was taken at or before {} (the oldest, {}, was taken at {})",
                        given.trim_start_matches(AS_OF),
                        oldest.id,
                        oldest
                            .created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => format!("no snapshots in {}", store.root().display()),
                },
            })
        }
        Err(Unresolved::None) => Err(OpError::NoMatch {
            given: shown(given),
            store: store.root().to_path_buf(),
            hint: sel.instead(&catalog),
        }),
        Err(Unresolved::Ambiguous(reason)) => Err(OpError::InvalidArgument {
            what: "snapshot",
            reason,
        }),
    }
}

/// How many older snapshots [`prefer_own`] compares, at most.
const OWN_LOOKBACK: usize = 50;

/// For `--as-of`: when `id` was taken only to look (`diff … live`) and an
/// older snapshot of the user's own holds the same files byte for byte,
/// that one — the same state, under the name the user gave it.
fn prefer_own(store: &Store, catalog: &[Summary], id: SnapshotId) -> SnapshotId {
    let Some(chosen) = catalog.iter().find(|s| s.id == id) else {
        return id;
    };
    if !crate::retention::look_only(&chosen.reason) {
        return id;
    }
    let Ok(m) = store.load_manifest(&id) else {
        return id;
    };
    let mut older: Vec<&Summary> = catalog
        .iter()
        .filter(|s| {
            (s.created_at, &s.id) < (chosen.created_at, &chosen.id)
                && !crate::retention::look_only(&s.reason)
        })
        .collect();
    older.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    older
        .into_iter()
        .take(OWN_LOOKBACK)
        .find(|s| store.load_manifest(&s.id).is_ok_and(|o| o.same_files(&m)))
        .map(|s| s.id.clone())
        .unwrap_or(id)
}

/// `id` when every chunk it names is in the store; else the damage, naming
/// the newest older snapshot that is whole (what `--as-of` would take
/// instead, if the user wants it).
fn intact_or_older(
    store: &Store,
    catalog: &[Summary],
    id: SnapshotId,
) -> Result<SnapshotId, OpError> {
    let present = store.chunk_set()?;
    let missing = |id: &SnapshotId| -> Result<usize, OpError> {
        Ok(Store::missing_chunks(&store.load_manifest(id)?, &present).len())
    };
    let n = missing(&id)?;
    if n == 0 {
        return Ok(id);
    }
    let chosen = catalog.iter().find(|s| s.id == id).expect("picked from it");
    let mut older: Vec<&Summary> = catalog
        .iter()
        .filter(|s| (s.created_at, &s.id) < (chosen.created_at, &chosen.id))
        .collect();
    older.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let whole = older
        .into_iter()
        .find(|s| missing(&s.id).is_ok_and(|n| n == 0));
    Err(OpError::DamagedChoice {
        id,
        missing: n,
        instead: whole.map(|s| (s.id.clone(), s.created_at)),
    })
}

/// How long before the asked time snapshot `m` was taken, for `--as-of`
/// output: "as of 2026-11-29T14:00:00Z: snapshot X (pre-delete), taken 12m
/// 5s before"; `None` unless `given` is an as-of selector.
pub fn as_of_note(given: &str, m: &crate::store::Manifest) -> Option<String> {
    let Ok(Selector::AsOf(at)) = Selector::parse(given) else {
        return None;
    };
    Some(format!(
        "as of {}: snapshot {} ({}), taken {} before",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        m.id,
        m.reason,
        crate::when::span(at - m.created_at)
    ))
}
