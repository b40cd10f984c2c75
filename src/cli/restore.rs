//! `ducksnap restore ID`: put a snapshot back (after a confirmation).

use std::path::Path;

use crate::config::HostEnv;
use crate::ops::{Ctx, RestoreRequest, Restored, select};
use crate::protocol::calls;

use super::output::{outln, print_json};
use super::progress::Feedback;
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    req: RestoreRequest,
    /// Where the snapshot is: the local store (default), or offsite — then
    /// it is pulled into the local store first (created if absent: a new
    /// machine needs only the config and the key file).
    #[arg(long, value_enum, default_value = "local")]
    from: Source,
    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(long)]
    yes: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Source {
    Local,
    Offsite,
}

pub fn run(ctx: &Ctx, env: &HostEnv, a: Args, feedback: Feedback) -> anyhow::Result<u8> {
    let mut req = a.req;
    let mut given = req.given()?;
    if let Source::Offsite = a.from {
        let spinner = feedback.spinner(&format!("pulling {given} from offsite"));
        let pulled = crate::ops::offsite::pull_one(ctx, env, &given);
        spinner.finish_and_clear();
        given = pulled?.id;
    }
    let mut as_of = None;
    let mut chosen = None;
    if !ctx.detection.is_cloud() {
        // `latest` and `--as-of` are decided once, here: what the prompt
        // names is what is restored, whatever snapshot lands meanwhile.
        if let Some((point, at, base)) = crate::ops::point::decide(ctx, &given)? {
            let now = chrono::Utc::now();
            chosen = Some((
                format!(
                    "commit {point}: seen {} ({}), replayed onto snapshot {base}",
                    super::human::age(at, now),
                    super::human::time(at, false)
                ),
                None,
            ));
            given = point;
        } else {
            let (store, id) = select::resolve(ctx, &given)?;
            let manifest = store.load_manifest(&id).ok();
            as_of = manifest
                .as_ref()
                .and_then(|m| select::as_of_note(&given, m));
            chosen = manifest.map(|m| describe(&m));
            given = id.to_string();
        }
    }
    if let Some(note) = &as_of {
        eprintln!("{note}");
    }
    if let Some((what, warning)) = &chosen {
        eprintln!("{what}");
        if let Some(w) = warning {
            eprintln!("{w}");
        }
    }
    (req.id, req.as_of) = (Some(given.clone()), None);
    if !a.yes {
        confirm(ctx, &given, req.to.as_deref())?;
    }
    // The daemon's working directory is not ours.
    req.to = req.to.map(|p| env.cwd.join(p));
    let spinner = feedback.spinner(&format!("restoring {given}"));
    let r = remote::call(ctx, calls::restore(req));
    spinner.finish_and_clear();
    let mut r: Restored = r?;
    r.as_of = as_of;
    if a.json {
        print_json(&r)?;
        return Ok(0);
    }
    match &r.point {
        Some(p) => outln!(
            "restored commit {p} (snapshot {} and the archived WAL up to that commit) to {}",
            r.id,
            r.path.display()
        ),
        None => outln!(
            "restored snapshot {} to {}{}",
            r.id,
            r.path.display(),
            if r.wal { " (with its WAL)" } else { "" }
        ),
    }
    if let Some(p) = &r.pre_restore {
        outln!("the previous database is kept as pinned snapshot {p} (restore it to undo)");
    }
    if r.point.is_some() && !r.checked {
        outln!(
            "note: DuckDB has not opened the result yet; --check makes it open and read every table"
        );
    } else if !r.verified {
        outln!(
            "note: the bundled DuckDB cannot read this storage version; only the file hash was checked"
        );
    }
    Ok(0)
}

/// What is about to be restored, for people: "snapshot ID: reason
/// pre-delete, label "…", taken 3 hours ago (2026-…)", and a warning when
/// it is a `pre-restore` safety copy — the state an earlier restore undid.
fn describe(m: &crate::store::Manifest) -> (String, Option<String>) {
    let now = chrono::Utc::now();
    let label = m
        .label
        .as_deref()
        .map(|l| format!(", label {:?}", super::human::cut(l, 60)))
        .unwrap_or_default();
    let what = format!(
        "snapshot {}: reason {}{label}, taken {} ({})",
        m.id,
        m.reason,
        super::human::age(m.created_at, now),
        super::human::time(m.created_at, false)
    );
    let warning = (m.reason == "pre-restore").then(|| {
        "warning: this is a pre-restore safety copy: the database as it was just before an earlier restore replaced it. To go further back, name an older snapshot (ducksnap list).".to_string()
    });
    (what, warning)
}

/// Asks on the terminal before replacing the database; refuses without one.
fn confirm(ctx: &Ctx, id: &str, to: Option<&Path>) -> anyhow::Result<()> {
    if ctx.detection.is_cloud() {
        return Ok(()); // restore answers with the disabled error itself
    }
    let target = to
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| ctx.config.database.path.display().to_string());
    super::output::confirm(
        &format!(
            "Restore snapshot {id} to {target}?{}",
            if to.is_none() {
                " The current database is first saved as a pinned pre-restore snapshot."
            } else {
                ""
            }
        ),
        format!("restoring {id} to {target} needs confirmation; pass --yes when not on a terminal"),
        "restore cancelled",
    )
}
