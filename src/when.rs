//! Points in time as people write them on the command line (`list --since`,
//! and the time-travel options): parsed against a `now` passed in.
//!
//! Accepted, exactly:
//! - `now` (and `just now`, as `list` prints it);
//! - a length of time before now: a whole number and a unit, optionally
//!   followed by `ago` — `s`, `m`, `h`, `d`, `w` (`90m`, `2h ago`, `7d`) or
//!   the words `list` prints (`2 minutes ago`, `1 hour ago`, `3 days`);
//! - `today` and `yesterday` (midnight, local time), optionally with
//!   `HH:MM[:SS]` (`yesterday 14:00`);
//! - RFC 3339 (`2026-11-29T14:00:00Z`, `2026-11-29T15:00:00+01:00`, a space
//!   allowed for the `T`);
//! - a date, optionally with `HH:MM` or `HH:MM:SS`, optionally followed by a
//!   zone after a space: `UTC`, `local` or an IANA name
//!   (`2026-11-29 14:00 Europe/Berlin`). Without a zone it is this
//!   machine's local time — the time `list` shows. A local time that a
//!   clock change skips is refused; one it repeats means the earlier
//!   instant.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// What the error messages show as the accepted forms.
pub const FORMS: &str = "now, 90m, 2h ago, 2 minutes ago, 7d, yesterday, \
    today 09:00, 2026-11-29 14:00 (local time), 2026-11-29T14:00:00Z, \
    2026-11-29T15:00:00+01:00, 2026-11-29 14:00 UTC, 2026-11-29 Europe/Berlin";

/// Parses `s` as a point in time, relative ones counted back from `now`, a
/// time without a zone in this machine's local time.
pub fn parse(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    parse_in(s, now, &Local)
}

/// [`parse`] with `local` standing for this machine's zone (tests pass one).
pub fn parse_in<Z: TimeZone>(
    s: &str,
    now: DateTime<Utc>,
    local: &Z,
) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    let fail = |why: &str| format!("invalid time {s:?}: {why} (accepted: {FORMS})");
    if t.is_empty() {
        return Err(fail("empty"));
    }
    if t == "now" || t == "just now" {
        return Ok(now);
    }
    if let Some(d) = relative(t) {
        let d = d.map_err(|e| fail(&e))?;
        return now
            .checked_sub_signed(d)
            .ok_or_else(|| fail("too far back"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(&t.replacen(' ', "T", 1)) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Some(day) = named_day(t, now, local) {
        let naive = day.ok_or_else(|| fail("expected today or yesterday [HH:MM[:SS]]"))?;
        return in_zone(naive, "local", local).map_err(|e| fail(&e));
    }
    if let Some(naive) = naive(t) {
        return in_zone(naive, "local", local).map_err(|e| fail(&e));
    }
    let first = t.split(' ').next().unwrap_or(t);
    if time_of_day(first).is_some() {
        return Err(fail(&format!(
            "a time needs a date before it: today {t} or yesterday {t}"
        )));
    }
    let (date, zone) = t
        .rsplit_once(' ')
        .ok_or_else(|| fail("expected a date YYYY-MM-DD [HH:MM[:SS]] [zone]"))?;
    let naive =
        naive(date).ok_or_else(|| fail("expected a date YYYY-MM-DD [HH:MM[:SS]] [zone]"))?;
    in_zone(naive, zone, local).map_err(|e| fail(&e))
}

/// `today`, `yesterday`, `yesterday 14:00`: the local date and time; `None`
/// when `t` does not start with one of the words, `Some(None)` when what
/// follows is not a time.
fn named_day<Z: TimeZone>(t: &str, now: DateTime<Utc>, local: &Z) -> Option<Option<NaiveDateTime>> {
    let (word, rest) = t.split_once(' ').unwrap_or((t, ""));
    let today = now.with_timezone(local).date_naive();
    let date = match word {
        "today" => today,
        "yesterday" => today.pred_opt()?,
        _ => return None,
    };
    let rest = rest.trim();
    if rest.is_empty() {
        return Some(Some(date.and_time(NaiveTime::MIN)));
    }
    Some(time_of_day(rest).map(|time| date.and_time(time)))
}

/// A length of time exactly, largest units first: `0s`, `45s`, `12m 5s`,
/// `1d 2h`, `3h 0m 7s` → `3h 7s` (zero units left out).
pub fn span(d: chrono::TimeDelta) -> String {
    let mut n = d.num_seconds().unsigned_abs();
    if n == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    for (per, unit) in [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")] {
        if n >= per {
            parts.push(format!("{}{unit}", n / per));
            n %= per;
        }
    }
    parts.join(" ")
}

/// `90m`, `2h ago`, `2 minutes ago`: `None` when `t` is not of that shape.
fn relative(t: &str) -> Option<Result<chrono::TimeDelta, String>> {
    let t = t.strip_suffix("ago").unwrap_or(t).trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return None;
    }
    let secs: i64 = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        _ => return None,
    };
    Some(
        num.parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(secs))
            .and_then(chrono::TimeDelta::try_seconds)
            .ok_or_else(|| "too large".to_string()),
    )
}

fn time_of_day(t: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(t, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
        .ok()
}

fn naive(s: &str) -> Option<NaiveDateTime> {
    let (date, time) = match s.split_once(' ') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let time = match time {
        None => NaiveTime::MIN,
        Some(t) => time_of_day(t)?,
    };
    Some(date.and_time(time))
}

fn in_zone<Z: TimeZone>(
    naive: NaiveDateTime,
    zone: &str,
    local: &Z,
) -> Result<DateTime<Utc>, String> {
    let mapped = match zone {
        "UTC" | "Z" | "utc" => return Ok(Utc.from_utc_datetime(&naive)),
        "local" => local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
        name => {
            let tz: chrono_tz::Tz = name
                .parse()
                .map_err(|_| format!("unknown time zone {name:?}"))?;
            tz.from_local_datetime(&naive)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        }
    };
    let place = if zone == "local" { "local time" } else { zone };
    mapped.ok_or_else(|| format!("{naive} does not exist in {place} (a clock change skips it)"))
}
