//! `ducksnap env`: the mode and every detection signal, and whose decision
//! the other commands use.

use crate::config::{self, HostEnv};
use crate::ops::Ctx;

use super::client;
use super::output::{outln, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(ctx: &Ctx, env: &HostEnv, a: Args) -> anyhow::Result<u8> {
    let d = &ctx.detection;
    if a.json {
        print_json(d)?;
        return Ok(0);
    }
    outln!("mode: {} ({})", d.mode, d.reason);
    outln!("setting: database.mode = {}", d.setting);
    if config::mode_from_env(env)?.is_none()
        && let Some((_, hello)) = client::daemon_for(ctx)?
    {
        outln!(
            "a daemon serves this store (pid {}): its mode, {} ({}), is what the other commands use",
            hello.pid,
            hello.mode,
            hello.mode_reason
        );
    }
    for s in &d.signals {
        outln!(
            "  [{}] {:<26} {} = {}",
            if s.fired { "x" } else { " " },
            s.name,
            s.rule,
            s.value
                .as_deref()
                .map(|v| format!("{v:?}"))
                .unwrap_or_else(|| "(unset)".into())
        );
    }
    Ok(0)
}
