//! `ducksnap config check`: the effective config, every path resolved.

use anyhow::Context;

use crate::ops::Ctx;

use super::output::{outln, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    if a.json {
        print_json(&ctx.config)?;
        return Ok(0);
    }
    let src = ctx
        .config
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults (no config file found)".into());
    outln!("# config OK: {src}");
    // The source is in the comment above: the rest is a config file that
    // loads back to the same values.
    let mut value = toml::Value::try_from(&ctx.config).context("rendering the config")?;
    if let Some(t) = value.as_table_mut() {
        t.remove("source");
    }
    let text = toml::to_string_pretty(&value).context("rendering the config")?;
    use std::io::Write as _;
    write!(std::io::stdout().lock(), "{text}").map_err(super::output::stdout_error)?;
    Ok(0)
}
