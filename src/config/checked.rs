//! The checked configuration the rest of the program uses: every path
//! absolute, every default applied; and the schedule's pure next slot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::offsite_url::OffsiteTarget;
use super::values::{ByteSize, CronExpr, HumanDuration, LogFormat, ModeSetting};

/// Checked configuration with every path absolute.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file this came from, or `None` for the built-in defaults.
    pub source: Option<PathBuf>,
    pub database: DatabaseConfig,
    pub store: StoreConfig,
    pub capture: CaptureConfig,
    pub continuous: ContinuousConfig,
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

/// `[continuous]`: the WAL archived as the app commits, so that a restore
/// can reach any commit (docs/USER_GUIDE.md, "Continuous protection").
#[derive(Debug, Clone, Serialize)]
pub struct ContinuousConfig {
    /// The daemon follows the WAL (on by default in local mode; cloud
    /// mode has no file to follow).
    pub enabled: bool,
    /// Every commit of this last stretch stays restorable: the base
    /// snapshots its commits need are kept whatever the retention rules
    /// say, and older archived WAL is removed by `prune`.
    pub window: HumanDuration,
    /// `status --check` warns when commits in the live WAL have waited
    /// longer than this to be archived, and is critical past twice it, or
    /// when archiving has stopped (the daemon's archiver failing, or no
    /// daemon while commits wait) for longer than this.
    pub max_lag: HumanDuration,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaptureConfig {
    pub attempts: u32,
    pub backoff: HumanDuration,
    pub timeout: HumanDuration,
    /// Online captures read only what can have changed since the mirror's
    /// snapshot (`<store>/mirror/`, one more copy of the database).
    pub incremental: bool,
    /// How often an incremental capture also reads the blocks it takes
    /// from the stored snapshot, and compares (`0s`: every time).
    pub full_read_every: HumanDuration,
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

/// `[offsite]`: a copy of the store in S3-compatible object storage or a
/// directory (a NAS, an external disk).
#[derive(Debug, Clone, Serialize)]
pub struct OffsiteConfig {
    /// `s3://bucket/prefix` or `file:///path`, as written.
    pub url: String,
    /// What `url` names.
    #[serde(skip)]
    pub target: OffsiteTarget,
    /// An S3-compatible server's URL (default: AWS). S3 only, as are the
    /// region, `allow_http` and the credentials.
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

pub(super) fn ms(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(n))
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
