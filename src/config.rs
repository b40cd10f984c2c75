//! Configuration: where it is found, how it is parsed, and the checked type the
//! rest of the program uses.
//!
//! The TOML file is parsed into `Raw*` structs with `deny_unknown_fields`, with
//! durations, sizes and cron expressions checked *while* parsing so that every
//! error carries the file, line, column and key. The raw form is then validated
//! into [`Config`], in which every relative path is resolved against the
//! config file's directory (systemd runs us with cwd `/`).
//!
//! Lookup order: `--config`, `$DUCKSNAP_CONFIG`, `./ducksnap.toml`,
//! `$XDG_CONFIG_HOME/ducksnap/config.toml` (or `~/.config/...`); when none
//! exists the built-in defaults apply, relative to the working directory.
//! Lookup reads an injected [`HostEnv`], never the process environment
//! directly, so tests can describe any host.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// Variables and the working directory of the host, captured once and passed
/// around instead of reading the process environment.
#[derive(Debug, Clone, Default)]
pub struct HostEnv {
    pub vars: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

impl HostEnv {
    /// Snapshot of the real process environment (used by `main` only).
    pub fn from_process() -> Self {
        HostEnv {
            vars: std::env::vars().collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A variable that is set and not empty.
    pub fn nonempty(&self, name: &str) -> Option<&str> {
        self.var(name).filter(|v| !v.is_empty())
    }
}

/// Errors from locating, reading, parsing or validating a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config file {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("config file {path} given by {origin} does not exist")]
    Missing { path: PathBuf, origin: &'static str },
    #[error("invalid environment variable ${name}={value:?}: {message}")]
    Env {
        name: &'static str,
        value: String,
        message: String,
    },
}

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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    capture: RawCapture,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    watch: RawWatch,
    #[serde(default)]
    socket: RawSocket,
    #[serde(default)]
    log: RawLog,
    offsite: Option<RawOffsite>,
    #[serde(default)]
    monitor: RawMonitor,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    warn_age: Option<HumanDuration>,
    crit_age: Option<HumanDuration>,
    metrics_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffsite {
    url: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    allow_http: Option<bool>,
    credentials_file: Option<String>,
    key_file: Option<String>,
    encryption: Option<Encryption>,
    push: Option<String>,
    timeout: Option<HumanDuration>,
    prune_grace: Option<HumanDuration>,
    retention: Option<RawRetention>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    path: Option<String>,
    #[serde(default)]
    mode: ModeSetting,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    dir: Option<String>,
    compression_level: Option<i32>,
    min_free_space: Option<ByteSize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    attempts: Option<u32>,
    backoff: Option<HumanDuration>,
    timeout: Option<HumanDuration>,
}

/// `cron = "…"` or `cron = ["…", …]`. Not `#[serde(untagged)]`: that
/// would replace every expression's own error with serde's "did not match
/// any variant".
#[derive(Debug)]
enum OneOrMany {
    One(CronExpr),
    Many(Vec<CronExpr>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a cron expression or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                CronExpr::parse_str(s)
                    .map(OneOrMany::One)
                    .map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut all = Vec::new();
                while let Some(c) = seq.next_element::<CronExpr>()? {
                    all.push(c);
                }
                Ok(OneOrMany::Many(all))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    enabled: Option<bool>,
    cron: Option<OneOrMany>,
    timezone: Option<String>,
    verify: Option<CronExpr>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_within: Option<HumanDuration>,
    max_total_size: Option<ByteSize>,
    pre_restore_pin: Option<HumanDuration>,
    reasons: Option<BTreeMap<String, RawReasonRule>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
// The same keys as the top of `[retention]`: serde cannot `flatten` one
// struct into the other while refusing unknown keys (`deny_unknown_fields`).
struct RawReasonRule {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_within: Option<HumanDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    enabled: Option<bool>,
    debounce: Option<HumanDuration>,
    snapshot_on_change: Option<bool>,
    quiet_period: Option<HumanDuration>,
    min_interval: Option<HumanDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSocket {
    path: Option<String>,
    max_line: Option<ByteSize>,
    idle_timeout: Option<HumanDuration>,
    max_connections: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<LogFormat>,
}

/// Checked configuration with every path absolute.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file this came from, or `None` for the built-in defaults.
    pub source: Option<PathBuf>,
    pub database: DatabaseConfig,
    pub store: StoreConfig,
    pub capture: CaptureConfig,
    pub schedule: ScheduleConfig,
    pub retention: RetentionConfig,
    pub watch: WatchConfig,
    pub socket: SocketConfig,
    pub log: LogConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offsite: Option<OffsiteConfig>,
    pub monitor: MonitorConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseConfig {
    /// Absolute path of the database file, or a remote name such as `md:app`.
    pub path: PathBuf,
    pub mode: ModeSetting,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// zstd level for chunks (1–19).
    pub compression_level: i32,
    /// A snapshot refuses to start when the store's file system has less free.
    pub min_free_space: ByteSize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaptureConfig {
    pub attempts: u32,
    pub backoff: HumanDuration,
    pub timeout: HumanDuration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleConfig {
    pub enabled: bool,
    pub cron: Vec<CronExpr>,
    /// `UTC` or an IANA time zone name.
    pub timezone: String,
    /// When the daemon deep-verifies the newest snapshot and a rolling
    /// sample of older ones (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<CronExpr>,
}

/// `[monitor]`: the age thresholds of `status --check` (absent: derived
/// from the schedule) and the Prometheus textfile.
#[derive(Debug, Clone, Serialize, Default)]
pub struct MonitorConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warn_age: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crit_age: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RetentionConfig {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_within: Option<HumanDuration>,
    pub max_total_size: Option<ByteSize>,
    /// Extra rules for the snapshots taken for one reason (`pre-delete`…),
    /// applied on top of the rules above; what they keep the size budget
    /// never removes.
    pub reasons: BTreeMap<String, ReasonRule>,
    /// How long a `pre-restore` safety snapshot stays pinned.
    pub pre_restore_pin: HumanDuration,
}

/// `[retention.reasons.<reason>]`: rules for the snapshots of one reason.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReasonRule {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_within: Option<HumanDuration>,
}

/// The reason rules that apply unless the config says otherwise: snapshots
/// the app asks for before a destructive operation are kept two weeks.
pub fn default_reason_rules() -> BTreeMap<String, ReasonRule> {
    BTreeMap::from([(
        "pre-delete".to_string(),
        ReasonRule {
            keep_within: Some(HumanDuration(Duration::from_secs(14 * 86_400))),
            ..ReasonRule::default()
        },
    )])
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchConfig {
    pub enabled: bool,
    pub debounce: HumanDuration,
    pub snapshot_on_change: bool,
    pub quiet_period: HumanDuration,
    pub min_interval: HumanDuration,
}

#[derive(Debug, Clone, Serialize)]
pub struct SocketConfig {
    pub path: PathBuf,
    pub max_line: ByteSize,
    pub idle_timeout: HumanDuration,
    pub max_connections: u32,
}

/// `[offsite]`: a copy of the store in S3-compatible object storage.
#[derive(Debug, Clone, Serialize)]
pub struct OffsiteConfig {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// An S3-compatible server's URL (default: AWS).
    pub endpoint: Option<String>,
    pub region: String,
    /// Plain HTTP: a loopback endpoint, or set explicitly (warned at start).
    pub allow_http: bool,
    /// Whether `allow_http` was written for a non-loopback endpoint.
    #[serde(skip)]
    pub http_warning: bool,
    pub credentials_file: Option<PathBuf>,
    pub key_file: PathBuf,
    pub encryption: Encryption,
    pub push: OffsitePush,
    /// Per request; a server that does not answer fails the request then.
    pub timeout: HumanDuration,
    /// How long a pack no record names stays before `offsite prune`
    /// deletes it (pushes from other processes finish within half of it).
    pub prune_grace: HumanDuration,
    pub retention: RetentionConfig,
}

/// How offsite objects are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Encryption {
    #[serde(rename = "xchacha20poly1305")]
    XChaCha20Poly1305,
    #[serde(rename = "none")]
    None,
}

impl Encryption {
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::XChaCha20Poly1305 => "xchacha20poly1305",
            Encryption::None => "none",
        }
    }
}

/// When the daemon pushes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum OffsitePush {
    AfterSnapshot,
    Manual,
    Cron(CronExpr),
}

impl From<OffsitePush> for String {
    fn from(p: OffsitePush) -> String {
        match p {
            OffsitePush::AfterSnapshot => "after-snapshot".into(),
            OffsitePush::Manual => "manual".into(),
            OffsitePush::Cron(c) => c.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

pub const DEFAULT_DATABASE: &str = "data/app.duckdb";
pub const DEFAULT_STORE: &str = "data/backups";
pub const DEFAULT_KEEP_LAST: u32 = 10;

fn ms(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(n))
}

/// Where the config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    File { path: PathBuf, origin: &'static str },
    Defaults,
}

/// Finds the config file: `--config`, `$DUCKSNAP_CONFIG`, `./ducksnap.toml`,
/// `$XDG_CONFIG_HOME/ducksnap/config.toml`. An explicitly named file that
/// does not exist is an error; the implicit places are simply skipped.
pub fn locate(cli: Option<&Path>, env: &HostEnv) -> Result<Located, ConfigError> {
    let explicit = cli.map(|p| (env.cwd.join(p), "--config")).or_else(|| {
        env.nonempty("DUCKSNAP_CONFIG")
            .map(|p| (env.cwd.join(p), "$DUCKSNAP_CONFIG"))
    });
    if let Some((path, origin)) = explicit {
        if !path.exists() {
            return Err(ConfigError::Missing { path, origin });
        }
        return Ok(Located::File { path, origin });
    }
    let local = env.cwd.join("ducksnap.toml");
    if local.is_file() {
        return Ok(Located::File {
            path: local,
            origin: "./ducksnap.toml",
        });
    }
    let xdg = env
        .nonempty("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env.nonempty("HOME").map(|h| Path::new(h).join(".config")));
    if let Some(dir) = xdg {
        let p = dir.join("ducksnap").join("config.toml");
        if p.is_file() {
            return Ok(Located::File {
                path: p,
                origin: "$XDG_CONFIG_HOME/ducksnap/config.toml",
            });
        }
    }
    Ok(Located::Defaults)
}

/// `$DUCKSNAP_MODE` (`local`, `cloud` or `auto`), which overrides
/// `database.mode` wherever it is set; `None` when unset or empty.
pub fn mode_from_env(env: &HostEnv) -> Result<Option<ModeSetting>, ConfigError> {
    let Some(v) = env.nonempty("DUCKSNAP_MODE") else {
        return Ok(None);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "local" => Ok(Some(ModeSetting::Local)),
        "cloud" => Ok(Some(ModeSetting::Cloud)),
        "auto" => Ok(Some(ModeSetting::Auto)),
        _ => Err(ConfigError::Env {
            name: "DUCKSNAP_MODE",
            value: v.to_string(),
            message: "expected local, cloud or auto".into(),
        }),
    }
}

/// Locates and loads the config.
pub fn load(cli: Option<&Path>, env: &HostEnv) -> Result<Config, ConfigError> {
    mode_from_env(env)?;
    match locate(cli, env)? {
        Located::File { path, .. } => load_file(&path, env),
        Located::Defaults => from_str_at("", None, &env.cwd, env),
    }
}

/// Loads one file.
pub fn load_file(path: &Path, env: &HostEnv) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    from_str_at(&text, Some(&path), &base, env)
}

/// Parses `text` as if read from `source`, resolving relative paths against `base`.
pub fn from_str_at(
    text: &str,
    source: Option<&Path>,
    base: &Path,
    env: &HostEnv,
) -> Result<Config, ConfigError> {
    let c = Checker {
        shown: source
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("<built-in defaults>")),
        base,
        env,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: c.shown.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let database = c.database(raw.database)?;
    let store = c.store(raw.store, &database.path)?;
    let retention = c.retention(raw.retention)?;
    let offsite = raw.offsite.map(|o| c.offsite(o, &retention)).transpose()?;
    Ok(Config {
        source: source.map(Path::to_path_buf),
        database,
        store,
        capture: c.capture(raw.capture)?,
        schedule: c.schedule(raw.schedule)?,
        retention,
        watch: watch_section(raw.watch),
        socket: c.socket(raw.socket)?,
        log: c.log(raw.log)?,
        offsite,
        monitor: c.monitor(raw.monitor)?,
    })
}

/// Validates the config one section at a time; knows where the file is
/// (for errors and relative paths) and the environment (`~`, defaults).
struct Checker<'a> {
    shown: PathBuf,
    base: &'a Path,
    env: &'a HostEnv,
}

impl Checker<'_> {
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.shown.clone(),
            key: key.to_string(),
            message,
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = expand_home(p, self.env);
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    fn database(&self, raw: RawDatabase) -> Result<DatabaseConfig, ConfigError> {
        let db_raw = raw.path.unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        if db_raw.trim().is_empty() {
            return Err(self.invalid("database.path", "must not be empty".into()));
        }
        // A MotherDuck name is kept verbatim: there is no file to resolve.
        let path = if db_raw.starts_with("md:") {
            PathBuf::from(&db_raw)
        } else {
            self.resolve(&db_raw)
        };
        Ok(DatabaseConfig {
            path,
            mode: raw.mode,
        })
    }

    fn store(&self, raw: RawStore, db_path: &Path) -> Result<StoreConfig, ConfigError> {
        let store_raw = raw.dir.unwrap_or_else(|| DEFAULT_STORE.to_string());
        if store_raw.trim().is_empty() {
            return Err(self.invalid("store.dir", "must not be empty".into()));
        }
        let dir = self.resolve(&store_raw);
        if dir == db_path {
            return Err(self.invalid("store.dir", "must not be the database file itself".into()));
        }
        let level = raw.compression_level.unwrap_or(1);
        if !(1..=19).contains(&level) {
            return Err(self.invalid(
                "store.compression_level",
                format!("{level} is out of range 1..=19"),
            ));
        }
        Ok(StoreConfig {
            dir,
            compression_level: level,
            min_free_space: raw.min_free_space.unwrap_or(ByteSize(64 * 1024 * 1024)),
        })
    }

    fn capture(&self, raw: RawCapture) -> Result<CaptureConfig, ConfigError> {
        let attempts = raw.attempts.unwrap_or(100);
        if attempts == 0 || attempts > 1000 {
            return Err(self.invalid(
                "capture.attempts",
                format!("{attempts} is out of range 1..=1000"),
            ));
        }
        let timeout = raw.timeout.unwrap_or(ms(60_000));
        if timeout.0.is_zero() {
            return Err(self.invalid("capture.timeout", "must be greater than 0".into()));
        }
        Ok(CaptureConfig {
            attempts,
            backoff: raw.backoff.unwrap_or(ms(50)),
            timeout,
        })
    }

    fn schedule(&self, raw: RawSchedule) -> Result<ScheduleConfig, ConfigError> {
        let cron = match raw.cron {
            None => vec![CronExpr::parse_str("@hourly").expect("valid")],
            Some(OneOrMany::One(c)) => vec![c],
            Some(OneOrMany::Many(v)) => v,
        };
        let timezone = raw.timezone.unwrap_or_else(|| "UTC".to_string());
        if timezone != "UTC" && timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(self.invalid(
                "schedule.timezone",
                format!(
                    "unknown time zone {timezone:?} (use \"UTC\" or an IANA name such as \"Europe/Berlin\")"
                ),
            ));
        }
        Ok(ScheduleConfig {
            enabled: raw.enabled.unwrap_or(true),
            cron,
            timezone,
            verify: raw.verify,
        })
    }

    fn monitor(&self, raw: RawMonitor) -> Result<MonitorConfig, ConfigError> {
        if let (Some(w), Some(c)) = (&raw.warn_age, &raw.crit_age)
            && w.0 >= c.0
        {
            return Err(self.invalid(
                "monitor.crit_age",
                format!("must be longer than monitor.warn_age ({} <= {})", c, w),
            ));
        }
        for (key, d) in [
            ("monitor.warn_age", &raw.warn_age),
            ("monitor.crit_age", &raw.crit_age),
        ] {
            if d.as_ref().is_some_and(|d| d.0.is_zero()) {
                return Err(self.invalid(key, "must be greater than 0".into()));
            }
        }
        let metrics_file = match raw.metrics_file {
            Some(p) if p.trim().is_empty() => {
                return Err(self.invalid("monitor.metrics_file", "must not be empty".into()));
            }
            Some(p) => Some(self.resolve(&p)),
            None => None,
        };
        Ok(MonitorConfig {
            warn_age: raw.warn_age,
            crit_age: raw.crit_age,
            metrics_file,
        })
    }

    fn retention(&self, r: RawRetention) -> Result<RetentionConfig, ConfigError> {
        Ok(RetentionConfig {
            keep_last: r.keep_last.unwrap_or(DEFAULT_KEEP_LAST),
            keep_hourly: r.keep_hourly.unwrap_or(0),
            keep_daily: r.keep_daily.unwrap_or(0),
            keep_weekly: r.keep_weekly.unwrap_or(0),
            keep_monthly: r.keep_monthly.unwrap_or(0),
            keep_within: r.keep_within,
            max_total_size: r.max_total_size,
            reasons: reason_rules(r.reasons).map_err(|m| self.invalid("retention.reasons", m))?,
            pre_restore_pin: r
                .pre_restore_pin
                .unwrap_or(HumanDuration(Duration::from_secs(30 * 86_400))),
        })
    }

    fn socket(&self, s: RawSocket) -> Result<SocketConfig, ConfigError> {
        let path = match s.path {
            Some(p) if p.trim().is_empty() => {
                return Err(self.invalid("socket.path", "must not be empty".into()));
            }
            Some(p) => self.resolve(&p),
            None => default_socket_path(self.env),
        };
        let max_line = s.max_line.unwrap_or(ByteSize(64 * 1024));
        if max_line.0 < 1024 || max_line.0 > 16 * 1024 * 1024 {
            return Err(self.invalid(
                "socket.max_line",
                format!("{} is out of range 1KiB..=16MiB", max_line.0),
            ));
        }
        let max_connections = s.max_connections.unwrap_or(512);
        if max_connections == 0 {
            return Err(self.invalid("socket.max_connections", "must be at least 1".into()));
        }
        Ok(SocketConfig {
            path,
            max_line,
            idle_timeout: s.idle_timeout.unwrap_or(ms(30_000)),
            max_connections,
        })
    }

    fn offsite(
        &self,
        o: RawOffsite,
        local: &RetentionConfig,
    ) -> Result<OffsiteConfig, ConfigError> {
        let url = o.url.ok_or_else(|| {
            self.invalid(
                "offsite.url",
                "missing (e.g. \"s3://bucket/prefix\")".into(),
            )
        })?;
        split_s3_url(&url).map_err(|reason| self.invalid("offsite.url", reason))?;
        let (allow_http, http_warning) = self.offsite_http(o.endpoint.as_deref(), o.allow_http)?;
        let encryption = o.encryption.unwrap_or(Encryption::XChaCha20Poly1305);
        let key_file = match (o.key_file, encryption) {
            (Some(k), _) => self.resolve(&k),
            (None, Encryption::None) => PathBuf::new(),
            (None, _) => {
                return Err(self.invalid(
                    "offsite.key_file",
                    "missing: where `ducksnap offsite init` keeps the encryption key (or write encryption = \"none\")".into(),
                ));
            }
        };
        let push = match o.push.as_deref() {
            None | Some("after-snapshot") => OffsitePush::AfterSnapshot,
            Some("manual") => OffsitePush::Manual,
            Some(c) => OffsitePush::Cron(CronExpr::parse_str(c).map_err(|e| {
                self.invalid(
                    "offsite.push",
                    format!("{e} (or \"after-snapshot\", \"manual\")"),
                )
            })?),
        };
        let retention = match o.retention {
            Some(r) => self.retention(r)?,
            None => RetentionConfig {
                keep_daily: local.keep_daily.max(30),
                ..local.clone()
            },
        };
        Ok(OffsiteConfig {
            url,
            endpoint: o.endpoint,
            region: o.region.unwrap_or_else(|| "us-east-1".into()),
            allow_http,
            http_warning,
            credentials_file: o.credentials_file.map(|p| self.resolve(&p)),
            key_file,
            encryption,
            push,
            timeout: o.timeout.unwrap_or(ms(30_000)),
            prune_grace: o.prune_grace.unwrap_or(ms(3_600_000)),
            retention,
        })
    }

    /// Plain HTTP is allowed to a loopback endpoint, or when `allow_http`
    /// says so (then with a warning at every start). Returns (allowed,
    /// warn).
    fn offsite_http(
        &self,
        endpoint: Option<&str>,
        allow: Option<bool>,
    ) -> Result<(bool, bool), ConfigError> {
        let Some(e) = endpoint else {
            return Ok((false, false));
        };
        let (scheme, rest) = e.split_once("://").ok_or_else(|| {
            self.invalid(
                "offsite.endpoint",
                format!("{e:?} is not a URL (e.g. \"https://s3.example.com\")"),
            )
        })?;
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.split(':').next().unwrap_or(""),
        };
        if host.is_empty() {
            return Err(self.invalid("offsite.endpoint", format!("{e:?} has no host")));
        }
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match (scheme, allow) {
            ("https", _) => Ok((false, false)),
            ("http", _) if loopback => Ok((true, false)),
            ("http", Some(true)) => Ok((true, true)),
            ("http", _) => Err(self.invalid(
                "offsite.allow_http",
                format!("{e:?} is plain HTTP to a host that is not this machine: credentials and data would cross the network unprotected; use https, or set allow_http = true if you must"),
            )),
            _ => Err(self.invalid("offsite.endpoint", format!("{e:?}: use https:// (or http:// to this machine)"))),
        }
    }

    fn log(&self, raw: RawLog) -> Result<LogConfig, ConfigError> {
        let level = raw.level.unwrap_or_else(|| "info".to_string());
        check_log_level(&level).map_err(|why| self.invalid("log.level", why))?;
        Ok(LogConfig {
            level,
            format: raw.format.unwrap_or_default(),
        })
    }
}

fn watch_section(w: RawWatch) -> WatchConfig {
    WatchConfig {
        enabled: w.enabled.unwrap_or(true),
        debounce: w.debounce.unwrap_or(ms(1_000)),
        snapshot_on_change: w.snapshot_on_change.unwrap_or(false),
        quiet_period: w.quiet_period.unwrap_or(ms(30_000)),
        min_interval: w.min_interval.unwrap_or(ms(300_000)),
    }
}

fn expand_home(p: &str, env: &HostEnv) -> PathBuf {
    match (p.strip_prefix("~/"), env.nonempty("HOME")) {
        (Some(rest), Some(home)) => Path::new(home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// The shipped reason rules with the config's entries laid over them (an
/// entry replaces the shipped rule for its reason; an empty table removes it).
fn reason_rules(
    raw: Option<BTreeMap<String, RawReasonRule>>,
) -> Result<BTreeMap<String, ReasonRule>, String> {
    let mut rules = default_reason_rules();
    for (reason, r) in raw.unwrap_or_default() {
        if !crate::id::valid_reason(&reason) {
            return Err(format!(
                "{reason:?} is not a snapshot reason (1 to 64 letters, digits, '-', '_' or '.')"
            ));
        }
        rules.insert(
            reason,
            ReasonRule {
                keep_last: r.keep_last.unwrap_or(0),
                keep_hourly: r.keep_hourly.unwrap_or(0),
                keep_daily: r.keep_daily.unwrap_or(0),
                keep_weekly: r.keep_weekly.unwrap_or(0),
                keep_monthly: r.keep_monthly.unwrap_or(0),
                keep_within: r.keep_within,
            },
        );
    }
    Ok(rules)
}

/// `$DUCKSNAP_SOCKET` (relative to the working directory), else
/// `$XDG_RUNTIME_DIR/ducksnap.sock`, else `/tmp/ducksnap-<uid>/ducksnap.sock`.
/// The Python client reads the same variables in the same order.
pub fn default_socket_path(env: &HostEnv) -> PathBuf {
    if let Some(p) = env.nonempty("DUCKSNAP_SOCKET") {
        return env.cwd.join(p);
    }
    match env.nonempty("XDG_RUNTIME_DIR") {
        Some(dir) => Path::new(dir).join("ducksnap.sock"),
        None => {
            PathBuf::from(format!("/tmp/ducksnap-{}", nix::unistd::getuid())).join("ducksnap.sock")
        }
    }
}

/// `s3://bucket/prefix` → the bucket and the prefix (no leading or
/// trailing `/`); the reason when it is not one.
pub fn split_s3_url(url: &str) -> Result<(String, String), String> {
    let bad = |reason: &str| format!("{url:?}: {reason} (expected s3://bucket/prefix)");
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
        return Err(bad(
            "the bucket name must be 3 to 63 lower-case letters, digits, '-' or '.'",
        ));
    }
    let prefix = prefix.trim_matches('/').to_string();
    if prefix.split('/').any(|p| p == ".." || p == ".") || prefix.contains("//") {
        return Err(bad("the prefix must not contain '.', '..' or empty parts"));
    }
    Ok((bucket.to_string(), prefix))
}

/// The first slot strictly after `after`, over every expression, or `None`
/// when the schedule is disabled or has no future slot.
pub fn next_after(
    cfg: &ScheduleConfig,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    if !cfg.enabled {
        return None;
    }
    let tz: chrono_tz::Tz = if cfg.timezone == "UTC" {
        chrono_tz::Tz::UTC
    } else {
        cfg.timezone.parse().ok()?
    };
    let local = after.with_timezone(&tz);
    cfg.cron
        .iter()
        .filter_map(|c| c.cron().find_next_occurrence(&local, false).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .min()
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
