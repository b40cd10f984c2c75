//! Environment detection: is there a local database worth keeping, or is this a
//! cloud deployment (Streamlit Community Cloud, MotherDuck) where backups are
//! disabled?
//!
//! The decision is a pure function of an injected [`HostEnv`] (variables and
//! working directory), the configured database path and the configured
//! [`ModeSetting`]. Every signal is reported with its value and whether it
//! fired, so `ducksnap env` and the logs can say exactly why.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{Config, HostEnv, ModeSetting};

/// The mode ducksnap runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A local database file: snapshots are taken.
    Local,
    /// A cloud deployment: backups are disabled, every operation answers
    /// with its documented "disabled" result.
    Cloud,
}

/// The documented lower-case word (as in JSON, manifests and the config).
impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Local => "local",
            Mode::Cloud => "cloud",
        })
    }
}

/// One input to the decision.
#[derive(Debug, Clone, Serialize)]
pub struct Signal {
    /// Stable name, e.g. `STREAMLIT_SHARING_MODE`.
    pub name: &'static str,
    /// What the signal looks at, in words.
    pub rule: &'static str,
    /// The observed value (`None` when unset).
    pub value: Option<String>,
    /// Whether the signal indicates the cloud.
    pub fired: bool,
}

/// The outcome: the mode, why, and every signal.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub mode: Mode,
    pub setting: ModeSetting,
    /// One sentence: why this mode.
    pub reason: String,
    pub signals: Vec<Signal>,
}

impl Detection {
    pub fn is_cloud(&self) -> bool {
        self.mode == Mode::Cloud
    }

    /// Names of the signals that fired, owned (for replies and reports).
    pub fn fired_names(&self) -> Vec<String> {
        self.fired().into_iter().map(String::from).collect()
    }

    /// Names of the signals that fired.
    pub fn fired(&self) -> Vec<&'static str> {
        self.signals
            .iter()
            .filter(|s| s.fired)
            .map(|s| s.name)
            .collect()
    }
}

const MOUNT_SRC: &str = "/mount/src/";

fn under_mount_src(p: &Path) -> bool {
    let s = p.to_string_lossy();
    s.starts_with(MOUNT_SRC) || s == MOUNT_SRC.trim_end_matches('/')
}

/// Decides the mode. `database` is the configured path (absolute, or `md:…`).
pub fn detect(env: &HostEnv, database: &Path, setting: ModeSetting) -> Detection {
    let var = |n: &str| env.var(n).map(str::to_string);
    let sharing = var("STREAMLIT_SHARING_MODE");
    let headless = var("STREAMLIT_SERVER_HEADLESS");
    let db_mode = var("DATABASE_MODE");
    let db_str = database.to_string_lossy().to_string();
    let cwd_str = env.cwd.to_string_lossy().to_string();

    let signals = vec![
        Signal {
            name: "STREAMLIT_SHARING_MODE",
            rule: "set (Streamlit Community Cloud)",
            fired: sharing.is_some(),
            value: sharing,
        },
        Signal {
            name: "STREAMLIT_SERVER_HEADLESS",
            rule: "equals \"true\"",
            fired: headless
                .as_deref()
                .map(|v| v.trim().eq_ignore_ascii_case("true"))
                .unwrap_or(false),
            value: headless,
        },
        Signal {
            name: "working_directory",
            rule: "under /mount/src/",
            fired: under_mount_src(&env.cwd),
            value: Some(cwd_str),
        },
        Signal {
            name: "database_path",
            rule: "under /mount/src/",
            fired: under_mount_src(database),
            value: Some(db_str.clone()),
        },
        Signal {
            name: "database_md",
            rule: "database starts with \"md:\" (MotherDuck)",
            fired: db_str.starts_with("md:"),
            value: Some(db_str),
        },
        Signal {
            name: "DATABASE_MODE",
            rule: "equals \"motherduck\"",
            fired: db_mode
                .as_deref()
                .map(|v| v.trim().eq_ignore_ascii_case("motherduck"))
                .unwrap_or(false),
            value: db_mode,
        },
    ];

    let fired: Vec<&str> = signals.iter().filter(|s| s.fired).map(|s| s.name).collect();
    // $DUCKSNAP_MODE wins over the config (validated by `config::load`).
    let from_env = crate::config::mode_from_env(env).ok().flatten();
    let setting = from_env.unwrap_or(setting);
    let (mode, reason) = match (from_env, setting) {
        (Some(ModeSetting::Local), _) => (
            Mode::Local,
            "mode forced to local by $DUCKSNAP_MODE".to_string(),
        ),
        (Some(ModeSetting::Cloud), _) => (
            Mode::Cloud,
            "mode forced to cloud by $DUCKSNAP_MODE".to_string(),
        ),
        (_, setting) => by_setting(setting, &fired),
    };
    Detection {
        mode,
        setting,
        reason,
        signals,
    }
}

/// The mode a [`ModeSetting`] gives, with the signals that fired.
fn by_setting(setting: ModeSetting, fired: &[&str]) -> (Mode, String) {
    match setting {
        ModeSetting::Local => (
            Mode::Local,
            "mode forced to local by the config (database.mode = \"local\")".to_string(),
        ),
        ModeSetting::Cloud => (
            Mode::Cloud,
            "mode forced to cloud by the config (database.mode = \"cloud\")".to_string(),
        ),
        ModeSetting::Auto if fired.is_empty() => (Mode::Local, "no cloud signal fired".to_string()),
        ModeSetting::Auto => (
            Mode::Cloud,
            format!("cloud signal(s) fired: {}", fired.join(", ")),
        ),
    }
}

impl Detection {
    /// The decision of the daemon that answered (`hello`): when one answers,
    /// the CLI uses it, so that reads and forwarded commands agree whatever
    /// the shell's environment says.
    pub fn from_daemon(mode: Mode, reason: &str, pid: u64) -> Detection {
        Detection {
            mode,
            setting: ModeSetting::Auto,
            reason: format!("decided by the running daemon (pid {pid}): {reason}"),
            signals: Vec::new(),
        }
    }
}

/// The sentence shown wherever backups are disabled.
pub fn disabled_message(d: &Detection) -> String {
    format!(
        "backups are disabled: cloud mode ({}). There is no local database file to keep; \
         MotherDuck's own durability and snapshots (CREATE SNAPSHOT, restore with \
         CREATE DATABASE ... FROM ... (SNAPSHOT_TIME ...)) cover production.",
        d.reason
    )
}

/// Everything an operation needs: the checked config and the environment
/// decision.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: Config,
    pub detection: Detection,
}
