//! `ducksnap daemon`: run the service until a signal stops it.

use std::path::PathBuf;

use crate::config::{self, HostEnv};
use crate::ops::Ctx;

pub fn run(ctx: Ctx, env: HostEnv, config_arg: Option<PathBuf>) -> anyhow::Result<u8> {
    let env2 = env.clone();
    let reload: crate::daemon::Reload =
        Box::new(move || config::load(config_arg.as_deref(), &env2));
    crate::daemon::run(ctx, env, reload)
}
