//! The facts `status --check` judges ([`crate::monitor::check`]): the
//! status report (the daemon's when it answers), the health record in the
//! store, free space, and the age thresholds (`[monitor]`, else derived
//! from the schedule).

use std::time::Duration;

use chrono::Utc;

use crate::monitor::check::{Facts, default_ages};
use crate::monitor::{Health, Job};
use crate::ops::context::Ctx;
use crate::ops::status::StatusReport;
use crate::store::Store;

/// The interval between the schedule's next two runs (`None`: no schedule).
fn schedule_interval(ctx: &Ctx) -> Option<Duration> {
    let s = &ctx.config.schedule;
    if !s.enabled {
        return None;
    }
    let first = crate::config::next_after(s, Utc::now())?;
    let second = crate::config::next_after(s, first)?;
    (second - first).to_std().ok()
}

/// Warning and critical ages of the newest snapshot.
pub fn thresholds(ctx: &Ctx) -> (Duration, Duration) {
    let (w, c) = default_ages(schedule_interval(ctx));
    let m = &ctx.config.monitor;
    let warn = m.warn_age.as_ref().map_or(w, |d| d.0);
    let crit = m.crit_age.as_ref().map_or(c.max(warn * 2), |d| d.0);
    (warn, crit)
}

/// Who archives the WAL, from what `status` said and whether a daemon
/// answered it.
fn archiver_of(
    c: &crate::ops::point::ContinuousStatus,
    daemon_answered: bool,
) -> crate::monitor::check::Archiver {
    use crate::monitor::check::Archiver;
    match (&c.archiver, daemon_answered) {
        (_, false) => Archiver::NoDaemon,
        (None, true) => Archiver::Stopped("the daemon did not say how its archiver is".into()),
        (Some(a), true) => match (a.running, &a.error, a.failing_since) {
            (false, e, _) => Archiver::Stopped(e.clone().unwrap_or_default()),
            (true, Some(e), Some(since)) => Archiver::Failing(since, e.clone()),
            (true, Some(e), None) => Archiver::Failing(chrono::Utc::now(), e.clone()),
            (true, None, _) => Archiver::Running,
        },
    }
}

/// Gathers the facts. `report` is the status (or why it failed);
/// `daemon_answered` whether a daemon served it.
pub fn facts(ctx: &Ctx, report: Result<StatusReport, String>, daemon_answered: bool) -> Facts {
    let (warn_age, crit_age) = thresholds(ctx);
    let mut f = Facts {
        warn_age,
        crit_age,
        ..Facts::default()
    };
    let r = match report {
        Ok(r) => r,
        Err(e) => {
            f.store_error = Some(e);
            f.database_present = ctx.config.database.path.is_file();
            return f;
        }
    };
    if let Some(d) = r.disabled {
        f.disabled = Some(d);
        return f;
    }
    f.database_present = r.database_exists;
    f.snapshots = r.snapshots;
    f.store_bytes = r.store_bytes;
    f.offsite_lag = r.offsite.as_ref().map(|o| o.lag_seconds.unwrap_or(0));
    f.archive =
        r.continuous
            .as_ref()
            .filter(|c| c.enabled)
            .map(|c| crate::monitor::check::ArchiveFacts {
                max_lag: std::time::Duration::from_secs(c.max_lag_seconds),
                last_commit: c.last_commit,
                behind_bytes: c.behind_bytes,
                behind_commits: c.behind_commits,
                behind_since: c.behind_since,
                archiver: archiver_of(c, daemon_answered),
                refused: c.refused.clone(),
                last_unprotected: c.last_unprotected,
                damaged_records: c.damaged_records,
            });
    f.daemon_running = (!daemon_answered && ctx.config.schedule.enabled).then_some(false);
    f.daemon_error = r
        .daemon
        .as_ref()
        .and_then(|d| d.last_error.as_ref())
        // Job failures come from the health record; the rest (a failed
        // reload) only the daemon knows.
        .filter(|e| e.what.recorded_as().is_none())
        .map(|e| format!("{} failed at {}: {}", e.what, e.at.to_rfc3339(), e.message));
    if !crate::store::Store::exists_at(&ctx.config.store.dir) {
        f.store_error = Some(format!(
            "no store at {} (no snapshot yet?)",
            ctx.config.store.dir.display()
        ));
        return f;
    }
    match Store::open(
        &ctx.config.store.dir,
        false,
        ctx.config.store.compression_level,
    ) {
        Ok(store) => match crate::ops::context::check_owner(ctx, &store) {
            Ok(()) => from_store(ctx, &store, &mut f),
            Err(e) => f.store_error = Some(e.to_string()),
        },
        Err(e) => f.store_error = Some(e.to_string()),
    }
    f
}

/// The health record, the newest good snapshot and free space.
fn from_store(ctx: &Ctx, store: &Store, f: &mut Facts) {
    let catalog = match store.catalog() {
        Ok(c) => c,
        Err(e) => {
            f.store_error = Some(e.to_string());
            return;
        }
    };
    let h = Health::load(store);
    f.health_lost = h.lost.clone().and_then(|mut l| {
        l.unverified
            .retain(|id| catalog.iter().any(|s| s.id.as_str() == id));
        (!l.unverified.is_empty()).then_some(l)
    });
    f.damaged = h
        .damaged
        .iter()
        .filter(|d| catalog.iter().any(|s| s.id.as_str() == d.id))
        .cloned()
        .collect();
    let now = Utc::now();
    let ahead = |t: &chrono::DateTime<Utc>| *t > now + chrono::TimeDelta::seconds(60);
    let good: Vec<_> = catalog
        .iter()
        .filter(|s| !f.damaged.iter().any(|d| d.id == s.id.as_str()))
        .collect();
    f.newest_good = good
        .iter()
        .map(|s| s.created_at)
        .filter(|t| !ahead(t))
        .max();
    f.future = good.iter().map(|s| s.created_at).filter(ahead).max();
    f.confirmed = h
        .confirmed
        .as_ref()
        .filter(|c| good.iter().any(|s| s.id.as_str() == c.id))
        .map(|c| c.at);
    if ctx.config.offsite.is_some() {
        f.offsite_lost = crate::offsite::cache::Cache::saved(store)
            .map(|c| {
                c.lost
                    .into_iter()
                    .filter(|id| catalog.iter().any(|s| s.id.as_str() == id))
                    .collect()
            })
            .unwrap_or_default();
    }
    f.jobs = Job::recorded_kinds()
        .filter_map(|j| h.jobs.get(&j).map(|r| (j, r.clone())))
        .collect();
    if let Ok(st) = nix::sys::statvfs::statvfs(store.root()) {
        let avail = st.blocks_available() * st.fragment_size();
        f.free_space = Some((avail, ctx.config.store.min_free_space.0));
    }
}
