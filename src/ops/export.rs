//! `export`: one table of one snapshot, written as CSV or as a standalone
//! DuckDB file (without a table: the whole snapshot, which is `restore
//! --to`). Never touches the live database; the file appears complete or
//! not at all: written in a private directory beside `--to`, then renamed
//! into place ([`super::outfile`]: nothing planted there can redirect it).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::database::compare::{Format, Pair, Side, find};
use crate::database::duckfile;
use crate::id::SnapshotId;
use crate::ops::context::{Ctx, OpError};
use crate::ops::diff::{scratch_for, spill_dir};
use crate::ops::outfile::{self, PrivateDir};
use crate::ops::restore::{RestoreRequest, restore};
use crate::ops::select::selector_of;

/// What `export` is asked for (CLI arguments and wire fields).
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
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
    /// The table (TABLE or SCHEMA.TABLE). Without it, the whole snapshot
    /// goes to a .duckdb file (as `restore --to` does).
    #[arg(long)]
    #[serde(default)]
    pub table: Option<String>,
    /// The file to write: .csv or .duckdb (on the wire: an absolute path).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    #[serde(default)]
    pub force: bool,
}

/// What `export` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exported {
    /// The snapshot (for a commit restore point: the one its WAL is
    /// replayed onto).
    pub id: SnapshotId,
    /// The commit restore point (`GENERATION@OFFSET`), when one was
    /// exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub path: PathBuf,
    pub format: Format,
    /// Rows written (a table export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

fn format_of(to: &Path) -> Result<Format, OpError> {
    match to.extension().and_then(|e| e.to_str()) {
        Some("csv") => Ok(Format::Csv),
        Some("duckdb") | Some("db") | Some("ddb") => Ok(Format::Duckdb),
        _ => Err(OpError::InvalidArgument {
            what: "--to",
            reason: format!(
                "{}: the extension says the format: .csv or .duckdb (.parquet is not built in: export to .duckdb, then COPY … TO 'x.parquet' (FORMAT parquet) in any DuckDB)",
                to.display()
            ),
        }),
    }
}

/// Writes the table (or the snapshot) the request names.
pub fn export(ctx: &Ctx, req: &ExportRequest) -> Result<Exported, OpError> {
    let given = selector_of(req.id.as_deref(), req.as_of.as_deref())?;
    let format = format_of(&req.to)?;
    let Some(table) = &req.table else {
        if format != Format::Duckdb {
            return Err(OpError::InvalidArgument {
                what: "--to",
                reason: "without --table the whole snapshot is exported: give a .duckdb file"
                    .into(),
            });
        }
        let r = restore(
            ctx,
            &RestoreRequest {
                id: Some(given),
                as_of: None,
                to: Some(req.to.clone()),
                force: req.force,
                check: false,
            },
        )?;
        return Ok(Exported {
            id: r.id,
            point: r.point,
            table: None,
            path: r.path,
            format,
            rows: None,
        });
    };
    let to = outfile::target(ctx, &req.to, req.force, format == Format::Duckdb)?;
    let store = crate::ops::context::store_for(ctx, &given)?;
    let state = crate::ops::point::state(ctx, &store, &given)?;
    let id = state.manifest().id.clone();
    let scratch = scratch_for(ctx, &store, "export", state.size())?;
    let pair = Pair::new(&spill_dir(&scratch)?)?;
    pair.attach(
        Side::A,
        &state.reassemble(&store, scratch.dir(), "a.duckdb")?,
    )?;
    let rels = pair.relations(Side::A)?;
    let t = find(&rels, table)?;
    let dir = PrivateDir::beside(&to)?;
    let tmp = dir.path().join(match format {
        Format::Csv => "export.csv",
        Format::Duckdb => "export.duckdb",
    });
    let written = pair.export(Side::A, t, &tmp, format);
    drop(pair);
    let rows = written
        .map_err(OpError::from)
        .and_then(|n| finish(&tmp, &to, format).map(|()| n));
    drop(dir);
    let rows = rows?;
    Ok(Exported {
        id,
        point: state.point(),
        table: Some(t.shown()),
        path: to,
        format,
        rows: Some(rows),
    })
}

/// Makes the written file private and moves it over `to` (a DuckDB file:
/// after removing stale side files of another database there, which
/// [`outfile::target`] found to be regular files).
fn finish(tmp: &Path, to: &Path, format: Format) -> Result<(), OpError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| OpError::Io { op, path, source }
    };
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o600))
        .map_err(io("set the mode of", tmp))?;
    fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("fsync", tmp))?;
    if format == Format::Duckdb {
        for side in duckfile::all_paths(to).iter().skip(1) {
            match fs::remove_file(side) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("remove the stale side file", side)(e));
                }
                _ => {}
            }
        }
    }
    fs::rename(tmp, to).map_err(io("rename into place", to))?;
    let dir = to.parent().unwrap_or(Path::new("/"));
    crate::store::fsync_dir(dir)?;
    Ok(())
}
