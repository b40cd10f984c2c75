//! `status --check`: the health of the backups as one verdict, the way a
//! Nagios plugin reports it. Pure: [`evaluate`] takes the facts gathered
//! elsewhere and the time, and returns every check with its level, the
//! worst level, one line with perfdata, and the plugin exit code.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::{Damage, Job, JobRecord, Lost};
use crate::when::span;

/// Plugin levels, in increasing badness; the exit code is the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Level {
    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        })
    }
}

/// Failures of the same job in a row before a failing job is CRITICAL.
pub const CRITICAL_AFTER: u64 = 3;

/// What [`evaluate`] looks at.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Cloud mode: why backups are disabled.
    pub disabled: Option<String>,
    pub database_present: bool,
    /// The store could not be read (or has no snapshot yet): why.
    pub store_error: Option<String>,
    pub snapshots: usize,
    pub store_bytes: u64,
    /// When the newest snapshot not known to be damaged and not dated in
    /// the future was taken.
    pub newest_good: Option<DateTime<Utc>>,
    /// A snapshot dated in the future (more than a minute): when.
    pub future: Option<DateTime<Utc>>,
    /// When a snapshot job last found the database unchanged since a good
    /// snapshot (and so stored none): protected as of then.
    pub confirmed: Option<DateTime<Utc>>,
    pub warn_age: Duration,
    pub crit_age: Duration,
    pub jobs: Vec<(Job, JobRecord)>,
    pub damaged: Vec<Damage>,
    /// The health record was found unreadable, and these snapshots have
    /// not been verified since.
    pub health_lost: Option<Lost>,
    /// (available, required) bytes on the store's file system.
    pub free_space: Option<(u64, u64)>,
    /// `Some(false)`: a daemon is expected and none answers.
    pub daemon_running: Option<bool>,
    /// The daemon's own last error, when it runs and has one.
    pub daemon_error: Option<String>,
    /// Seconds the oldest snapshot not offsite yet has waited.
    pub offsite_lag: Option<i64>,
    /// Snapshots pushed from here, still local, that the bucket did not
    /// hold whole at the last check (a record or pack gone).
    pub offsite_lost: Vec<String>,
    /// The bucket could not be asked by this check: why.
    pub offsite_unchecked: Option<String>,
    /// Continuous archiving, when on.
    pub archive: Option<ArchiveFacts>,
}

/// What `status --check` looks at in the WAL archive.
#[derive(Debug, Clone, Default)]
pub struct ArchiveFacts {
    /// `[continuous] max_lag`.
    pub max_lag: Duration,
    /// When the newest archived commit was seen.
    pub last_commit: Option<DateTime<Utc>>,
    /// Bytes of the live WAL not archived (an open transaction's, or not
    /// read yet).
    pub behind_bytes: Option<u64>,
    /// Complete commits among them.
    pub behind_commits: Option<u64>,
    /// Those commits have waited at least since then.
    pub behind_since: Option<DateTime<Utc>>,
    /// Who should be archiving, and how it is doing.
    pub archiver: Archiver,
    /// Why the live WAL is not archived at all (encrypted, …).
    pub refused: Option<String>,
    /// When the newest unprotected window ended.
    pub last_unprotected: Option<DateTime<Utc>>,
    /// Archive records that cannot be read.
    pub damaged_records: usize,
}

/// The daemon's archiver, as far as this check can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Archiver {
    /// No daemon was asked.
    #[default]
    Unknown,
    /// No daemon answers: nothing archives the WAL.
    NoDaemon,
    /// The daemon answers and does not follow the WAL: why.
    Stopped(String),
    /// The daemon's archiver has failed since then: its error.
    Failing(DateTime<Utc>, String),
    /// The daemon follows the WAL.
    Running,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub level: Level,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub level: Level,
    /// The Nagios line: `DUCKSNAP LEVEL - reasons | perfdata`.
    pub line: String,
    pub checks: Vec<Check>,
}

fn check(name: &str, level: Level, message: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        level,
        message: message.into(),
    }
}

/// The verdict on `f` at `now`.
pub fn evaluate(f: &Facts, now: DateTime<Utc>) -> Verdict {
    if let Some(why) = &f.disabled {
        let c = check("mode", Level::Ok, format!("backups disabled: {why}"));
        return verdict(vec![c], String::new());
    }
    let mut checks = vec![age_check(f, now)];
    checks.extend(future_check(f, now));
    if !f.database_present {
        checks.push(check(
            "database",
            Level::Warning,
            "the database file is missing",
        ));
    }
    if let Some(e) = &f.store_error {
        checks.push(check("store", Level::Critical, format!("store: {e}")));
    }
    checks.extend(f.jobs.iter().filter_map(|(job, r)| job_check(*job, r)));
    if let Some(l) = &f.health_lost {
        checks.push(check(
            "health",
            Level::Critical,
            format!(
                "the health record was unreadable at {} ({}): what it said about damage is unknown until {} snapshot(s) are verified (ducksnap verify --all)",
                l.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                l.why,
                l.unverified.len()
            ),
        ));
    }
    for d in &f.damaged {
        checks.push(check(
            "verify",
            Level::Critical,
            format!("snapshot {} is damaged: {}", d.id, d.message),
        ));
    }
    if let Some((avail, need)) = f.free_space
        && avail < need
    {
        checks.push(check("free_space", Level::Critical, format!("{avail} bytes free in the store's file system, store.min_free_space is {need}: snapshots are refused")));
    }
    match (f.daemon_running, &f.daemon_error) {
        (Some(false), _) => checks.push(check(
            "daemon",
            Level::Warning,
            "the daemon is not running: nothing is scheduled",
        )),
        (_, Some(e)) => checks.push(check("daemon", Level::Warning, format!("daemon: {e}"))),
        _ => {}
    }
    if let Some(lag) = f.offsite_lag
        && lag > f.crit_age.as_secs() as i64
    {
        checks.push(check(
            "offsite",
            Level::Warning,
            format!("offsite {} behind", span(chrono::TimeDelta::seconds(lag))),
        ));
    }
    if let Some(why) = &f.offsite_unchecked {
        checks.push(check(
            "offsite",
            Level::Warning,
            format!("offsite could not be checked now ({why}); the last check's findings stand"),
        ));
    }
    if !f.offsite_lost.is_empty() {
        checks.push(check(
            "offsite",
            Level::Critical,
            format!(
                "snapshot(s) {} were pushed from here and are no longer restorable offsite (a record or pack is gone from the bucket); the next push sends them again",
                f.offsite_lost.join(", ")
            ),
        ));
    }
    if let Some(a) = &f.archive {
        if a.damaged_records > 0 {
            checks.push(check(
                "archive",
                Level::Critical,
                format!(
                    "{} WAL archive record(s) missing, altered or unreadable: the commits they hold cannot be restored (ducksnap verify)",
                    a.damaged_records
                ),
            ));
        }
        if let Some(t) = a.last_unprotected
            && now - t < chrono::TimeDelta::from_std(f.warn_age).unwrap_or(chrono::TimeDelta::MAX)
        {
            checks.push(check(
                "archive",
                Level::Warning,
                format!(
                    "an unprotected window ended {} ago: commits made in it are only in the state after it (ducksnap list --commits)",
                    span(now - t)
                ),
            ));
        }
    }
    if let Some(a) = &f.archive {
        checks.extend(archive_lag_check(a, now));
    }
    let perf = perfdata(f, now);
    verdict(checks, perf)
}

/// Whether archiving keeps up with the app: stopped (the daemon's archiver
/// failing or not running, or no daemon while commits wait) for longer
/// than `max_lag` is CRITICAL, shorter a WARNING; otherwise commits in the
/// live WAL that have waited longer than `max_lag` are a WARNING, longer
/// than twice it CRITICAL.
fn archive_lag_check(a: &ArchiveFacts, now: DateTime<Utc>) -> Option<Check> {
    if let Some(why) = &a.refused {
        return Some(check(
            "archive",
            Level::Warning,
            format!(
                "continuous archiving is on and the database's WAL cannot be archived ({why}): snapshots alone protect it (turn [continuous] off to silence this)"
            ),
        ));
    }
    let lag = chrono::TimeDelta::from_std(a.max_lag).unwrap_or(chrono::TimeDelta::MAX);
    let waiting = a.behind_commits.unwrap_or(0);
    let past = |since: DateTime<Utc>| {
        if now - since > lag {
            Level::Critical
        } else {
            Level::Warning
        }
    };
    match &a.archiver {
        Archiver::Failing(since, e) => {
            return Some(check(
                "archive",
                past(*since),
                format!(
                    "WAL archiving has failed for {} ({e}): commits since are not archived until it works again (it is retried every few seconds)",
                    span(now - *since)
                ),
            ));
        }
        Archiver::Stopped(why) => {
            return Some(check(
                "archive",
                Level::Critical,
                format!(
                    "continuous archiving is on and the daemon does not archive the WAL: {why}"
                ),
            ));
        }
        Archiver::NoDaemon if waiting > 0 => {
            // Archiving stopped after the last commit it archived.
            let since = a.last_commit.or(a.behind_since).unwrap_or(now);
            return Some(check(
                "archive",
                past(since),
                format!(
                    "no daemon archives the WAL: {waiting} commit(s) in it are not archived (the last archived commit is {} old)",
                    a.last_commit.map_or("none".into(), |t| span(now - t))
                ),
            ));
        }
        Archiver::NoDaemon | Archiver::Unknown | Archiver::Running => {}
    }
    let since = a.behind_since.filter(|_| waiting > 0)?;
    let waited = now - since;
    let level = if waited > lag * 2 {
        Level::Critical
    } else if waited > lag {
        Level::Warning
    } else {
        return None;
    };
    Some(check(
        "archive",
        level,
        format!(
            "{waiting} commit(s) in the live WAL have waited at least {} to be archived (continuous.max_lag is {})",
            span(waited),
            span(lag)
        ),
    ))
}

/// How long the database has gone without protection: since the newest
/// good snapshot, or since a snapshot job last confirmed it unchanged since
/// one. A snapshot dated in the future counts for nothing here (it gets a
/// warning of its own).
fn age_check(f: &Facts, now: DateTime<Utc>) -> Check {
    let skew = chrono::TimeDelta::seconds(60);
    let Some(t) = f.newest_good.filter(|t| *t <= now + skew) else {
        return check("age", Level::Critical, "no good snapshot at all");
    };
    let confirmed = f.confirmed.filter(|c| *c > t && *c <= now + skew);
    let age = now - confirmed.unwrap_or(t);
    let secs = age.num_seconds().max(0) as u64;
    let level = if secs >= f.crit_age.as_secs() {
        Level::Critical
    } else if secs >= f.warn_age.as_secs() {
        Level::Warning
    } else {
        Level::Ok
    };
    let old = span(chrono::TimeDelta::seconds(secs as i64));
    let message = match confirmed {
        Some(_) => format!(
            "database unchanged since the newest snapshot ({} old), confirmed {old} ago",
            span(now - t)
        ),
        None => format!("newest snapshot {old} old"),
    };
    check("age", level, message)
}

/// A snapshot dated more than a minute ahead: the clock moved, or it did.
fn future_check(f: &Facts, now: DateTime<Utc>) -> Option<Check> {
    let t = f
        .future
        .or(f.newest_good)
        .filter(|t| *t > now + chrono::TimeDelta::seconds(60))?;
    Some(check(
        "future",
        Level::Warning,
        format!(
            "a snapshot is dated {} in the future (clock skew?)",
            span(t - now)
        ),
    ))
}

fn job_check(job: Job, r: &JobRecord) -> Option<Check> {
    let fail = r.last_failure.as_ref().filter(|_| r.failing())?;
    let level = match job {
        // A verify that fails found damage (or could not read the store).
        Job::Verify => Level::Critical,
        // A stale metrics file hides nothing from this check.
        Job::Metrics => Level::Warning,
        Job::Snapshot
        | Job::Prune
        | Job::Offsite
        | Job::Restore
        | Job::Pin
        | Job::Unpin
        | Job::Retention
        | Job::Reload => {
            if r.failing_since_success >= CRITICAL_AFTER {
                Level::Critical
            } else {
                Level::Warning
            }
        }
    };
    Some(check(
        job.name(),
        level,
        format!(
            "last {} failed ({} in a row): {}",
            job.name(),
            r.failing_since_success,
            fail.message
        ),
    ))
}

fn perfdata(f: &Facts, now: DateTime<Utc>) -> String {
    let mut p = Vec::new();
    if let Some(t) = f.newest_good {
        p.push(format!(
            "age={}s;{};{}",
            (now - t).num_seconds().max(0),
            f.warn_age.as_secs(),
            f.crit_age.as_secs()
        ));
    }
    p.push(format!("snapshots={}", f.snapshots));
    p.push(format!("store_bytes={}B", f.store_bytes));
    if let Some((avail, need)) = f.free_space {
        p.push(format!("free_bytes={avail}B;;{need}"));
    }
    if let Some(lag) = f.offsite_lag {
        p.push(format!("offsite_lag={lag}s"));
    }
    if let Some(b) = f.archive.as_ref().and_then(|a| a.behind_bytes) {
        p.push(format!("archive_behind={b}B"));
    }
    if let Some(n) = f.archive.as_ref().and_then(|a| a.behind_commits) {
        p.push(format!("archive_behind_commits={n}"));
    }
    p.join(" ")
}

/// The verdict when nothing could be checked (the config unreadable, say):
/// UNKNOWN, as a plugin runner expects, with the reason.
pub fn unknown(why: &str) -> Verdict {
    // One line, as a plugin's status line must be (TOML errors span several).
    let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
    let c = check("ducksnap", Level::Unknown, format!("cannot check: {why}"));
    verdict(vec![c], String::new())
}

fn verdict(checks: Vec<Check>, perf: String) -> Verdict {
    let level = checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
    // Every problem, the worst first; all is well: what was checked.
    let mut problems: Vec<&Check> = checks.iter().filter(|c| c.level != Level::Ok).collect();
    problems.sort_by_key(|c| std::cmp::Reverse(c.level));
    let mut bad: Vec<&str> = problems.iter().map(|c| c.message.as_str()).collect();
    if bad.is_empty() {
        bad = checks.iter().map(|c| c.message.as_str()).collect();
    }
    let mut line = format!("DUCKSNAP {level} - {}", bad.join("; ").replace('|', "/"));
    if !perf.is_empty() {
        line.push_str(" | ");
        line.push_str(&perf);
    }
    Verdict {
        level,
        line,
        checks,
    }
}

/// Default thresholds from the schedule's interval: about 1.5× and 3× it
/// (`interval` `None`: no schedule, a day and a half and three days).
pub fn default_ages(interval: Option<Duration>) -> (Duration, Duration) {
    match interval {
        Some(i) => (i.mul_f64(1.5), i * 3),
        None => (
            Duration::from_secs(36 * 3600),
            Duration::from_secs(72 * 3600),
        ),
    }
}
