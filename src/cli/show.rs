//! `ducksnap show ID`: one snapshot's manifest (read here, from the store).

use crate::ops::{self, Ctx, OpError, SnapshotRef};
use crate::store::{FileHash, Manifest};

use super::human;
use super::output::{outln, print_json};

/// One snapshot (also `pin` and `unpin`'s arguments).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub(super) snapshot: SnapshotRef,
    /// Times in UTC instead of local time.
    #[arg(long)]
    pub(super) utc: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let shown = ops::show(ctx, &a.snapshot)?;
    if let Some(t) = &a.snapshot.as_of {
        let given = format!("{}{t}", ops::select::AS_OF);
        if let Some(note) = ops::select::as_of_note(&given, &shown.manifest) {
            eprintln!("{note}");
        }
    }
    if a.json {
        print_json(&shown)?;
    } else {
        if let Some(p) = &shown.point {
            let now = chrono::Utc::now();
            outln!("point:       {} (a commit)", p.id);
            outln!(
                "seen:        {} ({})",
                human::time(p.at, a.utc),
                human::age(p.at, now)
            );
            outln!(
                "replays:     {} of archived WAL onto snapshot {}:",
                human::size(p.wal_bytes),
                p.base
            );
            outln!();
        }
        print_manifest(&shown.manifest, a.utc)?;
    }
    if !shown.missing_chunks.is_empty() {
        for h in &shown.missing_chunks {
            eprintln!("missing chunk: {h}");
        }
        let err = OpError::Damaged {
            id: shown.manifest.id.clone(),
            missing: shown.missing_chunks.len(),
        };
        return super::output::fail_after_report(a.json, err);
    }
    Ok(0)
}

fn print_manifest(m: &Manifest, utc: bool) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    outln!("id:          {}", m.id);
    outln!(
        "created:     {} ({})",
        human::time(m.created_at, utc),
        human::age(m.created_at, now)
    );
    outln!("reason:      {}", m.reason);
    outln!("label:       {}", m.label.as_deref().unwrap_or("-"));
    let pinned = match (m.pinned, m.pinned_until) {
        (true, Some(t)) => format!(
            "yes, until {} ({})",
            human::time(t, utc),
            human::age(t, now)
        ),
        (true, None) => "yes".into(),
        (false, _) => "no".into(),
    };
    outln!("pinned:      {pinned}");
    outln!(
        "database:    {} ({})",
        m.database.path,
        human::size(m.db_size())
    );
    outln!(
        "storage:     version {}, block size {}, {} blocks, header iteration {}",
        m.database.storage_version,
        m.database.block_size,
        m.database.block_count,
        m.database.iteration
    );
    for f in &m.files {
        outln!(
            "file {:<6} {}, {} chunks, blake3 ({}) {}",
            f.role,
            human::size(f.size),
            f.chunks.len(),
            match f.hash_of {
                FileHash::Bytes => "of the bytes",
                FileHash::ChunkList => "of the chunk list",
            },
            f.hash
        );
    }
    outln!(
        "capture:     {}, {} attempt(s), {} ms, {} new stored",
        m.capture.method,
        m.capture.attempts,
        m.capture.duration_ms,
        human::size(m.bytes_new)
    );
    outln!(
        "check:       {}{} (DuckDB {})",
        m.check.status,
        m.check
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default(),
        m.check.duckdb_version
    );
    for t in &m.check.tables {
        outln!("  {}.{}: {} rows", t.schema, t.name, t.rows);
    }
    Ok(())
}
