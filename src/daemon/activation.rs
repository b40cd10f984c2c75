//! systemd socket activation: taking over the listening socket systemd
//! passes as file descriptor 3 (`LISTEN_FDS`, `LISTEN_PID`).
//!
//! One of the two modules that allow `unsafe` (see `lib.rs`): adopting an inherited descriptor by
//! number cannot be expressed safely. It is sound because the descriptor is
//! only adopted when systemd's protocol says it is ours (`LISTEN_PID` is this
//! process, `LISTEN_FDS` ≥ 1), `stat` of `/proc/self/fd/3` confirms it is an open socket, and it
//! is adopted exactly once (the variables are consumed by the caller and the
//! function is only called at start-up).

#![allow(unsafe_code)] // see the header: why it is sound here

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;

use crate::config::HostEnv;

/// The first descriptor systemd passes.
const SD_LISTEN_FDS_START: RawFd = 3;

/// The listener systemd passed us, if any.
pub fn inherited_listener(env: &HostEnv) -> std::io::Result<Option<UnixListener>> {
    let ours =
        env.var("LISTEN_PID").and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count = env
        .var("LISTEN_FDS")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    if !ours || count == 0 {
        return Ok(None);
    }
    // stat through /proc: true only for an open descriptor that is a socket.
    let is_socket = std::fs::metadata(format!("/proc/self/fd/{SD_LISTEN_FDS_START}"))
        .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        .unwrap_or(false);
    if !is_socket {
        return Err(std::io::Error::other(
            "LISTEN_FDS is set but descriptor 3 is not an open socket",
        ));
    }
    // SAFETY: systemd's protocol hands descriptor 3 to this process (checked
    // above via LISTEN_PID), stat shows it is an open socket, and nothing
    // else in the process owns it: it is adopted once, here, at start-up.
    let listener = unsafe { UnixListener::from_raw_fd(SD_LISTEN_FDS_START) };
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}
