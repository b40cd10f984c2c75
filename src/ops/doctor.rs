//! Diagnosing a database DuckDB will not open (`ducksnap doctor`): its files
//! read without writing ([`crate::database::diagnose`]), then, when nothing
//! found stops DuckDB and no process holds the database, the bundled DuckDB
//! opens it read-only to confirm — a replay bug shows only there.

use std::path::Path;

use crate::database::check;
use crate::database::diagnose::{self, Diagnosis, Finding};

/// What `doctor` found.
pub struct Diagnosed {
    pub diagnosis: Diagnosis,
    /// `Some(true)`: the bundled DuckDB opened it read-only; `Some(false)`:
    /// it will not open (a finding says why); `None`: not tried (a process
    /// holds it, or its storage version is newer than the bundled DuckDB's).
    pub opens: Option<bool>,
}

impl Diagnosed {
    /// The exit code: the gravest finding's (README, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        self.diagnosis
            .findings
            .iter()
            .map(Finding::exit_code)
            .max()
            .unwrap_or(0)
    }
}

pub fn doctor(db: &Path) -> std::io::Result<Diagnosed> {
    let mut diagnosis = diagnose::examine(db)?;
    let opens = confirm(db, &mut diagnosis);
    Ok(Diagnosed { diagnosis, opens })
}

fn confirm(db: &Path, d: &mut Diagnosis) -> Option<bool> {
    let locked = d
        .findings
        .iter()
        .any(|f| matches!(f, Finding::Locked { .. }));
    if !d.opens() {
        return (!locked).then_some(false);
    }
    let header = d.header?;
    if locked || !header.readable_by_bundled() {
        return None;
    }
    match check::check_copy(db, &header, false) {
        Ok(_) => Some(true),
        Err(e) => {
            d.findings.push(Finding::Refused { message: e.message });
            Some(false)
        }
    }
}
