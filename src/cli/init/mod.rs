//! `ducksnap init`: set a project up in one command. Finds the app's DuckDB
//! file under the project directory ([`find`]) or takes `--database`,
//! writes a commented `ducksnap.toml` with absolute paths (the daemon runs
//! from `/`), prints the next commands, and with `--systemd` installs a user
//! unit that starts the very binary running now ([`unit`]). Nothing that
//! exists is overwritten without `--force`.

mod find;
mod unit;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::output::outln;
use crate::config::{self, HostEnv};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project directory (default: the working directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The app's DuckDB file (default: the one DuckDB file found under the
    /// project directory; it need not exist yet when given here).
    #[arg(long, value_name = "FILE")]
    database: Option<PathBuf>,
    /// The project's name, for the socket and the unit (default: the
    /// directory's name).
    #[arg(long)]
    name: Option<String>,
    /// Also install a systemd user unit, ducksnap-NAME.service.
    #[arg(long)]
    systemd: bool,
    /// Overwrite an existing ducksnap.toml (and unit).
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args, env: &HostEnv) -> anyhow::Result<u8> {
    let dir = std::fs::canonicalize(env.cwd.join(a.dir.as_deref().unwrap_or(Path::new("."))))
        .context("the project directory")?;
    let name = project_name(a.name.as_deref(), &dir)?;
    let database = match &a.database {
        Some(p) => std::path::absolute(env.cwd.join(p))?,
        None => find::the_database(&dir)?,
    };
    let config_path = dir.join("ducksnap.toml");
    refuse_overwrite(&config_path, a.force)?;
    let text = config_text(&name, &database, env);
    write_new(&config_path, &text)?;
    // What was written must load: the same checks every command makes.
    config::load_file(&config_path, env).context("the config just written")?;
    outln!("wrote {}", config_path.display());
    outln!("  database: {}", database.display());
    let unit = if a.systemd {
        Some(unit::install(&name, &config_path, env, a.force)?)
    } else {
        None
    };
    next_steps(&dir, &name, unit.as_deref())?;
    Ok(0)
}

fn project_name(given: Option<&str>, dir: &Path) -> anyhow::Result<String> {
    let raw = match given {
        Some(n) => n.to_string(),
        None => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "project".into()),
    };
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() || name.len() > 64 || (given.is_some() && name != raw) {
        bail!("invalid project name {raw:?}: use 1 to 64 letters, digits, '-' or '_' (--name)");
    }
    Ok(name)
}

fn refuse_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(crate::ops::OpError::Exists {
            path: path.to_path_buf(),
        }
        .into());
    }
    Ok(())
}

/// Writes `text` to `path` through a temporary file and a rename, so that a
/// crash never leaves half a file where a good one was.
pub(super) fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp-ducksnap-init");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The per-project socket, where the Python client looks for daemons:
/// `$XDG_RUNTIME_DIR/ducksnap/NAME.sock` (or `/tmp/ducksnap-UID/…`).
fn socket_path(name: &str, env: &HostEnv) -> PathBuf {
    let runtime = match env.nonempty("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(format!("/tmp/ducksnap-{}", nix::unistd::getuid())),
    };
    runtime.join("ducksnap").join(format!("{name}.sock"))
}

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

fn config_text(name: &str, database: &Path, env: &HostEnv) -> String {
    let store = database.parent().unwrap_or(Path::new("/")).join("backups");
    format!(
        include_str!("template.toml"),
        name = name,
        database = toml_str(database),
        store = toml_str(&store),
        socket = toml_str(&socket_path(name, env)),
    )
}

fn next_steps(dir: &Path, name: &str, unit: Option<&str>) -> anyhow::Result<()> {
    outln!();
    outln!("next, in {}:", dir.display());
    let me = super::output::program();
    outln!("  {me} config check     # the effective config, every path resolved");
    outln!("  {me} snapshot         # the first snapshot");
    outln!("  {me} list");
    match unit {
        Some(u) => {
            outln!("  systemctl --user daemon-reload");
            outln!("  systemctl --user enable --now {u}   # the daemon: schedule, watcher, socket");
            outln!("  journalctl --user -u {u}");
        }
        None => {
            outln!("  {me} daemon           # the service (or: {me} init --systemd --force)");
        }
    }
    let _ = name;
    Ok(())
}
