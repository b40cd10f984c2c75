//! Files ducksnap writes outside its store (`export --to`, `restore --to`):
//! where they may go, and how they are written so that nobody can redirect
//! them.
//!
//! [`target`]: the path resolved; never the configured database by any
//! spelling (unless no file of it exists at all: a fresh machine restoring
//! to the configured path), never inside the store; whatever exists at it
//! or at its side-file names must be a regular file — `--force` replaces
//! files, never a device, a FIFO, a socket or a directory.
//!
//! [`PrivateDir`]: a directory created beside the target with `mkdir`
//! (mode 0700: never follows a link, fails on any existing name), in which
//! everything is written — by ducksnap or by DuckDB, which opens its files
//! without `O_NOFOLLOW` — and from which the result is renamed into place.
//! A link planted at any name in the target's directory is never followed;
//! a `rename` over one replaces the link itself. Leftovers of a process that
//! died are removed by the next one writing into the same directory.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::database::{dbpath, duckfile};
use crate::ops::context::{Ctx, OpError, database_path};

const PREFIX: &str = ".ducksnap-out-";

fn bad(reason: String) -> OpError {
    OpError::InvalidArgument {
        what: "--to",
        reason,
    }
}

/// What exists at `p`, in words, when it is not a regular file.
fn not_regular(p: &Path) -> Option<&'static str> {
    let m = fs::symlink_metadata(p).ok()?;
    let t = m.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// `to` checked and resolved (see the module header). `side_files`: the
/// file's DuckDB side files (`.wal`, …) are written and replaced too.
pub fn target(ctx: &Ctx, to: &Path, force: bool, side_files: bool) -> Result<PathBuf, OpError> {
    let to = dbpath::real_path(to).map_err(|e| bad(format!("{}: {e}", to.display())))?;
    let db = database_path(ctx)?;
    if let Some(p) = dbpath::clash(&db, &to)
        && duckfile::all_paths(&db)
            .iter()
            .any(|f| fs::symlink_metadata(f).is_ok())
    {
        return Err(bad(format!(
            "{} is the configured database {} or one of its files ({}), whatever --force says; restore without --to to replace the database (with a safety snapshot first)",
            to.display(),
            db.display(),
            p.display()
        )));
    }
    if let Ok(store) = fs::canonicalize(&ctx.config.store.dir)
        && to.starts_with(&store)
    {
        return Err(bad(format!(
            "{} is inside the store {}: write it elsewhere",
            to.display(),
            store.display()
        )));
    }
    let paths = if side_files {
        duckfile::all_paths(&to)
    } else {
        vec![to.clone()]
    };
    for p in &paths {
        if let Some(what) = not_regular(p) {
            return Err(bad(format!(
                "{} is {what}: only a regular file is ever replaced, whatever --force says",
                p.display()
            )));
        }
        if fs::symlink_metadata(p).is_ok() && !force {
            return Err(OpError::Exists { path: p.clone() });
        }
    }
    Ok(to)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A private directory beside a target, removed (with what is left in it)
/// on drop.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Creates one in `parent` (the target's directory), after removing
    /// those of processes that are gone.
    pub fn beside(target: &Path) -> Result<PrivateDir, OpError> {
        let parent = target.parent().unwrap_or(Path::new("/"));
        remove_stale(parent);
        let mut builder = fs::DirBuilder::new();
        builder.mode(0o700);
        for _ in 0..16 {
            let mut r = [0u8; 8];
            random(&mut r);
            let name = format!(
                "{PREFIX}{}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                r.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            let path = parent.join(name);
            match builder.create(&path) {
                Ok(()) => return Ok(PrivateDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create directory", &path, e)),
            }
        }
        Err(bad(format!(
            "could not create a private directory in {}: every name tried exists",
            parent.display()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // remove_dir_all never follows links inside.
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn random(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = f.read_exact(buf);
    }
}

/// Removes private directories in `dir` whose process is gone (a crash
/// mid-write). Only real directories owned by this user are touched.
fn remove_stale(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() as i32
            || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        let ours = fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if !alive && ours {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

pub fn io_err(op: &'static str, path: &Path, source: io::Error) -> OpError {
    OpError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
