//! The systemd user unit `init --systemd` installs:
//! `$XDG_CONFIG_HOME/systemd/user/ducksnap-NAME.service`, starting the
//! binary that runs now (not a guessed `~/.cargo/bin`) with the project's
//! config.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::HostEnv;

/// Writes the unit; returns its name.
pub fn install(name: &str, config: &Path, env: &HostEnv, force: bool) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("finding this program")?;
    let exe = std::fs::canonicalize(&exe)
        .with_context(|| format!("{} (was it deleted or replaced?)", exe.display()))?;
    let unit = format!("ducksnap-{name}.service");
    let dir = units_dir(env)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(&unit);
    if !force && std::fs::symlink_metadata(&path).is_ok() {
        return Err(crate::ops::OpError::Exists { path }.into());
    }
    super::write_new(&path, &text(name, &exe, config)?)?;
    crate::cli::output::outln!("wrote {}", path.display());
    Ok(unit)
}

fn units_dir(env: &HostEnv) -> anyhow::Result<PathBuf> {
    match (env.nonempty("XDG_CONFIG_HOME"), env.nonempty("HOME")) {
        (Some(c), _) => Ok(Path::new(c).join("systemd/user")),
        (None, Some(h)) => Ok(Path::new(h).join(".config/systemd/user")),
        (None, None) => {
            bail!("neither $XDG_CONFIG_HOME nor $HOME is set: nowhere to install a user unit")
        }
    }
}

/// A path as one systemd command-line word (quoted, `%` and `\` escaped).
fn word(p: &Path) -> anyhow::Result<String> {
    let s = p.to_str().context("a path that is not UTF-8")?;
    if s.contains(['"', '\n']) {
        bail!("{s:?} cannot be written into a unit file");
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('%', "%%")
    ))
}

fn text(name: &str, exe: &Path, config: &Path) -> anyhow::Result<String> {
    Ok(format!(
        "# Installed by `ducksnap init --systemd` for project {name}.
[Unit]
Description=ducksnap for project {name} - point-in-time snapshots of its DuckDB database
# Once ducksnap-alert@.service is installed (docs/DEPLOYMENT.md, \"Alerts\"):
#OnFailure=ducksnap-alert@%n.service

[Service]
Type=notify
NotifyAccess=main
ExecStart={exe} --config {config} daemon
# Offsite credentials (only with [offsite]): offsite.credentials_file in the
# config, or uncomment this and put AWS_ACCESS_KEY_ID=... and
# AWS_SECRET_ACCESS_KEY=... lines in the file (chmod 600), then
# systemctl --user daemon-reload and restart:
#EnvironmentFile=%h/.config/ducksnap/{name}.env
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
# Exit code 2 is a bad config: restarting cannot fix it.
RestartPreventExitStatus=2
TimeoutStopSec=30s
WatchdogSec=60s
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
UMask=0077

[Install]
WantedBy=default.target
",
        exe = word(exe)?,
        config = word(config)?,
    ))
}
