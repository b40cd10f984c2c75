//! From the raw TOML to [`Config`]: one section at a time, every relative
//! path resolved against the config file's directory (systemd runs us with
//! cwd `/`), every mistake an error naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checked::*;
use super::error::ConfigError;
use super::host::{HostEnv, default_socket_path};
use super::offsite_url::OffsiteTarget;
use super::raw::*;
use super::values::{ByteSize, CronExpr, HumanDuration, check_log_level};

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
    let offsite = raw
        .offsite
        .map(|o| c.offsite(o, &retention, &store.dir))
        .transpose()?;
    Ok(Config {
        source: source.map(Path::to_path_buf),
        database,
        store,
        capture: c.capture(raw.capture)?,
        continuous: c.continuous(raw.continuous)?,
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
pub(super) struct Checker<'a> {
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

    fn continuous(&self, raw: RawContinuous) -> Result<ContinuousConfig, ConfigError> {
        let max_lag = raw.max_lag.unwrap_or(ms(60_000));
        if max_lag.0 < std::time::Duration::from_secs(1) {
            return Err(self.invalid("continuous.max_lag", "must be at least 1s".into()));
        }
        Ok(ContinuousConfig {
            enabled: raw.enabled.unwrap_or(true),
            window: raw.window.unwrap_or(ms(7 * 86_400_000)),
            max_lag,
        })
    }

    fn capture(&self, raw: RawCapture) -> Result<CaptureConfig, ConfigError> {
        let attempts = raw.attempts.unwrap_or(1000);
        if attempts == 0 || attempts > 100_000 {
            return Err(self.invalid(
                "capture.attempts",
                format!("{attempts} is out of range 1..=100000"),
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
            incremental: raw.incremental.unwrap_or(true),
            full_read_every: raw.full_read_every.unwrap_or(ms(86_400_000)),
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
        store: &Path,
    ) -> Result<OffsiteConfig, ConfigError> {
        let url = o.url.clone().ok_or_else(|| {
            self.invalid(
                "offsite.url",
                "missing (e.g. \"s3://bucket/prefix\" or \"file:///mnt/nas/ducksnap\")".into(),
            )
        })?;
        let target =
            OffsiteTarget::parse(&url).map_err(|reason| self.invalid("offsite.url", reason))?;
        if let OffsiteTarget::Directory { path } = &target {
            self.offsite_directory(&o, path, store)?;
        }
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
            target,
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

    /// A directory remote: the S3 settings do not apply (set, they are a
    /// mistake), and the copy must be neither in the store nor around it
    /// (remote prune deletes what no record names).
    fn offsite_directory(
        &self,
        o: &RawOffsite,
        dir: &Path,
        store: &Path,
    ) -> Result<(), ConfigError> {
        let s3_only = [
            ("offsite.endpoint", o.endpoint.is_some()),
            ("offsite.region", o.region.is_some()),
            ("offsite.allow_http", o.allow_http.is_some()),
            ("offsite.credentials_file", o.credentials_file.is_some()),
        ];
        if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set) {
            return Err(self.invalid(
                key,
                format!(
                    "applies to s3:// URLs; offsite.url names the directory {}: remove it",
                    dir.display()
                ),
            ));
        }
        if dir.starts_with(store) || store.starts_with(dir) {
            return Err(self.invalid(
                "offsite.url",
                format!(
                    "the directory {} and the store {} must not contain one another: put the offsite copy on another disk",
                    dir.display(),
                    store.display()
                ),
            ));
        }
        Ok(())
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
