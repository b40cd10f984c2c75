//! The retention planner: table-driven cases and properties.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ducksnap::config::{ByteSize, HumanDuration, RetentionConfig};
use ducksnap::id::SnapshotId;
use ducksnap::retention::{Candidate, plan};
use proptest::prelude::*;

fn policy() -> RetentionConfig {
    RetentionConfig {
        keep_last: 0,
        keep_hourly: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
        keep_within: None,
        max_total_size: None,
        reasons: Default::default(),
        pre_restore_pin: HumanDuration(std::time::Duration::from_secs(30 * 86_400)),
    }
}

fn days(n: u64) -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(n * 86_400))
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

fn snap(at: DateTime<Utc>, n: u32) -> Candidate {
    Candidate {
        id: SnapshotId::generate(at),
        created_at: at,
        pinned: false,
        pinned_until: None,
        reason: "scheduled".into(),
        verified: true,
        chunks: vec![
            (format!("{n:064x}"), 100),
            ("shared".repeat(10) + "0000", 1000),
        ],
        offsite_pending: false,
        base_of_commits: false,
    }
}

/// Snapshots at the given offsets (hours before t0), newest first.
fn at_hours(hours: &[i64]) -> Vec<Candidate> {
    hours
        .iter()
        .enumerate()
        .map(|(i, h)| snap(t0() - Duration::hours(*h), i as u32))
        .collect()
}

fn kept_hours(cands: &[Candidate], p: &RetentionConfig) -> Vec<i64> {
    let pl = plan(cands, p, t0());
    pl.kept()
        .map(|d| (t0() - d.created_at).num_hours())
        .collect()
}

#[test]
fn table() {
    struct Case {
        name: &'static str,
        hours: Vec<i64>,
        policy: RetentionConfig,
        kept: Vec<i64>,
    }
    let p = policy;
    let cases = vec![
        Case {
            name: "keep_last 3",
            hours: vec![0, 1, 2, 3, 4],
            policy: RetentionConfig {
                keep_last: 3,
                ..p()
            },
            kept: vec![0, 1, 2],
        },
        Case {
            name: "keep_last 0 keeps the newest good",
            hours: vec![0, 1, 2],
            policy: p(),
            kept: vec![0],
        },
        Case {
            name: "keep_hourly counts hours that have snapshots",
            hours: vec![0, 0, 1, 5, 5, 30],
            policy: RetentionConfig {
                keep_hourly: 3,
                ..p()
            },
            kept: vec![0, 1, 5],
        },
        Case {
            name: "keep_daily across a two-week gap keeps history",
            hours: vec![1, 2, 24 * 15, 24 * 15 + 1, 24 * 16, 24 * 17],
            policy: RetentionConfig {
                keep_daily: 3,
                ..p()
            },
            kept: vec![1, 24 * 15, 24 * 16],
        },
        Case {
            name: "keep_weekly",
            hours: vec![0, 24, 24 * 7, 24 * 8, 24 * 14, 24 * 30],
            policy: RetentionConfig {
                keep_weekly: 2,
                ..p()
            },
            kept: vec![0, 24 * 7],
        },
        Case {
            name: "keep_monthly",
            hours: vec![0, 24 * 20, 24 * 40, 24 * 70, 24 * 100],
            policy: RetentionConfig {
                keep_monthly: 2,
                ..p()
            },
            kept: vec![0, 24 * 40],
        },
        Case {
            name: "keep_within",
            hours: vec![0, 10, 47, 49, 100],
            policy: RetentionConfig {
                keep_within: Some(HumanDuration(std::time::Duration::from_secs(48 * 3600))),
                ..p()
            },
            kept: vec![0, 10, 47],
        },
    ];
    for c in cases {
        assert_eq!(
            kept_hours(&at_hours(&c.hours), &c.policy),
            c.kept,
            "{}",
            c.name
        );
    }
}

#[test]
fn pinned_and_newest_good_survive() {
    let mut s = at_hours(&[0, 1, 2, 3]);
    s[0].verified = false; // newest is not good
    s[3].pinned = true;
    let kept = kept_hours(&s, &policy());
    assert_eq!(kept, vec![1, 3], "newest good (1h) and pinned (3h)");
    let pl = plan(&s, &policy(), t0());
    let reasons: Vec<String> = pl
        .decisions
        .iter()
        .flat_map(|d| d.reasons.clone())
        .collect();
    assert!(reasons.iter().any(|r| r == "pinned"));
    assert!(reasons.iter().any(|r| r == "newest good snapshot"));
    assert!(reasons.iter().any(|r| r == "no rule keeps it"));
}

#[test]
fn size_budget_drops_oldest_unprotected() {
    // Each snapshot: 100 own bytes + 1000 shared.
    let mut s = at_hours(&[0, 1, 2, 3, 4]);
    s[4].pinned = true;
    let p = RetentionConfig {
        keep_last: 5,
        max_total_size: Some(ByteSize(1300)),
        ..policy()
    };
    let pl = plan(&s, &p, t0());
    let kept: Vec<i64> = pl
        .kept()
        .map(|d| (t0() - d.created_at).num_hours())
        .collect();
    assert_eq!(
        kept,
        vec![0, 1, 4],
        "pinned 4h stays; oldest unpinned go first"
    );
    assert_eq!(pl.kept_bytes, 1300);
    assert!(
        pl.forgotten()
            .all(|d| d.reasons[0].starts_with("max_total_size"))
    );
    // A budget nothing fits: protected ones stay.
    let p = RetentionConfig {
        keep_last: 5,
        max_total_size: Some(ByteSize(1)),
        ..policy()
    };
    let kept: Vec<i64> = plan(&s, &p, t0())
        .kept()
        .map(|d| (t0() - d.created_at).num_hours())
        .collect();
    assert_eq!(kept, vec![0, 4]);
}

#[test]
fn pins_count_outside_keep_last_and_expire() {
    let mut s = at_hours(&[0, 1, 2, 3, 4, 5]);
    s[0].pinned = true; // by hand
    s[1].pinned = true;
    s[1].pinned_until = Some(t0() + Duration::days(3)); // pre-restore, still pinned
    s[2].pinned = true;
    s[2].pinned_until = Some(t0() - Duration::hours(1)); // expired
    let p = RetentionConfig {
        keep_last: 2,
        ..policy()
    };
    let pl = plan(&s, &p, t0());
    let kept: Vec<i64> = pl
        .kept()
        .map(|d| (t0() - d.created_at).num_hours())
        .collect();
    // Two pinned, and keep_last 2 of the unpinned (the expired pin counts as
    // unpinned): 2h and 3h.
    assert_eq!(kept, vec![0, 1, 2, 3]);
    let reasons = |h: i64| {
        pl.decisions
            .iter()
            .find(|d| (t0() - d.created_at).num_hours() == h)
            .unwrap()
            .reasons
            .join("; ")
    };
    assert!(reasons(0).contains("pinned"), "{}", reasons(0));
    assert!(reasons(1).starts_with("pinned until"), "{}", reasons(1));
    assert!(!reasons(2).contains("pinned"), "expired: {}", reasons(2));
    assert_eq!(reasons(4), "no rule keeps it");
}

#[test]
fn reason_rules_keep_pre_delete_snapshots_two_weeks() {
    // Hourly scheduled snapshots for three weeks and a pre-delete one every
    // other day: keep_last 10 alone would keep ten hours.
    let mut s: Vec<Candidate> = (0..24 * 21)
        .map(|h| snap(t0() - Duration::hours(h), h as u32))
        .collect();
    for d in (0..21).step_by(2) {
        let mut c = snap(
            t0() - Duration::days(d) - Duration::minutes(30),
            10_000 + d as u32,
        );
        c.reason = "pre-delete".into();
        s.push(c);
    }
    let p = RetentionConfig {
        keep_last: 10,
        reasons: ducksnap::config::default_reason_rules(),
        max_total_size: Some(ByteSize(1)),
        ..policy()
    };
    let pl = plan(&s, &p, t0());
    let pre: Vec<i64> = pl
        .kept()
        .filter(|d| s.iter().any(|c| c.id == d.id && c.reason == "pre-delete"))
        .map(|d| (t0() - d.created_at).num_days())
        .collect();
    assert_eq!(
        pre,
        vec![0, 2, 4, 6, 8, 10, 12],
        "every pre-delete snapshot younger than 14 days, despite the size budget"
    );
    let why = &pl
        .decisions
        .iter()
        .find(|d| {
            (t0() - d.created_at).num_days() == 12
                && s.iter().any(|c| c.id == d.id && c.reason == "pre-delete")
        })
        .unwrap()
        .reasons;
    assert!(
        why.iter().any(|r| r == "reason pre-delete: keep_within 2w"),
        "{why:?}"
    );
    // A reason rule of its own: keep_last over that reason only.
    let mut rules = std::collections::BTreeMap::new();
    rules.insert(
        "pre-delete".to_string(),
        ducksnap::config::ReasonRule {
            keep_last: 3,
            ..Default::default()
        },
    );
    let p = RetentionConfig {
        keep_last: 1,
        reasons: rules,
        ..policy()
    };
    let pre = plan(&s, &p, t0())
        .kept()
        .filter(|d| s.iter().any(|c| c.id == d.id && c.reason == "pre-delete"))
        .count();
    assert_eq!(pre, 3);
}

/// Three days in fast-forward, as the daemon lives them: a scheduled
/// snapshot every hour followed by retention, five pre-delete snapshots on
/// day 1, three restores (each with a pre-restore snapshot pinned for a
/// day) on day 2. After every prune: every pre-delete snapshot younger than
/// 14 days exists, the `keep_last` newest unpinned snapshots exist and no
/// pinned one takes their place; pins expire and are released.
#[test]
fn three_days_in_fast_forward() {
    let p = RetentionConfig {
        keep_last: 10,
        reasons: ducksnap::config::default_reason_rules(),
        pre_restore_pin: days(1),
        ..policy()
    };
    let mut store: Vec<Candidate> = Vec::new();
    let mut made = 0u32;
    let mut pre_delete = Vec::new();
    let mut pre_restore = Vec::new();
    let mut add = |store: &mut Vec<Candidate>, at: DateTime<Utc>, reason: &str| {
        made += 1;
        let mut c = snap(at, made);
        c.reason = reason.into();
        if reason == "pre-restore" {
            c.pinned = true;
            c.pinned_until = Some(at + Duration::days(1));
        }
        store.push(c.clone());
        c.id
    };
    for h in 0..72 {
        let now = t0() + Duration::hours(h);
        add(&mut store, now, "scheduled");
        if h < 24 && h % 5 == 2 {
            pre_delete.push(add(&mut store, now + Duration::minutes(10), "pre-delete"));
        }
        if [30, 34, 40].contains(&h) {
            pre_restore.push(add(&mut store, now + Duration::minutes(20), "pre-restore"));
        }
        // Retention after the snapshot, as `prune` does: expired pins released.
        let at = now + Duration::minutes(30);
        for c in store.iter_mut() {
            if c.pinned && c.pinned_until.is_some_and(|t| t <= at) {
                c.pinned = false;
                c.pinned_until = None;
            }
        }
        let pl = plan(&store, &p, at);
        let kept: Vec<SnapshotId> = pl.kept().map(|d| d.id.clone()).collect();
        store.retain(|c| kept.contains(&c.id));

        for id in &pre_delete {
            assert!(
                store.iter().any(|c| &c.id == id),
                "hour {h}: pre-delete {id} pruned"
            );
        }
        let mut unpinned: Vec<&Candidate> = store.iter().filter(|c| !c.pinned).collect();
        unpinned.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        let by_keep_last: Vec<&SnapshotId> = pl
            .decisions
            .iter()
            .filter(|d| d.reasons.iter().any(|r| r.starts_with("keep_last")))
            .map(|d| &d.id)
            .collect();
        let newest: Vec<&SnapshotId> = unpinned.iter().take(10).map(|c| &c.id).collect();
        assert_eq!(
            by_keep_last, newest,
            "hour {h}: keep_last counts unpinned snapshots only"
        );
    }
    // Day 3 ends: every pin (a day long) has expired and been released; the
    // pre-restore snapshots are ordinary ones now, kept only by a rule.
    assert!(store.iter().all(|c| !c.pinned), "expired pins released");
    let end = t0() + Duration::hours(71) + Duration::minutes(30);
    for id in &pre_restore {
        if let Some(c) = store.iter().find(|c| &c.id == id) {
            assert!(
                end - c.created_at < Duration::hours(11),
                "{id} kept after its pin expired"
            );
        }
    }
    assert_eq!(store.iter().filter(|c| c.reason == "pre-delete").count(), 5);
}

fn arb_policy() -> impl Strategy<Value = RetentionConfig> {
    (
        0u32..5,
        0u32..4,
        0u32..4,
        0u32..3,
        0u32..3,
        proptest::option::of(0u64..200),
        proptest::option::of(500u64..3000),
    )
        .prop_map(|(l, h, d, w, m, within, size)| RetentionConfig {
            keep_last: l,
            keep_hourly: h,
            keep_daily: d,
            keep_weekly: w,
            keep_monthly: m,
            keep_within: within.map(|x| HumanDuration(std::time::Duration::from_secs(x * 3600))),
            max_total_size: size.map(ByteSize),
            reasons: if l % 2 == 0 {
                ducksnap::config::default_reason_rules()
            } else {
                Default::default()
            },
            pre_restore_pin: days(30),
        })
}

fn arb_snaps() -> impl Strategy<Value = Vec<Candidate>> {
    proptest::collection::vec(
        (
            0i64..24 * 90,
            any::<bool>(),
            any::<bool>(),
            0u32..6,
            0usize..3,
            proptest::option::of(-30i64..30),
        ),
        0..25,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(
                |(i, (mins, pinned, verified, chunk, reason, until))| Candidate {
                    id: SnapshotId::generate(t0() - Duration::minutes(mins * 37)),
                    created_at: t0() - Duration::minutes(mins * 37),
                    pinned,
                    pinned_until: until.filter(|_| pinned).map(|d| t0() + Duration::days(d)),
                    reason: ["scheduled", "pre-delete", "pre-restore"][reason].into(),
                    verified,
                    chunks: vec![(format!("{i:064x}"), 100), (format!("{chunk:064x}"), 300)],
                    offsite_pending: false,
                    base_of_commits: false,
                },
            )
            .collect()
    })
}

proptest! {
    #[test]
    fn never_removes_pinned_or_newest(snaps in arb_snaps(), p in arb_policy()) {
        let pl = plan(&snaps, &p, t0());
        prop_assert_eq!(pl.decisions.len(), snaps.len());
        for d in pl.forgotten() {
            let s = snaps.iter().find(|s| s.id == d.id).unwrap();
            let pin_holds = s.pinned && s.pinned_until.is_none_or(|t| t > t0());
            prop_assert!(!pin_holds, "pinned snapshot removed");
            let young = (t0() - s.created_at) <= Duration::days(14);
            prop_assert!(
                !(young && s.reason == "pre-delete" && p.reasons.contains_key("pre-delete")),
                "a pre-delete snapshot younger than 14 days removed"
            );
        }
        let mut sorted: Vec<&Candidate> = snaps.iter().collect();
        sorted.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        let newest_good = sorted.iter().find(|s| s.verified).or(sorted.first());
        if let Some(n) = newest_good {
            prop_assert!(pl.kept().any(|d| d.id == n.id), "newest good snapshot removed");
        }
    }

    #[test]
    fn replanning_the_kept_set_removes_nothing(snaps in arb_snaps(), p in arb_policy()) {
        let pl = plan(&snaps, &p, t0());
        let kept: Vec<Candidate> = snaps.iter().filter(|s| pl.kept().any(|d| d.id == s.id)).cloned().collect();
        let again = plan(&kept, &p, t0());
        prop_assert_eq!(again.forgotten().count(), 0);
    }

    #[test]
    fn order_does_not_matter(snaps in arb_snaps(), p in arb_policy(), seed in any::<u64>()) {
        let mut shuffled = snaps.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(plan(&snaps, &p, t0()).decisions, plan(&shuffled, &p, t0()).decisions);
    }
}

mod schedule {
    use chrono::{TimeZone, Utc};
    use ducksnap::config::{CronExpr, ScheduleConfig};
    use ducksnap::daemon::schedule::next_after;

    fn cfg(expr: &str, tz: &str) -> ScheduleConfig {
        ScheduleConfig {
            enabled: true,
            cron: vec![CronExpr::parse_str(expr).unwrap()],
            timezone: tz.into(),
            verify: None,
        }
    }

    #[test]
    fn named_zone_follows_dst() {
        // 09:00 in Berlin is 08:00Z in winter and 07:00Z in summer: no offset
        // is frozen when the schedule is made.
        let c = cfg("0 9 * * *", "Europe/Berlin");
        let before = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        assert_eq!(
            next_after(&c, before),
            Some(Utc.with_ymd_and_hms(2026, 3, 29, 7, 0, 0).unwrap())
        );
        let winter = Utc.with_ymd_and_hms(2026, 3, 27, 12, 0, 0).unwrap();
        assert_eq!(
            next_after(&c, winter),
            Some(Utc.with_ymd_and_hms(2026, 3, 28, 8, 0, 0).unwrap())
        );
        let autumn = Utc.with_ymd_and_hms(2026, 10, 24, 12, 0, 0).unwrap();
        assert_eq!(
            next_after(&c, autumn),
            Some(Utc.with_ymd_and_hms(2026, 10, 25, 8, 0, 0).unwrap())
        );
    }

    #[test]
    fn utc_hourly_and_seconds() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 8, 45, 12).unwrap();
        assert_eq!(
            next_after(&cfg("@hourly", "UTC"), t),
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap())
        );
        assert_eq!(
            next_after(&cfg("*/5 * * * * *", "UTC"), t),
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 8, 45, 15).unwrap())
        );
        assert_eq!(
            next_after(&cfg("@daily", "UTC"), t),
            Some(Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap())
        );
        let mut off = cfg("@hourly", "UTC");
        off.enabled = false;
        assert_eq!(next_after(&off, t), None);
    }

    #[test]
    fn wake_ups_are_classified() {
        use ducksnap::daemon::schedule::{Due, due};
        let planned = Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap();
        let tol = chrono::Duration::seconds(5);
        assert_eq!(
            due(planned, planned - chrono::Duration::seconds(30), tol),
            Due::NotYet
        );
        assert_eq!(
            due(planned, planned + chrono::Duration::seconds(1), tol),
            Due::OnTime
        );
        // Resumed from a two-hour suspend: one run, logged as missed.
        assert_eq!(
            due(planned, planned + chrono::Duration::hours(2), tol),
            Due::Missed { late_seconds: 7200 }
        );
    }

    #[test]
    fn after_a_long_gap_the_next_slot_is_in_the_future() {
        // The loop asks for the slot after *now*: slots missed during a
        // suspend collapse into one run, not one per missed slot.
        let c = cfg("*/10 * * * *", "UTC");
        let resumed = Utc.with_ymd_and_hms(2026, 11, 26, 18, 3, 0).unwrap();
        assert_eq!(
            next_after(&c, resumed),
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 18, 10, 0).unwrap())
        );
    }
}

proptest! {
    /// Snapshots taken only to look (`diff … live`) take no one's place:
    /// with any number of them added, every other snapshot's decision is
    /// the same (without a size budget, which counts every byte).
    #[test]
    fn looking_changes_no_decision(
        snaps in arb_snaps(),
        p in arb_policy(),
        looks in proptest::collection::vec(0i64..24 * 90, 0..10),
    ) {
        let mut p = p;
        p.max_total_size = None;
        let before = plan(&snaps, &p, t0());
        let mut with = snaps.clone();
        for (i, mins) in looks.iter().enumerate() {
            let at = t0() - Duration::minutes(mins * 37 + 1);
            with.push(Candidate {
                reason: "diff".into(),
                ..snap(at, 1000 + i as u32)
            });
        }
        let after = plan(&with, &p, t0());
        for d in before.decisions.iter() {
            let a = after.decisions.iter().find(|x| x.id == d.id).unwrap();
            prop_assert_eq!(a.keep, d.keep, "{} changed: {:?} → {:?}", d.id, d.reasons, a.reasons);
        }
    }
}

/// Seven `diff … live` runs, each after a change, store seven `diff`
/// snapshots: `prune --dry-run` decides about the user's own snapshots as
/// before, and `restore --as-of now` is not pointed at a snapshot taken only
/// to look when the user's own holds the same content.
#[test]
fn diffs_use_up_no_retention() {
    use crate::helpers::*;
    let ws = Workspace::new();
    ws.write_config(
        "[retention]\nkeep_last = 2\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n",
    );
    make_db(&ws.db(), "CREATE TABLE t(i INT); INSERT INTO t VALUES (0)");
    let mut mine = Vec::new();
    for i in 1..=3 {
        let c = duckdb::Connection::open(ws.db()).unwrap();
        c.execute_batch(&format!("INSERT INTO t VALUES ({i})"))
            .unwrap();
        drop(c);
        mine.push(ws.snapshot()["id"].as_str().unwrap().to_string());
    }
    let decisions = |ws: &Workspace| -> Vec<(String, bool)> {
        let v = ws.json(&["prune", "--dry-run", "--json"]);
        let mut out: Vec<(String, bool)> = v["plan"]["decisions"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .filter(|d| mine.contains(&d["id"].as_str().unwrap().to_string()))
            .map(|d| {
                (
                    d["id"].as_str().unwrap().to_string(),
                    d["keep"].as_bool().unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let before = decisions(&ws);
    assert_eq!(before.iter().filter(|d| d.1).count(), 2, "{before:?}");
    for i in 10..17 {
        let c = duckdb::Connection::open(ws.db()).unwrap();
        c.execute_batch(&format!("INSERT INTO t VALUES ({i})"))
            .unwrap();
        drop(c);
        let d = ws.json(&["diff", &mine[2], "live", "--json"]);
        assert!(d["b"]["id"].is_string(), "{d}");
    }
    let listed = ws.json(&["list", "--reason", "diff", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(7), "{listed}");
    assert_eq!(decisions(&ws), before);
    // The first snapshot's state put back, then looked at: the `diff`
    // snapshot holds the same bytes as the user's own, and `--as-of now`
    // names the user's.
    let out = ws.run(&["restore", &mine[0], "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let d = ws.json(&["diff", &mine[2], "live", "--json"]);
    let looked = d["b"]["id"].as_str().unwrap().to_string();
    assert!(!mine.contains(&looked), "a diff snapshot was stored: {d}");
    assert!(
        ws.manifest(&looked).same_files(&ws.manifest(&mine[0])),
        "same bytes"
    );
    let shown = ws.json(&["show", "--as-of", "now", "--json"]);
    assert_eq!(shown["manifest"]["id"], mine[0].as_str(), "{shown}");
}
