//! Logging setup: `tracing` to stderr, human-readable (ANSI colours only on a
//! terminal without `NO_COLOR`) or one JSON object per line. Events carry a stable `event` field
//! (`snapshot.created`, `capture.retry`, ...) and stable field names
//! (`id`, `bytes_new`, `duration_ms`, ...), which log monitoring can match.
//!
//! When stderr is the journal (`$JOURNAL_STREAM` names its device and
//! inode), every line starts with its syslog priority, `<3>` for errors to
//! `<7>` for debug and trace: journald strips the prefix and records the
//! priority, so `journalctl -p warning` shows warnings and errors only.

use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Whether `journal_stream` (`$JOURNAL_STREAM`, `DEV:INODE`) is this
/// process's stderr.
pub fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(m) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse::<u64>() == Ok(m.dev()) && ino.parse::<u64>() == Ok(m.ino())
}

/// The syslog priority of a level (sd-daemon.h's `SD_ERR` … `SD_DEBUG`).
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// A formatter that writes `<N>` before what `inner` writes.
struct Prioritized<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritized<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(w, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, w, event)
    }
}

/// Installs the global subscriber. `level` is one of error..trace;
/// `filter_override` (from `$DUCKSNAP_LOG`) is a full `EnvFilter` directive;
/// `color`: ANSI colours in human lines (the caller decides: a terminal,
/// and no `NO_COLOR`).
pub fn init(
    format: LogFormat,
    level: &str,
    filter_override: Option<&str>,
    color: bool,
    journal: bool,
) -> Result<(), String> {
    crate::config::check_log_level(level)?;
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
    let fmt = tracing_subscriber::fmt::format().with_target(false);
    let result = match (format, journal) {
        (LogFormat::Json, false) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Json, true) => builder
            .event_format(Prioritized(fmt.json().flatten_event(true)))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .try_init(),
        (LogFormat::Human, false) => builder.with_ansi(color).try_init(),
        (LogFormat::Human, true) => builder
            .with_ansi(false)
            .event_format(Prioritized(fmt))
            .try_init(),
    };
    // A second init (tests calling run twice in one process) keeps the first.
    let _ = result;
    Ok(())
}
