//! `ducksnap demo`: the main job, start to finish, on a sample database of
//! its own — a shop app holds `data/shop.duckdb` read-write in another
//! process ([`app`]), the daemon runs in this process, the app asks it for
//! an online `pre-delete` snapshot over the socket and then deletes a
//! customer with their orders, and the snapshot is restored once the app has
//! closed. Each step prints what happened and the command that does it by
//! hand, and is checked: the exit code is 0 only when every step was.

pub mod app;
mod steps;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::output::outln;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Work in this directory (created; must be empty if it exists)
    /// instead of a new one under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The config the demo writes: its own database, store and socket, forced
/// local so that no detection signal of this shell turns it off. The demo
/// walks through the pre-delete *snapshot* and its restore, so continuous
/// archiving (which answers a pre-delete request with a marker when it
/// can) is off in it.
const CONFIG: &str = r#"# Written by `ducksnap demo`: a sample shop database and its snapshots.
[database]
path = "data/shop.duckdb"
mode = "local"

[store]
dir = "data/backups"

[schedule]
cron = "@hourly"

[continuous]
# This demo shows snapshots; on by default elsewhere.
enabled = false

[socket]
path = "ducksnap.sock"
"#;

pub fn run(a: Args) -> anyhow::Result<u8> {
    let dir = prepare_dir(a.dir)?;
    outln!(
        "ducksnap demo: the main job, start to finish, in {}",
        dir.display()
    );
    outln!();
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(dir.join("ducksnap.toml"), CONFIG)?;
    steps::Demo::new(&dir)?.run()?;
    outln!();
    outln!("Every step checked out. Try the commands yourself:");
    outln!("  cd {}", dir.display());
    let me = super::output::program();
    outln!("  {me} list        # finds ./ducksnap.toml");
    outln!("  {me} show latest:pre-delete");
    outln!("  {me} daemon      # the service the demo ran in-process");
    outln!("(config: {})", dir.join("ducksnap.toml").display());
    if me != "ducksnap" {
        outln!(
            "(no ducksnap on PATH runs this build: cargo install --locked --path . puts it there)"
        );
    }
    Ok(0)
}

/// The demo's directory: `--dir` (created, or empty) or a new one under the
/// temporary directory. It is kept afterwards, for trying commands by hand.
fn prepare_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(d) => {
            let d = std::path::absolute(&d).with_context(|| format!("--dir {}", d.display()))?;
            if d.exists() && std::fs::read_dir(&d)?.next().is_some() {
                return Err(crate::ops::OpError::InvalidArgument {
                    what: "--dir",
                    reason: format!(
                        "{} is not empty: the demo only works in an empty or new directory (it never touches your files)",
                        d.display()
                    ),
                }
                .into());
            }
            d
        }
        None => fresh_temp_dir()?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(std::fs::canonicalize(&dir)?)
}

fn fresh_temp_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let d = base.join(format!("ducksnap-demo-{}-{n}", std::process::id()));
        match std::fs::create_dir(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", d.display())),
        }
    }
    bail!("cannot create a demo directory under {}", base.display())
}

/// `p` relative to the demo directory, for the transcript.
fn short(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}
