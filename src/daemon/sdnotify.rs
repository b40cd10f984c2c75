//! systemd's notify protocol: `READY=1`, `STATUS=…`, `RELOADING=1` with
//! `MONOTONIC_USEC`, `STOPPING=1`, `WATCHDOG=1`, sent as datagrams to
//! `$NOTIFY_SOCKET` (a path, or an abstract name starting with `@`). Without
//! `NOTIFY_SOCKET` every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::HostEnv;

#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC` (honoured only when
    /// `WATCHDOG_PID` is unset or ours).
    pub fn from_env(env: &HostEnv) -> Notifier {
        let target = env.nonempty("NOTIFY_SOCKET").map(str::to_string);
        let pid_ok = env
            .var("WATCHDOG_PID")
            .map(|p| p == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = env
            .nonempty("WATCHDOG_USEC")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0 && pid_ok)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// The interval at which to send `WATCHDOG=1` (half of `WatchdogSec`).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Sends one message without blocking; failures (a full queue, no
    /// listener) are logged, never fatal.
    pub fn send(&self, msg: &str) {
        let Some(target) = &self.target else { return };
        let result = (|| -> std::io::Result<()> {
            let sock = UnixDatagram::unbound()?;
            // Never wait for a reader: a full queue drops this message
            // instead of stalling the daemon.
            sock.set_nonblocking(true)?;
            if let Some(name) = target.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                sock.send_to_addr(msg.as_bytes(), &addr)?;
            } else {
                sock.send_to(msg.as_bytes(), PathBuf::from(target))?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(event = "systemd.notify_failed", error = %e, "could not notify systemd");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn reloading(&self) {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
            .unwrap_or(0);
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}
