//! [`Directory`]: the offsite [`Backend`] on a directory — a NAS mount, an
//! external disk (`url = "file:///mnt/nas/ducksnap"`). Objects are plain
//! files named as on S3 (`packs/<name>`, `snapshots/<name>`, the marker).
//!
//! A file is written whole under a fresh name in `.partial/`, flushed to
//! the disk, then published in one atomic step and its directory flushed:
//! a crash leaves no file or the whole file under the name, never a part.
//! "Create only if absent" (what S3 gets from conditional writes) is
//! `renameat2(RENAME_NOREPLACE)`, or a hard link where the file system
//! lacks that flag (NFS); the one replaced object is a plain `rename`.
//! What was staged by a process that died is swept after a day.
//!
//! Symbolic links under the directory are never followed: one planted at
//! an object's name reads as damage, not as the file it points to. The
//! directory itself must exist — ducksnap never creates it, so that an
//! unmounted disk (an empty mount point) fails loudly instead of filling
//! the local disk.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use super::OffsiteError;
use super::backend::{Backend, Listed};

/// Where files are staged before they are published.
pub const PARTIAL: &str = ".partial";

/// How old a staged file must be before a later process removes it (no
/// upload of one object takes a day).
const STALE: Duration = Duration::from_secs(24 * 3600);

/// A directory opened as the offsite remote.
pub struct Directory {
    root: PathBuf,
    url: String,
    conditional: bool,
}

impl Directory {
    /// Opens `root` (which must be an existing directory) and sweeps stale
    /// staged files.
    pub fn open(root: &Path, url: &str, conditional: bool) -> Result<Directory, OffsiteError> {
        match std::fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(OffsiteError::Setup {
                    what: "offsite.url".into(),
                    reason: format!("{} is not a directory", root.display()),
                });
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(OffsiteError::NoDirectory(root.to_path_buf()));
            }
            Err(e) => {
                return Err(OffsiteError::Remote {
                    op: "open",
                    object: url.to_string(),
                    reason: e.to_string(),
                });
            }
        }
        let d = Directory {
            root: root.to_path_buf(),
            url: url.to_string(),
            conditional,
        };
        d.sweep();
        Ok(d)
    }

    /// The file of object `name`; names are ducksnap's own, but one that
    /// could leave the directory or reach the staging area is refused.
    fn path(&self, name: &str) -> Result<PathBuf, OffsiteError> {
        let plain = !name.is_empty()
            && name
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..")
            && name.split('/').next() != Some(PARTIAL);
        if !plain {
            return Err(OffsiteError::Layout(format!(
                "{name:?} is not an object name"
            )));
        }
        Ok(self.root.join(name))
    }

    fn err(&self, op: &'static str, name: &str, e: impl std::fmt::Display) -> OffsiteError {
        OffsiteError::Remote {
            op,
            object: format!("{}/{name}", self.url.trim_end_matches('/')),
            reason: e.to_string(),
        }
    }

    /// `bytes` written and flushed under a fresh name in [`PARTIAL`].
    fn stage(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, OffsiteError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = self.root.join(PARTIAL);
        make_dir(&self.root, &dir).map_err(|e| self.err("upload", name, e))?;
        let write = |tmp: &Path| -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        };
        loop {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let tmp = dir.join(format!(
                "{}-{nanos}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            match write(&tmp) {
                Ok(()) => return Ok(tmp),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(self.err("upload", name, e));
                }
            }
        }
    }

    /// Moves the staged `tmp` to `name`: only if absent (`replace` false and
    /// the remote conditional), else over what is there. Returns whether
    /// it was new.
    fn publish(&self, tmp: &Path, name: &str, replace: bool) -> Result<bool, OffsiteError> {
        let dest = self.path(name)?;
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        let published = make_dir(&self.root, &parent).and_then(|()| {
            if replace || !self.conditional {
                std::fs::rename(tmp, &dest).map(|()| true)
            } else {
                create_only(tmp, &dest)
            }
        });
        let _ = std::fs::remove_file(tmp);
        let new = published.map_err(|e| self.err("upload", name, e))?;
        sync_dir(&parent).map_err(|e| self.err("upload", name, e))?;
        Ok(new)
    }

    /// Removes staged files older than [`STALE`] (a best effort).
    fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(self.root.join(PARTIAL)) else {
            return;
        };
        let now = SystemTime::now();
        for e in entries.flatten() {
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE));
            if stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Publishes `tmp` as `dest` unless `dest` exists: `RENAME_NOREPLACE`, or
/// a hard link where the file system does not know the flag. `Ok(false)`
/// when `dest` existed.
fn create_only(tmp: &Path, dest: &Path) -> std::io::Result<bool> {
    match renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            match std::fs::hard_link(tmp, dest) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "this file system can neither rename without replacing nor hard-link ({e}): a file cannot be created there only if absent"
                    ),
                )),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates `dir` (a directory under `root`) when absent, and flushes its
/// parent so that the new entry survives a crash. A symlink or a file in
/// its place is refused.
fn make_dir(root: &Path, dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(up) = dir.parent()
        && up != root
    {
        make_dir(root, up)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(dir.parent().unwrap_or(root)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What is at an object's name, read: its bytes, nothing, or something
/// that is not an object (why).
enum Read {
    Bytes(Vec<u8>),
    Missing,
    NotAnObject(&'static str),
}

/// Reads the regular file at `path` without following a symlink there, and
/// without opening anything else (a FIFO would block, a device could act).
fn read_plain(path: &Path) -> std::io::Result<Read> {
    let kind = |m: &std::fs::Metadata| {
        let t = m.file_type();
        if t.is_file() {
            None
        } else if t.is_symlink() {
            Some("a symbolic link, not an object")
        } else if t.is_dir() {
            Some("a directory, not an object")
        } else {
            Some("a device, FIFO or socket, not an object")
        }
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            if let Some(why) = kind(&m) {
                return Ok(Read::NotAnObject(why));
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Read::Missing),
        Err(e) => return Err(e),
    }
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let mut f = match OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Read::Missing),
        Err(e) if e.raw_os_error() == Some(Errno::ELOOP as i32) => {
            return Ok(Read::NotAnObject("a symbolic link, not an object"));
        }
        Err(e) => return Err(e),
    };
    // Swapped between the look and the open.
    if let Some(why) = kind(&f.metadata()?) {
        return Ok(Read::NotAnObject(why));
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut out)?;
    Ok(Read::Bytes(out))
}

impl Backend for Directory {
    fn url(&self) -> &str {
        &self.url
    }

    fn conditional(&self) -> bool {
        self.conditional
    }

    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<bool, OffsiteError> {
        self.path(name)?;
        let tmp = self.stage(name, &bytes)?;
        self.publish(&tmp, name, false)
    }

    fn put_overwrite(&self, name: &str, bytes: Vec<u8>) -> Result<(), OffsiteError> {
        self.path(name)?;
        let tmp = self.stage(name, &bytes)?;
        self.publish(&tmp, name, true).map(drop)
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, OffsiteError> {
        match read_plain(&self.path(name)?) {
            Ok(Read::Bytes(b)) => Ok(Some(b)),
            Ok(Read::Missing) => Ok(None),
            Ok(Read::NotAnObject(why)) => Err(OffsiteError::NotAnObject {
                object: format!("{}/{name}", self.url.trim_end_matches('/')),
                reason: why.into(),
            }),
            Err(e) => Err(self.err("download", name, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>, OffsiteError> {
        let base = self.path(dir)?;
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound && d == base => break,
                Err(e) => return Err(self.err("list", dir, e)),
            };
            for e in entries {
                let e = e.map_err(|e| self.err("list", dir, e))?;
                let m = e.metadata().map_err(|err| self.err("list", dir, err))?;
                if m.is_dir() {
                    stack.push(e.path());
                    continue;
                }
                let path = e.path();
                let name = path.strip_prefix(&base).unwrap_or(&path);
                out.push(Listed {
                    name: name.to_string_lossy().into_owned(),
                    size: m.len(),
                    modified: chrono::DateTime::from_timestamp(m.mtime(), 0).unwrap_or_default(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<(), OffsiteError> {
        let path = self.path(name)?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => Err(self.err("delete", name, "a directory, not an object")),
            Ok(_) => {
                std::fs::remove_file(&path).map_err(|e| self.err("delete", name, e))?;
                sync_dir(path.parent().unwrap_or(&self.root))
                    .map_err(|e| self.err("delete", name, e))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", name, e)),
        }
    }
}
