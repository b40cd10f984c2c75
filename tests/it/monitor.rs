//! Monitoring: the pure verdict of `status --check`, and the real daemon's
//! health as cron, systemd and Prometheus see it when its work fails.

use std::time::Duration;

use chrono::{TimeDelta, Utc};

use ducksnap::monitor::check::{Facts, Level, default_ages, evaluate};
use ducksnap::monitor::state::{Damage, Failure, Job, JobRecord, Lost};

use crate::helpers::daemon::{Daemon, cli_with, set_config};
use crate::helpers::*;

/// Facts with the newest snapshot `age` seconds before `NOW`.
fn facts(age: Option<i64>) -> Facts {
    let (warn_age, crit_age) = default_ages(Some(Duration::from_secs(3600)));
    Facts {
        database_present: true,
        snapshots: 3,
        store_bytes: 1000,
        newest_good: age.map(|s| now() - TimeDelta::seconds(s)),
        warn_age,
        crit_age,
        ..Facts::default()
    }
}

fn now() -> chrono::DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(2026, 11, 29, 14, 0, 0).unwrap()
}

fn failing(n: u64) -> JobRecord {
    JobRecord {
        last_failure: Some(Failure {
            at: Utc::now(),
            message: "the database /x does not exist".into(),
        }),
        failing_since_success: n,
        failed_runs: n,
        ..JobRecord::default()
    }
}

/// The table: ages against the thresholds, nothing at all, cloud mode, a
/// snapshot from the future, failing jobs, damage, free space.
#[test]
fn the_verdict_table() {
    let now = now();
    let level = |f: &Facts| evaluate(f, now).level;
    // Hourly schedule: warn at 1.5 h, critical at 3 h.
    assert_eq!(
        default_ages(Some(Duration::from_secs(3600))),
        (Duration::from_secs(5400), Duration::from_secs(10800))
    );
    assert_eq!(
        default_ages(None),
        (
            Duration::from_secs(36 * 3600),
            Duration::from_secs(72 * 3600)
        )
    );
    for (age, want) in [
        (60, Level::Ok),
        (5399, Level::Ok),
        (5400, Level::Warning),
        (10799, Level::Warning),
        (10800, Level::Critical),
        (86400 * 3, Level::Critical),
    ] {
        assert_eq!(level(&facts(Some(age))), want, "age {age}");
    }
    let none = evaluate(&facts(None), now);
    assert_eq!(none.level, Level::Critical);
    assert!(none.line.contains("no good snapshot"), "{}", none.line);
    let cloud = Facts {
        disabled: Some("STREAMLIT_SHARING_MODE is set".into()),
        ..facts(None)
    };
    let v = evaluate(&cloud, now);
    assert_eq!(
        (v.level, v.line.as_str()),
        (
            Level::Ok,
            "DUCKSNAP OK - backups disabled: STREAMLIT_SHARING_MODE is set"
        )
    );
    // A snapshot dated an hour ahead beside a recent real one: a warning.
    let future = evaluate(
        &Facts {
            future: Some(now + TimeDelta::seconds(3600)),
            ..facts(Some(60))
        },
        now,
    );
    assert_eq!(future.level, Level::Warning);
    assert!(future.line.contains("in the future"), "{}", future.line);
    // Failing jobs: a warning, critical from the third failure in a row.
    for (n, want) in [
        (1, Level::Warning),
        (2, Level::Warning),
        (3, Level::Critical),
    ] {
        let f = Facts {
            jobs: vec![(Job::Snapshot, failing(n))],
            ..facts(Some(60))
        };
        let v = evaluate(&f, now);
        assert_eq!(v.level, want, "{n} failures: {}", v.line);
        assert!(v.line.contains("does not exist"), "{}", v.line);
    }
    // A failure followed by a success is history, not a problem.
    let mut healed = failing(2);
    healed.failing_since_success = 0;
    assert_eq!(
        level(&Facts {
            jobs: vec![(Job::Snapshot, healed)],
            ..facts(Some(60))
        }),
        Level::Ok
    );
    let damaged = Facts {
        damaged: vec![Damage {
            id: "20261129T140000Z-abcd".into(),
            at: now,
            message: "corrupt chunk(s) ab12".into(),
        }],
        ..facts(Some(60))
    };
    let v = evaluate(&damaged, now);
    assert_eq!(v.level, Level::Critical);
    assert!(
        v.line.contains("20261129T140000Z-abcd") && v.line.contains("ab12"),
        "{}",
        v.line
    );
    let full = Facts {
        free_space: Some((10, 100)),
        ..facts(Some(60))
    };
    assert_eq!(level(&full), Level::Critical);
    let ok = evaluate(
        &Facts {
            free_space: Some((1000, 100)),
            ..facts(Some(60))
        },
        now,
    );
    assert_eq!(ok.level, Level::Ok);
    assert!(ok.line.starts_with("DUCKSNAP OK - newest snapshot 1m old | age=60s;5400;10800 snapshots=3 store_bytes=1000B free_bytes=1000B;;100"), "{}", ok.line);
    assert_eq!(Level::Unknown.exit_code(), 3);
}

/// When nothing can be checked (an unreadable config), `status --check`
/// says UNKNOWN with the reason and exits 3 — not 2, which a plugin runner
/// reads as CRITICAL; `--json` gives the same verdict as data.
#[test]
fn check_with_a_broken_config_is_unknown() {
    let ws = Workspace::new();
    std::fs::write(ws.config_path(), "[store]\nkeep = [").unwrap();
    let (code, line) = check(&ws);
    assert_eq!(code, 3, "{line}");
    assert!(
        line.starts_with("DUCKSNAP UNKNOWN - cannot check: "),
        "{line}"
    );
    assert!(line.contains("ducksnap.toml"), "names the config: {line}");
    let out = ws.run(&["status", "--check", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["level"], "UNKNOWN", "{v}");
    assert!(!v["line"].as_str().unwrap().contains('\n'), "one line: {v}");
    // Without --check the usual config error and exit code stay.
    let out = ws.run(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn check(ws: &Workspace) -> (i32, String) {
    let out = ws.run(&["status", "--check"]);
    (out.status.code().unwrap(), stdout(&out).trim().to_string())
}

fn metric(ws: &Workspace, line_start: &str) -> Option<String> {
    let text = std::fs::read_to_string(ws.path().join("metrics/ducksnap.prom")).ok()?;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
}

impl Daemon {
    /// Waits for a `STATUS=` notification that `ok` accepts.
    pub(crate) fn wait_status(&self, ok: impl Fn(&str) -> bool) -> String {
        loop {
            let n = self.notification_raw();
            if n.contains("STATUS=") && ok(&n) {
                return n;
            }
        }
    }
}

/// Scheduled snapshots start failing (the database removed, then the store
/// made unusable): OK → WARNING → CRITICAL with the reason, STATUS= names
/// the error, the metrics count the failures and keep the last success;
/// with the daemon stopped a fresh process still sees the last failure;
/// repaired, all three are back to OK.
#[test]
fn failing_snapshots_are_seen_by_check_systemd_and_metrics() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("metrics")).unwrap();
    // Ages far from the thresholds: the failures alone move the verdict.
    let extra = "[schedule]\ncron = \"*/2 * * * * *\"\n[watch]\nenabled = false\n\
                 [monitor]\nmetrics_file = \"metrics/ducksnap.prom\"\nwarn_age = \"1h\"\ncrit_age = \"2h\"\n";
    set_config(&ws, extra);
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS i");
    let mut d = Daemon::start(&ws, &[]);
    d.wait_event("snapshot.created", Duration::from_secs(30));
    // `snapshot.created` is logged when the manifest is committed, before
    // the job's outcome is recorded and the metrics file rewritten; the
    // worker sends STATUS= only after both.
    d.wait_status(|n| n.contains("last snapshot"));
    let (code, line) = check(&ws);
    assert_eq!(code, 0, "{line}");
    assert!(line.starts_with("DUCKSNAP OK - newest snapshot"), "{line}");
    let success = metric(
        &ws,
        "ducksnap_last_success_timestamp_seconds{job=\"snapshot\"}",
    )
    .unwrap();

    std::fs::remove_file(ws.db()).unwrap();
    d.wait_event("schedule.skipped", Duration::from_secs(10));
    let (code, line) = check(&ws);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("DUCKSNAP WARNING - ") && line.contains("does not exist"),
        "{line}"
    );
    let status = d.wait_status(|n| n.contains("last error"));
    assert!(status.contains("does not exist"), "{status}");
    for _ in 0..2 {
        d.wait_event("schedule.skipped", Duration::from_secs(10));
    }
    let (code, line) = check(&ws);
    assert_eq!(code, 2, "{line}");
    assert!(
        line.starts_with("DUCKSNAP CRITICAL - last snapshot failed (3 in a row)")
            || line.contains("in a row"),
        "{line}"
    );
    let failed: u64 = metric(
        &ws,
        "ducksnap_runs_total{job=\"snapshot\",result=\"failed\"}",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(failed >= 3, "{failed}");
    assert_eq!(
        metric(
            &ws,
            "ducksnap_last_success_timestamp_seconds{job=\"snapshot\"}"
        )
        .unwrap(),
        success
    );

    // The daemon stops: a fresh process still knows, from the store.
    drop(d);
    let (code, line) = check(&ws);
    assert_eq!(code, 2, "{line}");
    assert!(
        line.contains("does not exist") && line.contains("daemon is not running"),
        "{line}"
    );

    // Running again, the database back, but the store made unusable under
    // it: critical, saying why, and STATUS= names it.
    let mut d = Daemon::start(&ws, &[]);
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 2 AS i");
    let marker = ws.store_dir().join("STORE");
    let good = std::fs::read(&marker).unwrap();
    std::fs::write(&marker, b"not a ducksnap store\n").unwrap();
    d.wait_event("schedule.failed", Duration::from_secs(10));
    let (code, line) = check(&ws);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("STORE marker"), "{line}");
    d.wait_status(|n| n.contains("STORE marker"));

    // Repaired: the next run brings all three back.
    std::fs::write(&marker, good).unwrap();
    d.wait_event("snapshot.created", Duration::from_secs(30));
    let status = d.wait_status(|n| !n.contains("last error"));
    assert!(status.contains("last snapshot"), "{status}");
    let (code, line) = check(&ws);
    assert_eq!(code, 0, "{line}");
    assert_ne!(
        metric(
            &ws,
            "ducksnap_last_success_timestamp_seconds{job=\"snapshot\"}"
        )
        .unwrap(),
        success
    );
    assert_eq!(
        metric(&ws, "ducksnap_job_failing{job=\"snapshot\"}").unwrap(),
        "0"
    );
}

/// A chunk rots on disk: the next restore drill finds it, `status --check`
/// is CRITICAL naming the snapshot, and in the journal the log line has
/// error priority (`<3>`, since stderr is `$JOURNAL_STREAM`).
#[test]
fn a_rotted_chunk_is_found_by_the_drill() {
    use std::io::BufRead;
    use std::os::unix::fs::MetadataExt;
    let ws = Workspace::new();
    set_config(
        &ws,
        "[schedule]\nenabled = false\nverify = \"* * * * * *\"\n[watch]\nenabled = false\n",
    );
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(100000)",
    );
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    let m = ws.manifest(&id);
    let chunk = ws.store().chunk_path(m.chunk_hashes().next().unwrap());
    let mut bytes = std::fs::read(&chunk).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&chunk, bytes).unwrap();

    let (rd, wr) = nix::unistd::pipe().unwrap();
    let st = std::fs::metadata(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&wr)
    ))
    .unwrap();
    let mut child = ws
        .cmd(&["daemon"])
        .env("JOURNAL_STREAM", format!("{}:{}", st.dev(), st.ino()))
        .stderr(std::process::Stdio::from(wr))
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(std::fs::File::from(rd)).lines();
    let found = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("verify.damaged"))
        .expect("a verify.damaged line");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    assert!(found.starts_with("<3>"), "{found}");
    assert!(found.contains(&id), "{found}");
    let (code, line) = check(&ws);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains(&id) && line.contains("damaged"), "{line}");
    // The same from the CLI's own verify, and an intact store is OK again.
    let out = cli_with(&ws, &[], &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(6));
}

/// The drill's rolling sample: the newest every time, and at daily runs
/// every older snapshot within a week, wrapping around.
#[test]
fn the_drill_covers_every_snapshot_within_seven_runs() {
    use ducksnap::ops::drill::pick;
    for n in [1usize, 2, 8, 15, 50] {
        let ids: Vec<String> = (0..n).map(|i| format!("{i:04}")).collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor: Option<String> = None;
        for _ in 0..7 {
            let p = pick(&ids, cursor.as_deref());
            assert_eq!(p[0], ids[n - 1], "the newest first");
            assert_eq!(p.len(), 1 + (n - 1).div_ceil(7));
            seen.extend(p.iter().cloned());
            cursor = p[1..].last().cloned().or(cursor);
        }
        assert_eq!(seen.len(), n, "{n} snapshots: {seen:?}");
    }
    assert!(pick(&[], None).is_empty());
}

/// A notify socket nobody reads after READY=1 (its queue holds 10
/// datagrams here): the STATUS= updates after every job are dropped, never
/// waited for — 30 snapshots are all answered.
#[test]
fn an_unread_notify_socket_never_stalls_the_daemon() {
    use std::io::{BufRead, BufReader, Write};
    let ws = Workspace::new();
    set_config(
        &ws,
        "[schedule]\nenabled = false\n[watch]\nenabled = false\n",
    );
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS i");
    let path = ws.path().join("notify-unread");
    let dgram = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let mut child = ws
        .cmd(&["daemon"])
        .env("NOTIFY_SOCKET", &path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    dgram
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let n = dgram.recv(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"READY=1"));
    let socket = ws.path().join("run/ducksnap.sock");
    for i in 0..30 {
        let s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        writeln!(
            w,
            "{}",
            serde_json::json!({"op": "snapshot", "label": format!("n{i}")})
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert!(line.contains("\"ok\":true"), "request {i}: {line}");
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// What the age check measures is protection, not activity: a quiet,
/// unchanged database whose scheduled runs confirm it unchanged stays OK
/// through a day in fast-forward; without confirmations it goes WARNING
/// then CRITICAL. A snapshot dated in the future never hides an old real
/// one. A lost health record is CRITICAL; a stale metrics file a WARNING.
#[test]
fn the_age_is_the_age_of_protection() {
    let start = now();
    let (warn_age, crit_age) = default_ages(Some(Duration::from_secs(3600)));
    let base = Facts {
        database_present: true,
        snapshots: 1,
        newest_good: Some(start),
        warn_age,
        crit_age,
        ..Facts::default()
    };
    // Hourly runs for a day, each finding the database unchanged.
    for hour in 1..=24 {
        let t = start + TimeDelta::hours(hour);
        let f = Facts {
            confirmed: Some(t - TimeDelta::seconds(5)),
            ..base.clone()
        };
        let v = evaluate(&f, t + TimeDelta::minutes(59));
        assert_eq!(v.level, Level::Ok, "hour {hour}: {}", v.line);
        assert!(
            v.line.contains("unchanged since the newest snapshot"),
            "{}",
            v.line
        );
    }
    let unconfirmed = evaluate(&base, start + TimeDelta::hours(24));
    assert_eq!(unconfirmed.level, Level::Critical, "{}", unconfirmed.line);
    // A confirmation older than the snapshot counts for nothing.
    let stale = Facts {
        confirmed: Some(start - TimeDelta::hours(1)),
        ..base.clone()
    };
    assert_eq!(
        evaluate(&stale, start + TimeDelta::hours(2)).level,
        Level::Warning
    );
    // A snapshot a day ahead, the newest real one 3× crit_age old.
    let hidden = Facts {
        future: Some(start + TimeDelta::days(1)),
        newest_good: Some(start - TimeDelta::from_std(crit_age * 3).unwrap()),
        ..base.clone()
    };
    let v = evaluate(&hidden, start);
    assert_eq!(v.level, Level::Critical, "{}", v.line);
    assert!(v.line.contains("in the future"), "{}", v.line);
    // Only a future snapshot: nothing protects the database now.
    let only_future = Facts {
        future: Some(start + TimeDelta::days(1)),
        newest_good: None,
        ..base.clone()
    };
    assert_eq!(evaluate(&only_future, start).level, Level::Critical);
    let lost = Facts {
        health_lost: Some(Lost {
            at: start,
            why: "health.json: expected value at line 1 column 1".into(),
            unverified: vec!["20261129T140000Z-abcd".into()],
        }),
        ..base.clone()
    };
    let v = evaluate(&lost, start);
    assert_eq!(v.level, Level::Critical, "{}", v.line);
    assert!(
        v.line.contains("unreadable") && v.line.contains("verify --all"),
        "{}",
        v.line
    );
    for n in [1, 5] {
        let f = Facts {
            jobs: vec![(Job::Metrics, failing(n))],
            ..base.clone()
        };
        assert_eq!(evaluate(&f, start).level, Level::Warning, "{n} failures");
    }
}

/// A verify finds a damaged snapshot (CRITICAL); then garbage is written
/// over the health record: the check stays CRITICAL — the record is
/// unreadable, what it said is unknown — until a verify of every snapshot
/// has said again which are damaged; the damage itself clears only when a
/// verify of that snapshot passes.
#[test]
fn a_damaged_health_record_never_says_ok() {
    let ws = Workspace::new();
    set_config(
        &ws,
        "[schedule]\nenabled = false\n[watch]\nenabled = false\n",
    );
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(100000)",
    );
    let first = ws.snapshot()["id"].as_str().unwrap().to_string();
    let m = ws.manifest(&first);
    let chunk = ws.store().chunk_path(m.chunk_hashes().next().unwrap());
    let good = std::fs::read(&chunk).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    std::fs::write(&chunk, &bad).unwrap();
    let out = ws.run(&["verify", "--all", "--json"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let (code, line) = check(&ws);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains(&first), "{line}");
    let health = ws.store_dir().join("health.json");
    for garbage in [&b"\x00garbage{"[..], b"", b"{\"jobs\": 7}"] {
        std::fs::write(&health, garbage).unwrap();
        let (code, line) = check(&ws);
        assert_eq!(code, 2, "garbage {garbage:?}: {line}");
        assert!(line.contains("unreadable"), "{line}");
        // Another job writing the record keeps the loss on it.
        make_db(&ws.db(), "INSERT INTO t VALUES (1)");
        ws.snapshot();
        let (code, line) = check(&ws);
        assert_eq!(code, 2, "after a snapshot: {line}");
        assert!(line.contains("unreadable"), "{line}");
        assert!(ws.store_dir().join("health.json.unreadable").exists());
        // A verify of every snapshot rebuilds the facts: the damage again.
        let out = ws.run(&["verify", "--all", "--json"]);
        assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
        let (code, line) = check(&ws);
        assert_eq!(code, 2, "{line}");
        assert!(
            line.contains(&first) && !line.contains("unreadable"),
            "{line}"
        );
    }
    // A directory where the record should be: the same.
    std::fs::remove_file(&health).unwrap();
    std::fs::create_dir(&health).unwrap();
    let (code, line) = check(&ws);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("unreadable"), "{line}");
    // Repaired, and verified: OK.
    std::fs::write(&chunk, &good).unwrap();
    let out = ws.run(&["verify", "--all", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (code, line) = check(&ws);
    assert_eq!(code, 0, "{line}");
}

/// The metrics file cannot be written (its directory made read-only): the
/// check says WARNING naming the file, and so does the next job's
/// `STATUS=`-worthy record; writable again, OK.
#[test]
fn a_metrics_file_that_cannot_be_written_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new();
    let dir = ws.path().join("metrics");
    std::fs::create_dir_all(&dir).unwrap();
    set_config(
        &ws,
        "[schedule]\nenabled = false\n[watch]\nenabled = false\n[monitor]\nmetrics_file = \"metrics/ducksnap.prom\"\n",
    );
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS i");
    ws.snapshot();
    assert!(metric(&ws, "ducksnap_snapshots").is_some());
    // Root ignores directory modes: put a file where the directory was.
    std::fs::rename(&dir, ws.path().join("metrics.real")).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o444)).unwrap();
    make_db(&ws.db(), "INSERT INTO t VALUES (2)");
    ws.snapshot();
    let (code, line) = check(&ws);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.contains("metrics") && line.contains("ducksnap.prom"),
        "{line}"
    );
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(ws.path().join("metrics.real"), &dir).unwrap();
    make_db(&ws.db(), "INSERT INTO t VALUES (3)");
    ws.snapshot();
    let (code, line) = check(&ws);
    assert_eq!(code, 0, "{line}");
    assert_eq!(metric(&ws, "ducksnap_snapshots").unwrap(), "3");
}

/// A quiet database under a schedule: every run finds it unchanged and
/// stores nothing, and `status --check` stays OK long past `crit_age`
/// counted from the snapshot itself — the runs confirm the protection.
#[test]
fn a_quiet_database_stays_ok() {
    let ws = Workspace::new();
    set_config(
        &ws,
        "[schedule]\ncron = \"* * * * * *\"\n[watch]\nenabled = false\n[monitor]\nwarn_age = \"2s\"\ncrit_age = \"4s\"\n",
    );
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS i");
    let mut d = Daemon::start(&ws, &[]);
    d.wait_event("snapshot.created", Duration::from_secs(30));
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        d.wait_event("schedule.skipped", Duration::from_secs(10));
    }
    let (code, line) = check(&ws);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.contains("unchanged since the newest snapshot"),
        "{line}"
    );
    // The daemon stops: nobody confirms any more, and the age tells.
    drop(d);
    std::thread::sleep(Duration::from_secs(5));
    let (code, line) = check(&ws);
    assert_eq!(code, 2, "{line}");
}

/// `status` and `status --check` tell one story about the last error: a
/// run with a mistyped `--config` naming the same store (its database.path
/// misspelt) is not this store's work and leaves no error behind in either;
/// a real failure of this database's snapshot shows in both, with the same
/// message.
#[test]
fn status_and_check_agree_about_the_last_error() {
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS i");
    ws.snapshot();
    let (_, before) = check(&ws);
    let typo = ws.path().join("typo.toml");
    std::fs::write(
        &typo,
        std::fs::read_to_string(ws.config_path())
            .unwrap()
            .replace("data/app.duckdb", "data/appp.duckdb"),
    )
    .unwrap();
    let out = ws
        .bare_cmd()
        .arg("--config")
        .arg(&typo)
        .arg("snapshot")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let (_, line) = check(&ws);
    let verdict = |l: &str| l.split(" | ").next().unwrap_or_default().to_string();
    assert_eq!(
        verdict(&line),
        verdict(&before),
        "the typo's failure became the store's"
    );
    assert!(!line.contains("failed"), "{line}");
    let status = stdout(&ws.run(&["status"]));
    assert!(status.contains("last error:    none"), "{status}");
    // This database's own snapshot failing: both say so, in the same words.
    std::fs::rename(ws.db(), ws.path().join("away.duckdb")).unwrap();
    let out = ws.run(&["snapshot"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let (_, line) = check(&ws);
    assert!(line.contains("last snapshot failed"), "{line}");
    let status = stdout(&ws.run(&["status"]));
    let said = status
        .lines()
        .find(|l| l.starts_with("last error:"))
        .unwrap_or_default()
        .to_string();
    let message = said.split("snapshot: ").nth(1).unwrap_or("(none)");
    assert!(
        line.contains(message) && message.contains("does not exist"),
        "{line}\n{status}"
    );
    let json = ws.json(&["status", "--json"]);
    assert_eq!(json["recorded_error"]["what"], "snapshot", "{json}");
}

/// The names are the serde names, so a health record written before
/// the kinds were merged reads the same.
#[test]
fn job_names_are_the_wire_names() {
    use ducksnap::monitor::Job;
    for j in Job::ALL {
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            format!("\"{}\"", j.name())
        );
    }
    // Every kind is in ALL once: a new variant fails to compile here
    // until it has a place, and this fails until ALL holds it.
    let place = |j: Job| match j {
        Job::Snapshot => 0,
        Job::Restore => 1,
        Job::Prune => 2,
        Job::Pin => 3,
        Job::Unpin => 4,
        Job::Verify => 5,
        Job::Retention => 6,
        Job::Reload => 7,
        Job::Offsite => 8,
        Job::Metrics => 9,
    };
    for (i, j) in Job::ALL.iter().enumerate() {
        assert_eq!(place(*j), i, "{j}");
    }
    let recorded: Vec<&str> = Job::recorded_kinds().map(Job::name).collect();
    assert_eq!(
        recorded,
        ["snapshot", "prune", "verify", "offsite", "metrics"]
    );
}

/// The WAL archive in the verdict: an unreadable record is CRITICAL, an
/// unprotected window that ended within `warn_age` a WARNING, an older one
/// nothing; the bytes not archived are perfdata.
#[test]
fn the_archive_in_the_verdict() {
    use ducksnap::monitor::check::ArchiveFacts;
    let now = now();
    let with = |a: ArchiveFacts| Facts {
        archive: Some(a),
        ..facts(Some(60))
    };
    let ok = evaluate(
        &with(ArchiveFacts {
            behind_bytes: Some(0),
            ..ArchiveFacts::default()
        }),
        now,
    );
    assert_eq!(ok.level, Level::Ok, "{}", ok.line);
    assert!(ok.line.contains("archive_behind=0B"), "{}", ok.line);
    let damaged = evaluate(
        &with(ArchiveFacts {
            damaged_records: 2,
            ..ArchiveFacts::default()
        }),
        now,
    );
    assert_eq!(damaged.level, Level::Critical, "{}", damaged.line);
    assert!(
        damaged.line.contains("2 WAL archive record(s)"),
        "{}",
        damaged.line
    );
    let recent = evaluate(
        &with(ArchiveFacts {
            last_unprotected: Some(now - TimeDelta::minutes(5)),
            ..ArchiveFacts::default()
        }),
        now,
    );
    assert_eq!(recent.level, Level::Warning, "{}", recent.line);
    assert!(
        recent.line.contains("unprotected window"),
        "{}",
        recent.line
    );
    let old = evaluate(
        &with(ArchiveFacts {
            last_unprotected: Some(now - TimeDelta::hours(3)),
            ..ArchiveFacts::default()
        }),
        now,
    );
    assert_eq!(old.level, Level::Ok, "{}", old.line);
}

/// How long archiving may lag or stop before `status --check` says so: a
/// WARNING past `max_lag`, CRITICAL past twice it; a stopped archiver
/// CRITICAL once stopped longer than `max_lag` (never OK while commits
/// wait and nothing archives them).
#[test]
fn archiving_that_lags_or_stops_in_the_verdict() {
    use ducksnap::monitor::check::{ArchiveFacts, Archiver};
    let now = now();
    let lag = std::time::Duration::from_secs(60);
    let level = |a: ArchiveFacts| {
        let v = evaluate(
            &Facts {
                archive: Some(ArchiveFacts { max_lag: lag, ..a }),
                ..facts(Some(60))
            },
            now,
        );
        println!("{:?}: {}", v.level, v.line);
        (v.level, v.line)
    };
    let waiting = |secs: i64, archiver: Archiver| ArchiveFacts {
        behind_bytes: Some(4096),
        behind_commits: Some(3),
        behind_since: Some(now - TimeDelta::seconds(secs)),
        last_commit: Some(now - TimeDelta::seconds(secs + 1)),
        archiver,
        ..ArchiveFacts::default()
    };
    // Commits waiting: by how long they have waited at least.
    assert_eq!(level(waiting(5, Archiver::Running)).0, Level::Ok);
    let (l, line) = level(waiting(90, Archiver::Running));
    assert_eq!(l, Level::Warning);
    assert!(line.contains("3 commit(s) in the live WAL"), "{line}");
    assert_eq!(level(waiting(150, Archiver::Running)).0, Level::Critical);
    // Bytes of an open transaction are not commits: nothing waits.
    let open_txn = ArchiveFacts {
        behind_commits: Some(0),
        behind_since: None,
        ..waiting(600, Archiver::Running)
    };
    assert_eq!(level(open_txn).0, Level::Ok);
    // The daemon's archiver failing: WARNING at once, CRITICAL past max_lag.
    let failing = |secs| {
        Archiver::Failing(
            now - TimeDelta::seconds(secs),
            "No space left on device".into(),
        )
    };
    let (l, line) = level(waiting(0, failing(10)));
    assert_eq!(l, Level::Warning);
    assert!(line.contains("No space left on device"), "{line}");
    assert_eq!(level(waiting(0, failing(61))).0, Level::Critical);
    // Even with nothing waiting: a failing archiver archives nothing new.
    let idle = ArchiveFacts {
        archiver: failing(120),
        behind_bytes: Some(0),
        behind_commits: Some(0),
        ..ArchiveFacts::default()
    };
    assert_eq!(level(idle).0, Level::Critical);
    // Not following the WAL at all while the daemon runs.
    let (l, line) = level(waiting(0, Archiver::Stopped("no inotify".into())));
    assert_eq!(l, Level::Critical);
    assert!(line.contains("no inotify"), "{line}");
    // No daemon: commits waiting since the last archived one.
    let (l, line) = level(waiting(30, Archiver::NoDaemon));
    assert_eq!(l, Level::Warning, "{line}");
    assert!(line.contains("no daemon archives the WAL"), "{line}");
    let mut busy = waiting(2, Archiver::NoDaemon);
    busy.last_commit = Some(now - TimeDelta::minutes(10));
    assert_eq!(
        level(busy).0,
        Level::Critical,
        "an app that keeps writing does not hide a stopped archiver"
    );
    let nothing_waits = ArchiveFacts {
        behind_commits: Some(0),
        ..waiting(600, Archiver::NoDaemon)
    };
    assert_eq!(level(nothing_waits).0, Level::Ok);
}
