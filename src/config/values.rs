//! The values a config is written in, each checked while it is parsed so
//! that an error carries the file, line, column and key: durations, byte
//! sizes, cron expressions, the mode and the log format and levels.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// A length of time written as `500ms`, `30s`, `5m`, `2h`, `7d` or `2w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.trim().contains(|c: char| !c.is_ascii_digit()) {
            return Err(format!(
                "invalid duration {s:?}: missing unit (ms, s, m, h, d, w)"
            ));
        }
        let (n, unit) = number_and_unit(s, "duration", "30s")?;
        let ms_per: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {unit:?} (use ms, s, m, h, d or w)"
                ));
            }
        };
        let ms = n
            .checked_mul(ms_per)
            .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
        Ok(HumanDuration(Duration::from_millis(ms)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis() as u64;
        let units = [
            (604_800_000, "w"),
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (per, u) in units {
            if ms >= per && ms.is_multiple_of(per) {
                return write!(f, "{}{u}", ms / per);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl From<HumanDuration> for String {
    fn from(d: HumanDuration) -> String {
        d.to_string()
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A number of bytes written as `330MB`, `1GiB`, `512KiB` or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct ByteSize(pub u64);

/// `"30s"` -> `(30, "s")`; the unit may be empty. `what` and `example`
/// word the errors.
fn number_and_unit<'a>(s: &'a str, what: &str, example: &str) -> Result<(u64, &'a str), String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid {what} {s:?}: expected a number then a unit, e.g. \"{example}\""
        ));
    }
    let n = num
        .parse()
        .map_err(|_| format!("invalid {what} {s:?}: number too large"))?;
    Ok((n, unit))
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, unit) = number_and_unit(s, "size", "330MB")?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            u => {
                return Err(format!(
                    "invalid size {s:?}: unknown unit {u:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

/// The unit that writes the size with the smallest whole number, so that
/// it reads back exactly: `67108864` → `64MiB`, `330000000` → `330MB`.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units: [(u64, &str); 8] = [
            (1 << 40, "TiB"),
            (1_000_000_000_000, "TB"),
            (1 << 30, "GiB"),
            (1_000_000_000, "GB"),
            (1 << 20, "MiB"),
            (1_000_000, "MB"),
            (1 << 10, "KiB"),
            (1_000, "KB"),
        ];
        let exact = units
            .iter()
            .filter(|(per, _)| self.0 > 0 && self.0.is_multiple_of(*per))
            .min_by_key(|(per, _)| self.0 / per);
        match exact {
            Some((per, unit)) => write!(f, "{}{unit}", self.0 / per),
            None => write!(f, "{}B", self.0),
        }
    }
}

impl From<ByteSize> for String {
    fn from(b: ByteSize) -> String {
        b.to_string()
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(u64),
            Str(String),
        }
        match Either::deserialize(d)? {
            Either::Int(n) => Ok(ByteSize(n)),
            Either::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The nicknames a cron expression may be.
const CRON_NICKNAMES: [&str; 6] = [
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

/// What a cron expression may look like, for error messages.
pub const CRON_FORMS: &str = "5 fields \"minute hour day month weekday\" \
    (\"0 * * * *\" every hour, \"30 2 * * *\" at 02:30 every day, \"*/15 * * * *\" \
    every 15 minutes), 6 fields with seconds first, or @hourly, @daily, @weekly, \
    @monthly, @yearly";

/// A cron expression checked when parsed: 5 fields (minute first), 6 fields
/// (seconds first), or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct CronExpr(pub String);

impl CronExpr {
    pub fn parse_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let fields = t.split_whitespace().count();
        let why = if t.is_empty() {
            "empty".to_string()
        } else if t.starts_with('@') && !CRON_NICKNAMES.iter().any(|n| n.eq_ignore_ascii_case(t)) {
            format!("unknown nickname {t:?}")
        } else if !t.starts_with('@') && !(5..=6).contains(&fields) {
            format!("found {fields} field(s)")
        } else {
            match Self::parser().parse(t) {
                Ok(_) => return Ok(CronExpr(t.to_string())),
                Err(e) => Self::which_field(t).unwrap_or_else(|| e.to_string()),
            }
        };
        Err(format!(
            "invalid cron expression {s:?}: {why}; accepted: {CRON_FORMS}"
        ))
    }

    /// The first field that is wrong on its own (every other field `*`),
    /// named with its range: `hour "25" (0-23)`.
    fn which_field(t: &str) -> Option<String> {
        let fields: Vec<&str> = t.split_whitespace().collect();
        let names: &[&str] = if fields.len() == 6 {
            &[
                "second (0-59)",
                "minute (0-59)",
                "hour (0-23)",
                "day (1-31)",
                "month (1-12 or JAN-DEC)",
                "weekday (0-7 or SUN-SAT)",
            ]
        } else {
            &[
                "minute (0-59)",
                "hour (0-23)",
                "day (1-31)",
                "month (1-12 or JAN-DEC)",
                "weekday (0-7 or SUN-SAT)",
            ]
        };
        (0..fields.len()).find_map(|i| {
            let alone: Vec<&str> = (0..fields.len())
                .map(|j| if i == j { fields[j] } else { "*" })
                .collect();
            Self::parser().parse(&alone.join(" ")).err().map(|e| {
                let (name, range) = names[i].split_once(' ').unwrap_or((names[i], ""));
                format!("{name} {:?} is not valid {range}: {e}", fields[i])
            })
        })
    }

    fn parser() -> croner::parser::CronParser {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
    }

    /// The parsed schedule.
    pub fn cron(&self) -> croner::Cron {
        Self::parser()
            .parse(&self.0)
            .expect("CronExpr is validated when constructed")
    }
}

impl From<CronExpr> for String {
    fn from(c: CronExpr) -> String {
        c.0
    }
}

impl<'de> Deserialize<'de> for CronExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CronExpr::parse_str(&s).map_err(serde::de::Error::custom)
    }
}

/// `auto` detects the environment; `local` and `cloud` force a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModeSetting {
    #[default]
    Auto,
    Local,
    Cloud,
}

/// The documented lower-case word (as in JSON, manifests and the config).
impl std::fmt::Display for ModeSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModeSetting::Auto => "auto",
            ModeSetting::Local => "local",
            ModeSetting::Cloud => "cloud",
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The log levels, quietest first: `log.level`, `--log-level`.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// `level` if it is one of [`LOG_LEVELS`], else why not.
pub fn check_log_level(level: &str) -> Result<(), String> {
    if LOG_LEVELS.contains(&level) {
        Ok(())
    } else {
        Err(format!("{level:?} is not one of {}", LOG_LEVELS.join(", ")))
    }
}
