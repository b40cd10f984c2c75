//! The Prometheus textfile (`[monitor] metrics_file`, for node_exporter's
//! textfile collector): rendered from the health record and the store,
//! replaced atomically (written beside it, fsynced, renamed) after every
//! job, whichever process ran it. The names below are stable; README lists
//! them.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::state::{Health, Job};

/// What the store holds, for the gauges.
#[derive(Debug, Clone, Default)]
pub struct StoreFacts {
    pub snapshots: usize,
    /// Bytes of chunk files on disk (compressed, each chunk once).
    pub store_bytes: u64,
    /// Bytes of distinct data the snapshots hold (uncompressed, each chunk
    /// once).
    pub unique_bytes: u64,
    pub newest: Option<DateTime<Utc>>,
    /// Seconds the oldest snapshot not yet offsite has waited (with
    /// `[offsite]`; 0 when none waits).
    pub offsite_lag: Option<i64>,
    /// The WAL archive against the live WAL (continuous archiving on, or
    /// an archive there).
    pub archive: Option<crate::archive::state::Standing>,
}

fn secs(t: DateTime<Utc>) -> String {
    format!("{:.3}", t.timestamp_millis() as f64 / 1000.0)
}

/// One metric family: its HELP and TYPE lines, then its samples.
fn family(o: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(o, "{name}{labels} {value}");
    }
}

/// Per job: its label and a value, where it has one.
fn per_job(
    h: &Health,
    f: impl Fn(&super::state::JobRecord) -> Option<String>,
) -> Vec<(String, String)> {
    Job::recorded_kinds()
        .filter_map(|j| {
            let r = h.jobs.get(&j).cloned().unwrap_or_default();
            f(&r).map(|v| (format!("{{job=\"{}\"}}", j.name()), v))
        })
        .collect()
}

/// A metric family: name, type, help, samples (labels, value).
type Family = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(String, String)>,
);

/// The per-job families.
fn job_families(h: &Health) -> Vec<Family> {
    let runs: Vec<(String, String)> = Job::recorded_kinds()
        .flat_map(|j| {
            let r = h.jobs.get(&j).cloned().unwrap_or_default();
            [("ok", r.ok_runs), ("failed", r.failed_runs)].map(|(res, n)| {
                (
                    format!("{{job=\"{}\",result=\"{res}\"}}", j.name()),
                    n.to_string(),
                )
            })
        })
        .collect();
    vec![
        (
            "ducksnap_last_success_timestamp_seconds",
            "gauge",
            "When each job last succeeded (Unix time).",
            per_job(h, |r| r.last_success.map(secs)),
        ),
        (
            "ducksnap_last_failure_timestamp_seconds",
            "gauge",
            "When each job last failed (Unix time).",
            per_job(h, |r| r.last_failure.as_ref().map(|f| secs(f.at))),
        ),
        (
            "ducksnap_last_duration_seconds",
            "gauge",
            "How long each job's last successful run took.",
            per_job(h, |r| {
                r.last_duration_ms
                    .map(|ms| format!("{:.3}", ms as f64 / 1000.0))
            }),
        ),
        (
            "ducksnap_runs_total",
            "counter",
            "Runs of each job by result.",
            runs,
        ),
        (
            "ducksnap_job_failing",
            "gauge",
            "1 while a job's newest run failed.",
            per_job(h, |r| Some(u8::from(r.failing()).to_string())),
        ),
    ]
}

/// The store's gauges.
fn store_families(h: &Health, s: &StoreFacts, now: DateTime<Utc>) -> Vec<Family> {
    let one = |v: String| vec![(String::new(), v)];
    let mut v: Vec<Family> = vec![
        (
            "ducksnap_snapshots",
            "gauge",
            "Snapshots in the store.",
            one(s.snapshots.to_string()),
        ),
        (
            "ducksnap_store_bytes",
            "gauge",
            "Bytes of chunk files on disk.",
            one(s.store_bytes.to_string()),
        ),
        (
            "ducksnap_unique_bytes",
            "gauge",
            "Bytes of distinct data the snapshots hold, uncompressed.",
            one(s.unique_bytes.to_string()),
        ),
        (
            "ducksnap_damaged_snapshots",
            "gauge",
            "Snapshots the last verify runs found damaged.",
            one(h.damaged.len().to_string()),
        ),
    ];
    if let Some(t) = s.newest {
        v.push((
            "ducksnap_newest_snapshot_timestamp_seconds",
            "gauge",
            "When the newest snapshot was taken (Unix time).",
            one(secs(t)),
        ));
        v.push((
            "ducksnap_newest_snapshot_age_seconds",
            "gauge",
            "Age of the newest snapshot when this file was written.",
            one((now - t).num_seconds().max(0).to_string()),
        ));
    }
    if let Some(a) = &s.archive {
        if let Some(t) = a.last_commit {
            v.push((
                "ducksnap_archive_last_commit_timestamp_seconds",
                "gauge",
                "When the newest archived commit was seen (Unix time).",
                one(secs(t)),
            ));
        }
        let behind = a.behind.clone().unwrap_or_default();
        v.push((
            "ducksnap_archive_behind_bytes",
            "gauge",
            "Bytes of the live WAL not archived when this file was written.",
            one(behind.bytes.to_string()),
        ));
        if let Some(n) = behind.commits {
            v.push((
                "ducksnap_archive_behind_commits",
                "gauge",
                "Complete commits in the live WAL not archived when this file was written.",
                one(n.to_string()),
            ));
        }
        v.push((
            "ducksnap_archive_unprotected_windows",
            "gauge",
            "Stretches of commits no restore point reproduces (ducksnap list --commits).",
            one(a.unprotected_windows.to_string()),
        ));
        v.push((
            "ducksnap_archive_damaged_records",
            "gauge",
            "WAL archive records that cannot be read.",
            one(a.damaged_records.to_string()),
        ));
    }
    if let Some(lag) = s.offsite_lag {
        v.push((
            "ducksnap_offsite_lag_seconds",
            "gauge",
            "How long the oldest snapshot not offsite yet has waited (0: none).",
            one(lag.max(0).to_string()),
        ));
    }
    v
}

/// The file's text.
pub fn render(h: &Health, s: &StoreFacts, now: DateTime<Utc>) -> String {
    let mut o = String::new();
    for (name, kind, help, samples) in job_families(h).into_iter().chain(store_families(h, s, now))
    {
        family(&mut o, name, kind, help, &samples);
    }
    o
}

/// Replaces `path` with `text` atomically: a private temporary file in the
/// same directory, fsynced, renamed over it (node_exporter never reads a
/// half-written file).
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("metrics");
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.ducksnap-{}-{n}", std::process::id()));
    let result = (|| {
        // Created where nothing is (a planted FIFO or link is never
        // opened): a leftover of an earlier process with this pid first.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
