//! The TOML file as written: `Raw*` structs with `deny_unknown_fields`,
//! every field optional; [`super::check`] turns them into the checked
//! types.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::checked::Encryption;
use super::values::{ByteSize, CronExpr, HumanDuration, LogFormat, ModeSetting};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) capture: RawCapture,
    #[serde(default)]
    pub(super) continuous: RawContinuous,
    #[serde(default)]
    pub(super) schedule: RawSchedule,
    #[serde(default)]
    pub(super) retention: RawRetention,
    #[serde(default)]
    pub(super) watch: RawWatch,
    #[serde(default)]
    pub(super) socket: RawSocket,
    #[serde(default)]
    pub(super) log: RawLog,
    pub(super) offsite: Option<RawOffsite>,
    #[serde(default)]
    pub(super) monitor: RawMonitor,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMonitor {
    pub(super) warn_age: Option<HumanDuration>,
    pub(super) crit_age: Option<HumanDuration>,
    pub(super) metrics_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOffsite {
    pub(super) url: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    pub(super) allow_http: Option<bool>,
    pub(super) credentials_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) encryption: Option<Encryption>,
    pub(super) push: Option<String>,
    pub(super) timeout: Option<HumanDuration>,
    pub(super) prune_grace: Option<HumanDuration>,
    pub(super) retention: Option<RawRetention>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) mode: ModeSetting,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) dir: Option<String>,
    pub(super) compression_level: Option<i32>,
    pub(super) min_free_space: Option<ByteSize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContinuous {
    pub(super) enabled: Option<bool>,
    pub(super) window: Option<HumanDuration>,
    pub(super) max_lag: Option<HumanDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapture {
    pub(super) attempts: Option<u32>,
    pub(super) backoff: Option<HumanDuration>,
    pub(super) timeout: Option<HumanDuration>,
    pub(super) incremental: Option<bool>,
    pub(super) full_read_every: Option<HumanDuration>,
}

/// `cron = "…"` or `cron = ["…", …]`. Not `#[serde(untagged)]`: that
/// would replace every expression's own error with serde's "did not match
/// any variant".
#[derive(Debug)]
pub(super) enum OneOrMany {
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
pub(super) struct RawSchedule {
    pub(super) enabled: Option<bool>,
    pub(super) cron: Option<OneOrMany>,
    pub(super) timezone: Option<String>,
    pub(super) verify: Option<CronExpr>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) keep_last: Option<u32>,
    pub(super) keep_hourly: Option<u32>,
    pub(super) keep_daily: Option<u32>,
    pub(super) keep_weekly: Option<u32>,
    pub(super) keep_monthly: Option<u32>,
    pub(super) keep_within: Option<HumanDuration>,
    pub(super) max_total_size: Option<ByteSize>,
    pub(super) pre_restore_pin: Option<HumanDuration>,
    pub(super) reasons: Option<BTreeMap<String, RawReasonRule>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
// The same keys as the top of `[retention]`: serde cannot `flatten` one
// struct into the other while refusing unknown keys (`deny_unknown_fields`).
pub(super) struct RawReasonRule {
    pub(super) keep_last: Option<u32>,
    pub(super) keep_hourly: Option<u32>,
    pub(super) keep_daily: Option<u32>,
    pub(super) keep_weekly: Option<u32>,
    pub(super) keep_monthly: Option<u32>,
    pub(super) keep_within: Option<HumanDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    pub(super) enabled: Option<bool>,
    pub(super) debounce: Option<HumanDuration>,
    pub(super) snapshot_on_change: Option<bool>,
    pub(super) quiet_period: Option<HumanDuration>,
    pub(super) min_interval: Option<HumanDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSocket {
    pub(super) path: Option<String>,
    pub(super) max_line: Option<ByteSize>,
    pub(super) idle_timeout: Option<HumanDuration>,
    pub(super) max_connections: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<String>,
    pub(super) format: Option<LogFormat>,
}
