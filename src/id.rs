//! Snapshot ids: time-sortable, from a safe alphabet, validated before they
//! touch a path.
//!
//! Form: `YYYYMMDDTHHMMSSZ-xxxx`, the UTC creation second and four lowercase
//! hex digits, e.g. `20261126T084512Z-3f9a`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A validated snapshot id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId(String);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid snapshot id {shown}: {reason}")]
pub struct InvalidId {
    /// The id as given, quoted and shortened for display.
    pub shown: String,
    pub reason: &'static str,
}

const LEN: usize = 21;

impl SnapshotId {
    /// Checks an id that came from outside (CLI, socket, file name).
    pub fn parse(s: &str) -> Result<SnapshotId, InvalidId> {
        let shown = {
            let mut t: String = s.chars().take(40).collect();
            if s.chars().count() > 40 {
                t.push('…');
            }
            format!("{t:?}")
        };
        let bad = |reason| InvalidId {
            shown: shown.clone(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() != LEN {
            return Err(bad("expected 21 characters like 20261126T084512Z-3f9a"));
        }
        let b = s.as_bytes();
        let ok = b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'T'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && b[15] == b'Z'
            && b[16] == b'-'
            && b[17..]
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(bad(
                "expected the form YYYYMMDDTHHMMSSZ-xxxx (digits, T, Z, -, lowercase hex)",
            ));
        }
        if chrono::NaiveDateTime::parse_from_str(&s[..15], "%Y%m%dT%H%M%S").is_err() {
            return Err(bad("the date and time part is not a valid time"));
        }
        Ok(SnapshotId(s.to_string()))
    }

    /// A new id for a snapshot created at `at`; `salt` varies the suffix.
    pub fn generate(at: DateTime<Utc>) -> SnapshotId {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = blake3::Hasher::new();
        h.update(&at.timestamp_nanos_opt().unwrap_or_default().to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let suffix = &h.finalize().to_hex()[..4];
        SnapshotId(format!("{}-{suffix}", at.format("%Y%m%dT%H%M%SZ")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SnapshotId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        SnapshotId::parse(&s)
    }
}

impl From<SnapshotId> for String {
    fn from(id: SnapshotId) -> String {
        id.0
    }
}

/// A snapshot reason (`pre-delete`, `manual`, …): 1 to 64 letters, digits,
/// `-`, `_` or `.` — checked for a request, a selector and a retention rule.
pub fn valid_reason(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}
