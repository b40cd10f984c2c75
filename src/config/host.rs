//! [`HostEnv`]: the variables and working directory of the host, captured
//! once and passed in (never the process environment read directly), and
//! the default socket path it implies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Variables and the working directory of the host, captured once and passed
/// around instead of reading the process environment.
#[derive(Debug, Clone, Default)]
pub struct HostEnv {
    pub vars: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

impl HostEnv {
    /// Snapshot of the real process environment (used by `main` only).
    pub fn from_process() -> Self {
        HostEnv {
            vars: std::env::vars().collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A variable that is set and not empty.
    pub fn nonempty(&self, name: &str) -> Option<&str> {
        self.var(name).filter(|v| !v.is_empty())
    }
}

/// `$DUCKSNAP_SOCKET` (relative to the working directory), else
/// `$XDG_RUNTIME_DIR/ducksnap.sock`, else `/tmp/ducksnap-<uid>/ducksnap.sock`.
/// The Python client reads the same variables in the same order.
pub fn default_socket_path(env: &HostEnv) -> PathBuf {
    if let Some(p) = env.nonempty("DUCKSNAP_SOCKET") {
        return env.cwd.join(p);
    }
    match env.nonempty("XDG_RUNTIME_DIR") {
        Some(dir) => Path::new(dir).join("ducksnap.sock"),
        None => {
            PathBuf::from(format!("/tmp/ducksnap-{}", nix::unistd::getuid())).join("ducksnap.sock")
        }
    }
}
