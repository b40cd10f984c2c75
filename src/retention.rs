//! Retention: which snapshots to keep and which to forget, and why.
//!
//! [`plan`] is a pure function of the snapshots, the policy and the current
//! time. Snapshots are ordered newest first (ties broken by id) before any
//! rule runs, so the result does not depend on input order. Rules:
//!
//! * `keep_last N`: the N newest snapshots that are not pinned (a pin is
//!   counted outside it).
//! * `keep_hourly/daily/weekly/monthly N`: the newest snapshot of each of the
//!   N most recent hours/days/ISO weeks/months (UTC) *that have snapshots* —
//!   a machine switched off for two weeks keeps its history.
//! * `keep_within D`: everything created after `now - D`.
//! * `reasons.<reason>`: the same rules once more over the snapshots of that
//!   reason only (the shipped default keeps `pre-delete` snapshots 14 days).
//! * pinned snapshots (a pin with an expiry time only until then) and the
//!   newest good (verified) snapshot — or the newest at all when none is
//!   verified — are always kept.
//! * `max_total_size B`: while the unique stored bytes of the kept set exceed
//!   B, the oldest kept snapshot that no protection covers is forgotten —
//!   snapshots taken only to look first; pins, the newest good snapshot and
//!   reason rules protect.
//!
//! Snapshots taken only to look ([`LOOK_ONLY`]: `diff … live` stores the
//! live state as a `diff` snapshot) take no one's place: the global
//! `keep_last` and `keep_hourly/daily/weekly/monthly` rules and the newest
//! good snapshot are decided over the other snapshots only, as if they did
//! not exist; they are kept by `keep_within`, by a `reasons.diff` rule, by a
//! pin, or while offsite lacks them.
//!
//! Planning the kept set again forgets nothing.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;

use crate::config::{ReasonRule, RetentionConfig};
use crate::id::SnapshotId;
use crate::store::{CheckStatus, Manifest};

/// What the planner needs to know about a snapshot.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: SnapshotId,
    pub created_at: DateTime<Utc>,
    pub pinned: bool,
    /// When the pin expires (`None`: a pin by hand, or no pin).
    pub pinned_until: Option<DateTime<Utc>>,
    /// Why it was taken (`scheduled`, `pre-delete`, …).
    pub reason: String,
    pub verified: bool,
    /// Chunks it references, by hash, with their stored size.
    pub chunks: Vec<(String, u64)>,
    /// Offsite is configured and this snapshot has not reached it yet: kept
    /// ("not offsite yet") unless the size budget needs its space.
    pub offsite_pending: bool,
    /// A commit restore point inside the recovery window is replayed onto
    /// it (`[continuous] window`): kept unless the size budget needs its
    /// space.
    pub base_of_commits: bool,
}

impl Candidate {
    /// The snapshot `m` describes, with its chunks (hash, stored size) and
    /// whether offsite still lacks it.
    pub fn of(m: &Manifest, chunks: Vec<(String, u64)>, offsite_pending: bool) -> Candidate {
        Candidate {
            id: m.id.clone(),
            created_at: m.created_at,
            pinned: m.pinned,
            pinned_until: m.pinned_until,
            reason: m.reason.clone(),
            verified: m.check.status == CheckStatus::Verified,
            chunks,
            offsite_pending,
            base_of_commits: false,
        }
    }
}

/// The reasons of snapshots taken only to look at the database, not to
/// keep it (see the module header).
pub const LOOK_ONLY: &[&str] = &["diff"];

/// Whether snapshots taken for `reason` are only for looking.
pub fn look_only(reason: &str) -> bool {
    LOOK_ONLY.contains(&reason)
}

/// The reason that keeps a snapshot offsite does not have yet.
pub const NOT_OFFSITE: &str = "not offsite yet";
/// Why a snapshot commit restore points need is kept.
pub const BASE_OF_COMMITS: &str = "base of commits in the recovery window";

/// Keep or forget one snapshot, with every reason that applied.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Decision {
    pub id: SnapshotId,
    pub created_at: DateTime<Utc>,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// The plan, newest first.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    /// Unique stored bytes referenced by the kept snapshots.
    pub kept_bytes: u64,
}

impl Plan {
    pub fn kept(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.keep)
    }
    pub fn forgotten(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep)
    }
}

/// The calendar rules of a retention policy: one snapshot kept per hour,
/// day, ISO week or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Calendar {
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

impl Calendar {
    const ALL: [Calendar; 4] = [
        Calendar::Hourly,
        Calendar::Daily,
        Calendar::Weekly,
        Calendar::Monthly,
    ];

    /// How many periods `rule` keeps of this kind.
    fn count(self, rule: &ReasonRule) -> u32 {
        match self {
            Calendar::Hourly => rule.keep_hourly,
            Calendar::Daily => rule.keep_daily,
            Calendar::Weekly => rule.keep_weekly,
            Calendar::Monthly => rule.keep_monthly,
        }
    }

    /// The word in the config key and in the reasons (`keep_daily`).
    fn name(self) -> &'static str {
        match self {
            Calendar::Hourly => "hourly",
            Calendar::Daily => "daily",
            Calendar::Weekly => "weekly",
            Calendar::Monthly => "monthly",
        }
    }

    /// The period `t` falls in (`2026-11-29T14`, `2026-11-29`,
    /// `2026-W48`, `2026-11`).
    fn bucket(self, t: DateTime<Utc>) -> String {
        match self {
            Calendar::Hourly => format!(
                "{:04}-{:02}-{:02}T{:02}",
                t.year(),
                t.month(),
                t.day(),
                t.hour()
            ),
            Calendar::Daily => format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
            Calendar::Weekly => {
                let w = t.iso_week();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Calendar::Monthly => format!("{:04}-{:02}", t.year(), t.month()),
        }
    }
}

fn unique_bytes<'a>(set: impl Iterator<Item = &'a Candidate>) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in set {
        for (h, size) in &c.chunks {
            if seen.insert(h.as_str()) {
                total += size;
            }
        }
    }
    total
}

/// Unique stored bytes of the snapshots marked `keep`.
fn kept_total(snaps: &[&Candidate], keep: &[bool]) -> u64 {
    unique_bytes(snaps.iter().zip(keep).filter(|(_, k)| **k).map(|(s, _)| *s))
}

/// The snapshots, pins and time one set of rules is applied with.
struct RuleCtx<'a> {
    snaps: &'a [&'a Candidate],
    pinned: &'a [bool],
    now: DateTime<Utc>,
}

impl RuleCtx<'_> {
    /// Adds the reasons `rule` gives to the snapshots of `subset` (indices,
    /// newest first), each reason prefixed with `label`.
    fn apply(&self, subset: &[usize], rule: &ReasonRule, label: &str, reasons: &mut [Vec<String>]) {
        let unpinned = subset.iter().filter(|&&i| !self.pinned[i]);
        for &i in unpinned.take(rule.keep_last as usize) {
            reasons[i].push(format!("{label}keep_last {}", rule.keep_last));
        }
        if let Some(d) = rule.keep_within {
            for &i in subset {
                let age = self.now.signed_duration_since(self.snaps[i].created_at);
                if age.to_std().map(|a| a <= d.0).unwrap_or(true) {
                    reasons[i].push(format!("{label}keep_within {d}"));
                }
            }
        }
        for kind in Calendar::ALL {
            let n = kind.count(rule);
            if n == 0 {
                continue;
            }
            let mut seen: BTreeMap<String, ()> = BTreeMap::new();
            for &i in subset {
                let b = kind.bucket(self.snaps[i].created_at);
                if seen.contains_key(&b) {
                    continue;
                }
                if seen.len() as u32 >= n {
                    break;
                }
                seen.insert(b.clone(), ());
                reasons[i].push(format!("{label}keep_{} {n} ({b})", kind.name()));
            }
        }
    }
}

/// Plans retention for `snapshots` under `policy` at time `now`.
pub fn plan(snapshots: &[Candidate], policy: &RetentionConfig, now: DateTime<Utc>) -> Plan {
    let mut snaps: Vec<&Candidate> = snapshots.iter().collect();
    snaps.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); snaps.len()];
    // Protected snapshots survive even the size budget.
    let pinned = pins(&snaps, now, &mut reasons);
    let mut protected = pinned.clone();
    let ctx = RuleCtx {
        snaps: &snaps,
        pinned: &pinned,
        now,
    };
    let all: Vec<usize> = (0..snaps.len()).collect();
    let (kept_for_looking, for_keeping): (Vec<usize>, Vec<usize>) =
        all.iter().partition(|&&i| look_only(&snaps[i].reason));
    ctx.apply(&for_keeping, &global_rule(policy), "", &mut reasons);
    let within = ReasonRule {
        keep_within: policy.keep_within,
        ..ReasonRule::default()
    };
    ctx.apply(&kept_for_looking, &within, "", &mut reasons);
    for (reason, rule) in &policy.reasons {
        let subset: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| snaps[i].reason == *reason)
            .collect();
        let before: Vec<usize> = reasons.iter().map(Vec::len).collect();
        ctx.apply(&subset, rule, &format!("reason {reason}: "), &mut reasons);
        for &i in &subset {
            protected[i] |= reasons[i].len() > before[i];
        }
    }
    if let Some(i) = newest_good(&snaps, &for_keeping, &mut reasons) {
        protected[i] = true;
    }
    for (i, s) in snaps.iter().enumerate() {
        if s.offsite_pending {
            reasons[i].push(NOT_OFFSITE.into());
        }
        if s.base_of_commits {
            reasons[i].push(BASE_OF_COMMITS.into());
        }
    }
    let mut keep: Vec<bool> = reasons.iter().map(|r| !r.is_empty()).collect();
    let forget_reason = apply_budget(&snaps, policy, &protected, &mut keep);
    decide(&snaps, reasons, keep, forget_reason)
}

/// Snapshots pinned by hand, or by a pin that has not expired at `now`.
fn pins(snaps: &[&Candidate], now: DateTime<Utc>, reasons: &mut [Vec<String>]) -> Vec<bool> {
    let mut pinned = vec![false; snaps.len()];
    for (i, s) in snaps.iter().enumerate() {
        match (s.pinned, s.pinned_until) {
            (true, None) => reasons[i].push("pinned".into()),
            (true, Some(t)) if t > now => {
                reasons[i].push(format!("pinned until {}", t.to_rfc3339()))
            }
            _ => continue,
        }
        pinned[i] = true;
    }
    pinned
}

fn global_rule(policy: &RetentionConfig) -> ReasonRule {
    ReasonRule {
        keep_last: policy.keep_last,
        keep_hourly: policy.keep_hourly,
        keep_daily: policy.keep_daily,
        keep_weekly: policy.keep_weekly,
        keep_monthly: policy.keep_monthly,
        keep_within: policy.keep_within,
    }
}

/// The newest verified snapshot (or the newest, when none is) among
/// `among` (indices, newest first) — else among all — is always kept;
/// returns its index.
fn newest_good(
    snaps: &[&Candidate],
    among: &[usize],
    reasons: &mut [Vec<String>],
) -> Option<usize> {
    let all: Vec<usize> = (0..snaps.len()).collect();
    let among = if among.is_empty() { &all } else { among };
    let i = among
        .iter()
        .copied()
        .find(|&i| snaps[i].verified)
        .or(among.first().copied())?;
    reasons[i].push(if snaps[i].verified {
        "newest good snapshot".into()
    } else {
        "newest snapshot (none is verified)".into()
    });
    Some(i)
}

/// Drops the oldest kept, unprotected snapshots while the kept set is over
/// `max_total_size`; returns why each dropped one goes.
fn apply_budget(
    snaps: &[&Candidate],
    policy: &RetentionConfig,
    protected: &[bool],
    keep: &mut [bool],
) -> Vec<Option<String>> {
    let mut forget_reason: Vec<Option<String>> = vec![None; snaps.len()];
    let Some(budget) = policy.max_total_size else {
        return forget_reason;
    };
    loop {
        let total = kept_total(snaps, keep);
        if total <= budget.0 {
            break;
        }
        let droppable = |i: &usize| keep[*i] && !protected[*i];
        let Some(i) = (0..snaps.len())
            .rev()
            .filter(droppable)
            .find(|&i| look_only(&snaps[i].reason))
            .or_else(|| (0..snaps.len()).rev().find(droppable))
        else {
            break;
        };
        keep[i] = false;
        forget_reason[i] = Some(format!(
            "max_total_size {}: kept snapshots hold {total} bytes",
            budget.0
        ));
    }
    forget_reason
}

/// The plan: every snapshot, newest first, with the rules that keep it or
/// the reason it goes.
fn decide(
    snaps: &[&Candidate],
    mut reasons: Vec<Vec<String>>,
    keep: Vec<bool>,
    mut forget_reason: Vec<Option<String>>,
) -> Plan {
    let kept_bytes = kept_total(snaps, &keep);
    let decisions = snaps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut r = std::mem::take(&mut reasons[i]);
            if !keep[i] {
                r = vec![
                    forget_reason[i]
                        .take()
                        .unwrap_or_else(|| "no rule keeps it".into()),
                ];
            }
            Decision {
                id: s.id.clone(),
                created_at: s.created_at,
                keep: keep[i],
                reasons: r,
            }
        })
        .collect();
    Plan {
        decisions,
        kept_bytes,
    }
}
