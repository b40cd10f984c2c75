//! `ducksnap rescue`: when DuckDB will not open the database, a database
//! that opens with every commit that can be got back ([`crate::ops::rescue`]),
//! after a confirmation; through the daemon when one serves this database.

use crate::config::HostEnv;
use crate::ops::rescue::Source;
use crate::ops::{Ctx, RescueRequest, Rescued};
use crate::protocol::calls;

use super::output::{outln, print_json};
use super::progress::Feedback;
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    req: RescueRequest,
    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(long)]
    yes: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(ctx: &Ctx, env: &HostEnv, a: Args, feedback: Feedback) -> anyhow::Result<u8> {
    let mut req = a.req;
    if !a.yes && !ctx.detection.is_cloud() {
        confirm(ctx, req.to.as_deref())?;
    }
    // The daemon's working directory is not ours.
    req.to = req.to.map(|p| env.cwd.join(p));
    let spinner = feedback.spinner("rescuing the database");
    let r = remote::call(ctx, calls::rescue(req));
    spinner.finish_and_clear();
    let r: Rescued = r?;
    if a.json {
        print_json(&r)?;
        return Ok(0);
    }
    print_text(&r)?;
    Ok(0)
}

fn print_text(r: &Rescued) -> anyhow::Result<()> {
    let path = r.path.display();
    let mut lines = vec![match r.source {
        Source::Healthy => {
            format!("nothing to rescue: DuckDB opens {path} as it is; nothing was changed")
        }
        Source::LiveWal => format!(
            "rescued {path}: the database file and {} commit(s) of its WAL",
            r.commits
        ),
        Source::ArchiveAndLiveWal => format!(
            "rescued {path}: the database file and {} commit(s) of its WAL, {} of them from ducksnap's archive",
            r.commits, r.from_archive
        ),
        Source::DatabaseFile => format!(
            "rescued {path}: the database file as of its last checkpoint (no commit of its WAL could be used)"
        ),
        Source::RestorePoint => format!(
            "rescued {path}: the database file could not be used; restored {}",
            match &r.point {
                Some(p) => format!("commit {p}"),
                None => format!(
                    "snapshot {}",
                    r.snapshot
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                ),
            }
        ),
    }];
    if r.source != Source::Healthy {
        if let Some(p) = r.first_bad {
            lines.push(format!("- the WAL is damaged from byte position {p}"));
        }
        if r.dropped_bytes > 0 {
            lines.push(format!(
                "- {} byte(s) of the WAL are not in the result",
                r.dropped_bytes
            ));
        }
        if let Some(t) = r.last_commit_at {
            lines.push(format!(
                "- the last commit recovered was seen at {}",
                super::human::time(t, false)
            ));
        }
        lines.extend(r.notes.iter().map(|n| format!("- {n}")));
        if let (Some(s), Source::LiveWal | Source::ArchiveAndLiveWal | Source::DatabaseFile) =
            (&r.snapshot, r.source)
        {
            lines.push(format!("the rescued database is stored as snapshot {s}"));
        }
        if let Some(p) = &r.pre_rescue {
            lines.push(format!(
                "the files that were there are kept byte for byte as pinned snapshot {p}; `ducksnap restore {p} --to PATH` gives them back"
            ));
        }
    }
    for l in lines {
        for w in super::human::wrap(&l, 78, "  ") {
            outln!("{w}");
        }
    }
    Ok(())
}

/// Asks on the terminal before replacing the database; refuses without one.
fn confirm(ctx: &Ctx, to: Option<&std::path::Path>) -> anyhow::Result<()> {
    let target = to
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| ctx.config.database.path.display().to_string());
    super::output::confirm(
        &format!(
            "Rescue the database into {target}?{}",
            if to.is_none() {
                " The files there now are first kept as a pinned pre-rescue snapshot."
            } else {
                ""
            }
        ),
        format!("rescuing into {target} needs confirmation; pass --yes when not on a terminal"),
        "rescue cancelled",
    )
}
