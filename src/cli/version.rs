//! `ducksnap version`: this build, the DuckDB it bundles and the formats it
//! reads — what a bug report needs.

use serde::Serialize;

use super::output::{outln, print_json};
use crate::database::check;
use crate::database::duckfile::BUNDLED_STORAGE_VERSION;
use crate::protocol::PROTOCOL_VERSION;
use crate::store::{MANIFEST_FORMAT, STORE_FORMAT};

/// The oldest DuckDB storage version the bundled DuckDB opens (DuckDB 0.9).
const OLDEST_STORAGE_VERSION: u64 = 64;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Serialize)]
struct Version {
    ducksnap: &'static str,
    duckdb: String,
    storage_versions: [u64; 2],
    store_format: u32,
    manifest_format: u32,
    protocol: u32,
    platform: String,
}

pub fn run(a: Args) -> anyhow::Result<u8> {
    let v = Version {
        ducksnap: env!("CARGO_PKG_VERSION"),
        duckdb: check::bundled_version(),
        storage_versions: [OLDEST_STORAGE_VERSION, BUNDLED_STORAGE_VERSION],
        store_format: STORE_FORMAT,
        manifest_format: MANIFEST_FORMAT,
        protocol: PROTOCOL_VERSION,
        platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
    };
    if a.json {
        print_json(&v)?;
        return Ok(0);
    }
    outln!("ducksnap {}", v.ducksnap);
    outln!("DuckDB {} (bundled)", v.duckdb);
    outln!(
        "reads database files of DuckDB storage versions {} to {} (older ones are snapshotted but not checked)",
        v.storage_versions[0],
        v.storage_versions[1]
    );
    outln!(
        "store format {}, manifest format {}, socket protocol {}",
        v.store_format,
        v.manifest_format,
        v.protocol
    );
    outln!("platform {}", v.platform);
    Ok(0)
}
