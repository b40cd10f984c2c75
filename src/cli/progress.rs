//! Feedback on long work, sized for where the output goes: progress bars
//! and colour only when stderr is a terminal, `NO_COLOR` is unset and
//! `TERM` is not `dumb` (a redrawn bar moves the cursor with escape
//! sequences, so `NO_COLOR` turns bars off too); nothing extra otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::HostEnv;

/// What this terminal gets.
#[derive(Debug, Clone, Copy)]
pub struct Feedback {
    /// Progress bars and spinners on stderr.
    pub bars: bool,
    /// ANSI colours in log lines.
    pub color: bool,
}

impl Feedback {
    pub fn from_env(env: &HostEnv) -> Feedback {
        let plain = env.nonempty("NO_COLOR").is_some() || env.var("TERM") == Some("dumb");
        let on = std::io::stderr().is_terminal() && !plain;
        Feedback {
            bars: on,
            color: on,
        }
    }

    /// A bar over `total` bytes (hidden unless bars are on).
    pub fn bytes(&self, what: &str, total: u64) -> ProgressBar {
        let pb = self.new_bar((total > 0).then_some(total));
        pb.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:25}] {binary_bytes}/{binary_total_bytes}, {eta} left",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        pb.set_message(what.to_string());
        pb
    }

    /// A spinner with the elapsed time, for work whose size is not known
    /// here (the daemon does it, or it is one step).
    pub fn spinner(&self, what: &str) -> ProgressBar {
        let pb = self.new_bar(None);
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .expect("valid template")
                .tick_chars("|/-\\ "),
        );
        pb.set_message(what.to_string());
        if self.bars {
            pb.enable_steady_tick(Duration::from_millis(120));
        }
        pb
    }

    fn new_bar(&self, total: Option<u64>) -> ProgressBar {
        let target = if self.bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        ProgressBar::with_draw_target(total, target)
    }
}
