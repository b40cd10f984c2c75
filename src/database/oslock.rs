//! Open-file-description (OFD) byte-range locks on whole files.
//!
//! DuckDB locks its database with POSIX `fcntl` locks (`F_WRLCK` for a
//! read-write open, `F_RDLCK` read-only). OFD locks (`F_OFD_SETLK`,
//! `F_OFD_GETLK`) conflict with those, belong to the open file description
//! (so closing another descriptor of the same file does not drop them, unlike
//! POSIX locks) and are released by the kernel when the holder dies. `flock`
//! would not see DuckDB's locks at all.
//!
//! The syscalls go through `nix`'s safe `fcntl` wrapper; this module contains
//! no `unsafe`.

use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

/// Shared (read) or exclusive (write) lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

impl LockKind {
    fn raw(self) -> libc::c_short {
        match self {
            LockKind::Read => libc::F_RDLCK as libc::c_short,
            LockKind::Write => libc::F_WRLCK as libc::c_short,
        }
    }
}

/// A lock that conflicts with the one we asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// The holding process for a POSIX lock (DuckDB's); `None` for an OFD lock.
    pub pid: Option<i32>,
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// Who, if anyone, holds a lock on `file` that would conflict with `kind`.
pub fn conflicting(file: &File, kind: LockKind) -> io::Result<Option<Holder>> {
    let mut fl = whole_file(kind.raw());
    fcntl(file, FcntlArg::F_OFD_GETLK(&mut fl)).map_err(io::Error::from)?;
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    Ok(Some(Holder {
        pid: (fl.l_pid > 0).then_some(fl.l_pid),
    }))
}

/// Tries to take a whole-file lock without waiting. `Ok(false)` when another
/// holder conflicts.
pub fn try_lock(file: &File, kind: LockKind) -> io::Result<bool> {
    let fl = whole_file(kind.raw());
    match fcntl(file, FcntlArg::F_OFD_SETLK(&fl)) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN) | Err(Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Takes a whole-file lock, waiting for conflicting holders to go away.
pub fn lock_wait(file: &File, kind: LockKind) -> io::Result<()> {
    let fl = whole_file(kind.raw());
    loop {
        match fcntl(file, FcntlArg::F_OFD_SETLKW(&fl)) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Releases a lock taken on this file description.
pub fn unlock(file: &File) -> io::Result<()> {
    let fl = whole_file(libc::F_UNLCK as libc::c_short);
    fcntl(file, FcntlArg::F_OFD_SETLK(&fl))
        .map(|_| ())
        .map_err(io::Error::from)
}
