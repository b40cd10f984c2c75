//! Logging setup: `tracing` to stderr, human-readable (ANSI colours only on a
//! terminal without `NO_COLOR`) or one JSON object per line. Events carry a stable `event` field
//! (`snapshot.created`, `capture.retry`, ...) and stable field names
//! (`id`, `bytes_new`, `duration_ms`, ...), which log monitoring can match.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `level` is one of error..trace;
/// `filter_override` (from `$DUCKSNAP_LOG`) is a full `EnvFilter` directive;
/// `color`: ANSI colours in human lines (the caller decides: a terminal,
/// and no `NO_COLOR`).
pub fn init(
    format: LogFormat,
    level: &str,
    filter_override: Option<&str>,
    color: bool,
) -> Result<(), String> {
    if !["error", "warn", "info", "debug", "trace"].contains(&level) {
        return Err(format!(
            "{level:?} is not one of error, warn, info, debug, trace"
        ));
    }
    let filter = match filter_override.filter(|s| !s.is_empty()) {
        Some(f) => {
            EnvFilter::try_new(f).map_err(|e| format!("invalid $DUCKSNAP_LOG {f:?}: {e}"))?
        }
        None => EnvFilter::new(format!("ducksnap={level},warn")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.with_ansi(color).try_init(),
    };
    // A second init (tests calling run twice in one process) keeps the first.
    let _ = result;
    Ok(())
}
