//! [`ConfigError`]: why a config could not be located, read, parsed or
//! validated — naming the file, and the key where there is one.

use std::path::PathBuf;

/// Errors from locating, reading, parsing or validating a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config file {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("config file {path} given by {origin} does not exist")]
    Missing { path: PathBuf, origin: &'static str },
    #[error("invalid environment variable ${name}={value:?}: {message}")]
    Env {
        name: &'static str,
        value: String,
        message: String,
    },
}
