//! Points in time as people write them on the command line (`list --since`,
//! and the time-travel options): parsed against a `now` passed in.
//!
//! Accepted, exactly:
//! - `now`;
//! - a length of time before now: a whole number and a unit `s`, `m`,
//!   `h`, `d` or `w`, optionally followed by ` ago` (`90m`, `2h ago`, `7d`);
//! - RFC 3339 (`2026-11-29T14:00:00Z`, `2026-11-29T15:00:00+01:00`, a space
//!   allowed for the `T`);
//! - a date, optionally with `HH:MM` or `HH:MM:SS`, then a zone after a
//!   space: `UTC`, `local` (this machine's zone) or an IANA name
//!   (`2026-11-29 14:00 Europe/Berlin`, `2026-11-29 local`). A time without
//!   a zone is refused: it would mean different instants on different
//!   machines. A local time that a clock change skips is refused; one it
//!   repeats means the earlier instant.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// What the error messages show as the accepted forms.
pub const FORMS: &str = "now, 90m, 2h ago, 7d, 2026-11-29T14:00:00Z, \
    2026-11-29T15:00:00+01:00, or a date and time with a zone: \
    2026-11-29 14:00 UTC, 2026-11-29 14:00 local, 2026-11-29 Europe/Berlin";

/// Parses `s` as a point in time, relative ones counted back from `now`.
pub fn parse(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    let fail = |why: &str| format!("invalid time {s:?}: {why} (accepted: {FORMS})");
    if t.is_empty() {
        return Err(fail("empty"));
    }
    if t == "now" {
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
    let (local, zone) = t
        .rsplit_once(' ')
        .ok_or_else(|| fail("a date or time needs a zone: UTC, local or an IANA name"))?;
    let naive = naive(local).ok_or_else(|| fail("expected YYYY-MM-DD [HH:MM[:SS]]"))?;
    in_zone(naive, zone).map_err(|e| fail(&e))
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

/// `90m`, `2h ago`: `None` when `t` is not of that shape.
fn relative(t: &str) -> Option<Result<chrono::TimeDelta, String>> {
    let t = t.strip_suffix(" ago").unwrap_or(t).trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return None;
    }
    let secs: i64 = match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
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

fn naive(s: &str) -> Option<NaiveDateTime> {
    let (date, time) = match s.split_once(' ') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let time = match time {
        None => NaiveTime::MIN,
        Some(t) => NaiveTime::parse_from_str(t, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
            .ok()?,
    };
    Some(date.and_time(time))
}

fn in_zone(naive: NaiveDateTime, zone: &str) -> Result<DateTime<Utc>, String> {
    let mapped = match zone {
        "UTC" | "Z" | "utc" => return Ok(Utc.from_utc_datetime(&naive)),
        "local" => Local
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
    mapped.ok_or_else(|| format!("{naive} does not exist in {zone} (a clock change skips it)"))
}
