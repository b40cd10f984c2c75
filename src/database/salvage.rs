//! The longest WAL that verifies, for `ducksnap rescue`: the live WAL's
//! entries up to the first one that fails (DuckDB refuses the whole WAL
//! then: `wal_replay.cpp` `ReplayLog`, see [`super::diagnose`]), cut at the
//! last commit before it — or, when the continuous archive holds a verified
//! copy of the same WAL's beginning that reaches past the damage, that copy
//! and the live entries after it that still verify. Each entry carries its
//! own checksum and a commit ends at an entry boundary, so the entries
//! after an archived commit boundary are read on their own. Pure: bytes
//! in, bytes out.

use super::wal::{self, Commit, End, WalError};

/// A WAL made of verified entries only, cut at a commit boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// The bytes to write beside the database (its header and whole
    /// commits).
    pub wal: Vec<u8>,
    /// The commits it holds, in order (walked again from `wal`).
    pub commits: Vec<Commit>,
    /// How many of them only the archive had (the live WAL's bytes for
    /// them fail or are cut).
    pub from_archive: u64,
    /// The live WAL's first entry that fails, as DuckDB names it: the byte
    /// position of its body (a checksum failure) or of its frame (an entry
    /// that is not one).
    pub first_bad: Option<u64>,
    /// The live WAL's bytes past what `wal` holds of it.
    pub dropped: u64,
    /// Where the live WAL's own verified commits end.
    pub live_to: u64,
    /// Where the archive's copy ends, when it was used.
    pub archived_to: Option<u64>,
}

/// Why nothing can be salvaged from the live WAL.
pub type SalvageError = WalError;

/// Salvages `live` (the WAL file's bytes), with `archived`: the archive's
/// verified copy of the same WAL's first bytes (up to a commit boundary),
/// when the archive followed this file. The archive is used only when it
/// agrees with every live byte before the live WAL's first failure — a
/// copy of another history is never mixed in.
pub fn salvage(live: &[u8], archived: Option<&[u8]>) -> Result<Salvaged, SalvageError> {
    let scan = wal::scan(live);
    let first_bad = match &scan {
        Ok(s) => match &s.walked.end {
            End::BadChecksum { offset, .. } => Some(offset + 16),
            End::Malformed { offset, .. } => Some(*offset),
            End::Clean | End::Torn { .. } => None,
        },
        Err(_) => Some(0),
    };
    let live_to = scan.as_ref().map_or(0, |s| s.committed_to());
    let base = archived.filter(|a| {
        let a_len = a.len() as u64;
        let agree = (live_to as usize) <= live.len()
            && live[..(live_to.min(a_len)) as usize] == a[..(live_to.min(a_len)) as usize];
        a_len > live_to && agree && wal::scan(a).is_ok_and(|s| s.committed_to() == a_len)
    });
    let out = match base {
        Some(a) => {
            let mut out = a.to_vec();
            let from = a.len() as u64;
            if (live.len() as u64) > from {
                let tail = wal::entries(live, from, 0);
                let to = tail.commits.last().map_or(from, |c| c.end);
                out.extend_from_slice(&live[from as usize..to as usize]);
            }
            out
        }
        None => match &scan {
            Ok(_) => live[..live_to as usize].to_vec(),
            Err(e) => return Err(e.clone()),
        },
    };
    let commits = wal::scan(&out)
        .map(|s| s.walked.commits)
        .unwrap_or_default();
    let from_archive = match base {
        Some(a) => commits
            .iter()
            .filter(|c| c.end > live_to && c.end <= a.len() as u64)
            .count() as u64,
        None => 0,
    };
    Ok(Salvaged {
        live_to,
        archived_to: base.map(|a| a.len() as u64),
        dropped: (live.len() as u64).saturating_sub(out.len() as u64),
        wal: out,
        commits,
        from_archive,
        first_bad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL of `commits` commits, built by walking a real one is not
    /// possible here (no DuckDB in unit tests): these tests only check the
    /// choice between the live bytes and the archive's; the framing is
    /// tested against DuckDB's own files in tests/it/rescue.rs.
    #[test]
    fn an_unreadable_header_without_an_archive_is_an_error() {
        assert!(salvage(b"not a wal", None).is_err());
    }

    #[test]
    fn an_archive_that_is_not_a_whole_wal_is_not_used() {
        assert!(salvage(b"garbage", Some(b"garbage too")).is_err());
    }
}
