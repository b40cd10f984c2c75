//! Configuration: where it is found ([`locate`]), how it is parsed
//! ([`raw`], [`values`]), and the checked type the rest of the program uses
//! ([`checked`], made by [`check`]).
//!
//! The TOML file is parsed into `Raw*` structs with `deny_unknown_fields`, with
//! durations, sizes and cron expressions checked *while* parsing so that every
//! error carries the file, line, column and key. The raw form is then validated
//! into [`Config`], in which every relative path is resolved against the
//! config file's directory (systemd runs us with cwd `/`).
//!
//! Lookup order: `--config`, `$DUCKSNAP_CONFIG`, `./ducksnap.toml`,
//! `$XDG_CONFIG_HOME/ducksnap/config.toml` (or `~/.config/...`); when none
//! exists the built-in defaults apply, relative to the working directory.
//! Lookup reads an injected [`HostEnv`], never the process environment
//! directly, so tests can describe any host.

pub mod check;
pub mod checked;
pub mod error;
pub mod host;
pub mod locate;
pub mod offsite_url;
mod raw;
pub mod values;

pub use check::from_str_at;
pub use checked::*;
pub use error::ConfigError;
pub use host::{HostEnv, default_socket_path};
pub use locate::{Located, load, load_file, locate, mode_from_env};
pub use offsite_url::OffsiteTarget;
pub use values::*;
