//! `diff A B`: what changed between two states of the database — two
//! snapshots, or a snapshot and `live` (the database now, captured first as
//! a snapshot with reason `diff`, or the newest snapshot when nothing
//! changed since). Identical files answer "no changes" at once; otherwise
//! both are reassembled in a scratch directory and compared with DuckDB
//! (see [`crate::database::changes`] and [`crate::database::rows`]).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::database::changes::{TableChange, summarize};
use crate::database::compare::{Pair, Side, find};
use crate::database::rows::{RowDiff, diff_rows};
use crate::id::SnapshotId;
use crate::ops::context::{Ctx, OpError, check_space_at, store_for};
use crate::ops::point::State;
use crate::ops::select::selector_of;
use crate::ops::snapshot::{SnapshotOutcome, SnapshotRequest, snapshot};
use crate::store::{Scratch, Store};

/// Most rows of each kind one diff returns over the socket.
pub const SOCKET_ROW_CAP: u64 = 1000;

/// What `diff` is asked for (CLI arguments and wire fields).
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffRequest {
    /// The earlier state: a snapshot id, prefix, latest, latest:REASON,
    /// as-of:TIME, or `live` (default with --as-of: the snapshot of that time).
    #[arg(required_unless_present = "as_of")]
    #[serde(default)]
    pub a: Option<String>,
    /// The later state (same forms; default `live`).
    #[serde(default)]
    pub b: Option<String>,
    /// A is the newest snapshot taken at or before this time.
    #[arg(long, value_name = "TIME", conflicts_with = "b")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// Show this table's rows: added, removed and (with a key) changed.
    #[arg(long, value_name = "TABLE")]
    #[serde(default)]
    pub table: Option<String>,
    /// With --table: match rows by these columns (default: the primary key).
    #[arg(long, value_name = "COL[,COL]", value_delimiter = ',')]
    #[serde(default)]
    pub key: Option<Vec<String>>,
    /// With --table: at most this many rows of each kind (counts are exact).
    #[arg(long, default_value_t = 20)]
    #[serde(default = "twenty")]
    pub limit: u64,
}

fn twenty() -> u64 {
    20
}

/// One side of a diff as resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffSide {
    pub given: String,
    /// The snapshot (for a commit restore point: the snapshot its WAL is
    /// replayed onto).
    pub id: SnapshotId,
    /// A commit restore point (`GENERATION@OFFSET`), when the side is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    /// When the snapshot was taken, or ducksnap saw the commit.
    pub taken_at: DateTime<Utc>,
}

/// What `diff` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffReport {
    pub a: DiffSide,
    pub b: DiffSide,
    /// The two states are the same files: nothing changed.
    pub identical: bool,
    pub tables: Vec<TableChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowDiff>,
}

impl DiffRequest {
    /// (A, B) as selectors; B defaults to `live`.
    fn sides(&self) -> Result<(String, String), OpError> {
        let (a, b) = match (&self.as_of, &self.a, &self.b) {
            (Some(_), Some(a), None) => (selector_of(None, self.as_of.as_deref())?, a.clone()),
            (Some(_), None, None) => (selector_of(None, self.as_of.as_deref())?, "live".into()),
            // On the wire, B named as such (the CLI's --as-of takes B as
            // its one positional argument, above).
            (Some(_), None, Some(b)) => (selector_of(None, self.as_of.as_deref())?, b.clone()),
            (None, Some(a), b) => (a.clone(), b.clone().unwrap_or_else(|| "live".into())),
            _ => {
                return Err(OpError::InvalidArgument {
                    what: "diff",
                    reason: "give A [B], or --as-of TIME [B]".into(),
                });
            }
        };
        Ok((a, b))
    }
}

/// Compares the two states the request names.
pub fn diff(ctx: &Ctx, req: &DiffRequest) -> Result<DiffReport, OpError> {
    let (ga, gb) = req.sides()?;
    let store = store_for(ctx, &ga)?;
    let (a, sa) = side(ctx, &store, &ga)?;
    let (b, sb) = side(ctx, &store, &gb)?;
    let identical = sa.same(&sb);
    if identical && req.table.is_none() {
        return Ok(DiffReport {
            a,
            b,
            identical: true,
            tables: Vec::new(),
            rows: None,
        });
    }
    let scratch = scratch_for(ctx, &store, "diff", sa.size() + sb.size())?;
    let pair = Pair::new(&spill_dir(&scratch)?)?;
    pair.attach(Side::A, &sa.reassemble(&store, scratch.dir(), "a.duckdb")?)?;
    pair.attach(Side::B, &sb.reassemble(&store, scratch.dir(), "b.duckdb")?)?;
    let (rels_a, rels_b) = (pair.relations(Side::A)?, pair.relations(Side::B)?);
    let chosen = match &req.table {
        None => None,
        Some(t) => Some((find(&rels_a, t)?, find(&rels_b, t)?)),
    };
    let rows = match chosen {
        None => None,
        Some((ta, tb)) => Some(diff_rows(&pair, ta, tb, req.key.as_deref(), req.limit)?),
    };
    // The chosen table is judged by its rows, not fingerprinted again.
    let counted = chosen.map(|(ta, _)| (ta.schema.as_str(), ta.name.as_str()));
    let mut tables = summarize(&pair, counted)?;
    if let (Some(d), Some((ta, _))) = (&rows, chosen)
        && let Some(c) = tables.iter_mut().find(|c| c.table == ta.shown())
        && d.added + d.removed + d.changed.unwrap_or(0) > 0
    {
        c.status = crate::database::changes::Status::Changed;
    }
    drop(pair);
    drop(scratch);
    Ok(DiffReport {
        identical,
        a,
        b,
        tables,
        rows,
    })
}

/// The state `given` names: a snapshot, or a commit restore point;
/// `live` captures the database first.
fn side(ctx: &Ctx, store: &Store, given: &str) -> Result<(DiffSide, State), OpError> {
    let state = if given == "live" {
        let req = SnapshotRequest {
            reason: "diff".into(),
            label: None,
            pin: false,
            skip_unchanged: true,
            never_lock: false,
        };
        let id = match snapshot(ctx, &req)? {
            SnapshotOutcome::Created(m) => m.id.clone(),
            SnapshotOutcome::Unchanged { since } => since,
            SnapshotOutcome::Disabled { reason } => return Err(OpError::Disabled { reason }),
        };
        State::Snapshot(store.load_manifest(&id)?)
    } else {
        crate::ops::point::state(ctx, store, given)?
    };
    let side = DiffSide {
        given: given.to_string(),
        id: state.manifest().id.clone(),
        point: state.point(),
        taken_at: state.taken_at(),
    };
    Ok((side, state))
}

/// A scratch directory with room for `need` bytes (the states
/// reassembled) plus `store.min_free_space`.
pub(crate) fn scratch_for(
    ctx: &Ctx,
    store: &Store,
    what: &str,
    need: u64,
) -> Result<Scratch, OpError> {
    let scratch = store.scratch(what)?;
    check_space_at(
        scratch.dir(),
        need + ctx.config.store.min_free_space.0,
        "the snapshots reassembled for reading, plus store.min_free_space",
    )?;
    Ok(scratch)
}

/// Where DuckDB may spill, inside the scratch directory.
pub(crate) fn spill_dir(scratch: &Scratch) -> Result<PathBuf, OpError> {
    let p = scratch.dir().join("spill");
    std::fs::create_dir(&p).map_err(|source| crate::store::StoreError::Io {
        op: "create directory",
        path: p.clone(),
        source,
    })?;
    Ok(p)
}
