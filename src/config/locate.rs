//! Where the config is found — `--config`, `$DUCKSNAP_CONFIG`,
//! `./ducksnap.toml`, `$XDG_CONFIG_HOME/ducksnap/config.toml`, else the
//! built-in defaults — and where the socket is by default.

use std::path::{Path, PathBuf};

use super::check::from_str_at;
use super::checked::Config;
use super::error::ConfigError;
use super::host::HostEnv;
use super::values::ModeSetting;

/// Where the config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    File { path: PathBuf, origin: &'static str },
    Defaults,
}

/// Finds the config file: `--config`, `$DUCKSNAP_CONFIG`, `./ducksnap.toml`,
/// `$XDG_CONFIG_HOME/ducksnap/config.toml`. An explicitly named file that
/// does not exist is an error; the implicit places are simply skipped.
pub fn locate(cli: Option<&Path>, env: &HostEnv) -> Result<Located, ConfigError> {
    let explicit = cli.map(|p| (env.cwd.join(p), "--config")).or_else(|| {
        env.nonempty("DUCKSNAP_CONFIG")
            .map(|p| (env.cwd.join(p), "$DUCKSNAP_CONFIG"))
    });
    if let Some((path, origin)) = explicit {
        if !path.exists() {
            return Err(ConfigError::Missing { path, origin });
        }
        return Ok(Located::File { path, origin });
    }
    let local = env.cwd.join("ducksnap.toml");
    if local.is_file() {
        return Ok(Located::File {
            path: local,
            origin: "./ducksnap.toml",
        });
    }
    let xdg = env
        .nonempty("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env.nonempty("HOME").map(|h| Path::new(h).join(".config")));
    if let Some(dir) = xdg {
        let p = dir.join("ducksnap").join("config.toml");
        if p.is_file() {
            return Ok(Located::File {
                path: p,
                origin: "$XDG_CONFIG_HOME/ducksnap/config.toml",
            });
        }
    }
    Ok(Located::Defaults)
}

/// `$DUCKSNAP_MODE` (`local`, `cloud` or `auto`), which overrides
/// `database.mode` wherever it is set; `None` when unset or empty.
pub fn mode_from_env(env: &HostEnv) -> Result<Option<ModeSetting>, ConfigError> {
    let Some(v) = env.nonempty("DUCKSNAP_MODE") else {
        return Ok(None);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "local" => Ok(Some(ModeSetting::Local)),
        "cloud" => Ok(Some(ModeSetting::Cloud)),
        "auto" => Ok(Some(ModeSetting::Auto)),
        _ => Err(ConfigError::Env {
            name: "DUCKSNAP_MODE",
            value: v.to_string(),
            message: "expected local, cloud or auto".into(),
        }),
    }
}

/// Locates and loads the config.
pub fn load(cli: Option<&Path>, env: &HostEnv) -> Result<Config, ConfigError> {
    mode_from_env(env)?;
    match locate(cli, env)? {
        Located::File { path, .. } => load_file(&path, env),
        Located::Defaults => from_str_at("", None, &env.cwd, env),
    }
}

/// Loads one file.
pub fn load_file(path: &Path, env: &HostEnv) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    from_str_at(&text, Some(&path), &base, env)
}
