//! `ducksnap snapshot`: take a snapshot now.

use crate::ops::Ctx;
use crate::protocol::Request;

use super::output::{outln, print_json};
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Why: manual, pre-delete, scheduled, ... (letters, digits, - _ .).
    #[arg(long, default_value = "manual")]
    reason: String,
    /// Free text shown in listings.
    #[arg(long)]
    label: Option<String>,
    /// Keep this snapshot whatever the retention policy says.
    #[arg(long)]
    pin: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let r = remote::call(
        ctx,
        Request::Snapshot {
            reason: a.reason,
            label: a.label,
            pin: a.pin,
        },
    )?;
    if a.json {
        print_json(&r)?;
    } else if r["disabled"] == true {
        outln!("{}", r["reason"].as_str().unwrap_or("backups are disabled"));
    } else if r["unchanged"] == true {
        outln!(
            "database unchanged since snapshot {}; nothing stored",
            r["since"].as_str().unwrap_or("?")
        );
    } else {
        let m: crate::store::Manifest = serde_json::from_value(r["snapshot"].clone())?;
        outln!(
            "snapshot {} created: {} database bytes, {} new bytes stored, {} capture in {} ms, {}",
            m.id,
            m.db_size(),
            m.bytes_new,
            format!("{:?}", m.capture.method).to_lowercase(),
            m.capture.duration_ms,
            m.check
                .reason
                .clone()
                .unwrap_or_else(|| format!("verified ({} tables)", m.check.tables.len()))
        );
    }
    Ok(0)
}
