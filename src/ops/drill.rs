//! The restore drill (`[schedule] verify`): deep-verify — reassemble, open
//! with DuckDB, read every column — the newest snapshot and a rolling
//! sample of the older ones, `ceil(older / 7)` per run, so that daily drills
//! cover every snapshot at least once a week. The place in the sample is
//! kept in the health record; a damaged snapshot is logged as an error
//! naming it and its chunks, and makes `status --check` CRITICAL.

use crate::monitor::{self, Health};
use crate::ops::context::{Ctx, OpError, open_store};
use crate::ops::progress::Progress;
use crate::ops::verify::{VerifyReport, VerifyRequest, check_all, record_damage};

/// Runs one drill (a run of `verify` in the health record).
pub fn drill(ctx: &Ctx) -> Result<VerifyReport, OpError> {
    crate::ops::context::run_job(ctx, monitor::Job::Verify, false, || sample(ctx))
}

/// Deep-verifies the newest snapshot and the next of the rolling sample.
fn sample(ctx: &Ctx) -> Result<VerifyReport, OpError> {
    let store = open_store(ctx, false)?;
    let mut ids: Vec<String> = store
        .catalog()?
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    ids.sort();
    let cursor = Health::load(&store).drill_cursor;
    let picked = pick(&ids, cursor.as_deref());
    let mut report = VerifyReport {
        disabled: false,
        checked: 0,
        problems: 0,
        snapshots: Vec::new(),
        archive: None,
    };
    for id in &picked {
        let req = VerifyRequest {
            id: Some(id.clone()),
            deep: true,
        };
        match check_all(ctx, &req, &Progress::none()) {
            Ok(r) => {
                report.checked += r.checked;
                report.problems += r.problems;
                report.snapshots.extend(r.snapshots);
            }
            // Pruned meanwhile: nothing to verify.
            Err(OpError::Store(crate::store::StoreError::NotFound { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    for s in report.snapshots.iter().filter(|s| !s.ok) {
        tracing::error!(event = "verify.damaged", id = %s.id, missing = ?s.missing_chunks, corrupt = ?s.corrupt_chunks, error = s.error.as_deref().unwrap_or(""), "restore drill: snapshot {} is damaged", s.id);
    }
    tracing::info!(
        event = "verify.drill",
        checked = report.checked,
        problems = report.problems,
        "restore drill done"
    );
    record_damage(ctx, &report);
    let last_older = picked.iter().rfind(|id| Some(*id) != ids.last()).cloned();
    if last_older.is_some() {
        monitor::record(ctx, |h| h.drill_cursor = last_older);
    }
    Ok(report)
}

/// The newest id, then `ceil(older / 7)` older ones in id order starting
/// after `cursor` (wrapping around).
pub fn pick(ids: &[String], cursor: Option<&str>) -> Vec<String> {
    let Some((newest, older)) = ids.split_last() else {
        return Vec::new();
    };
    let n = older.len().div_ceil(7);
    let start = cursor
        .and_then(|c| older.iter().position(|id| id.as_str() > c))
        .unwrap_or(0);
    let mut out = vec![newest.clone()];
    out.extend(older.iter().cycle().skip(start).take(n).cloned());
    out
}
