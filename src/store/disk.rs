//! Small file-system helpers of the store: private directories and files,
//! tightened modes, unique temporary names, removing leftovers, directory
//! fsync, the number of workers, and full positional reads.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use crate::id::SnapshotId;

use super::error::{Result, io_err};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// When ducksnap runs as root in a directory that belongs to someone else
/// (a `sudo ducksnap restore` in a user's project), the owner of the
/// directory an entry is created in, to give it to: otherwise the user's
/// own daemon could not read the chunks, manifests and locks root left in
/// their store. `None`: not root, or the directory is root's.
fn owner_for(p: &Path) -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty())?;
    let m = fs::metadata(dir).ok()?;
    (m.uid() != 0).then_some((m.uid(), m.gid()))
}

/// Gives the new file `f` at `p` to [`owner_for`] `p`, if anyone.
fn adopt_file(f: File, p: &Path) -> io::Result<File> {
    if let Some((uid, gid)) = owner_for(p) {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    }
    Ok(f)
}

/// Creates a directory (and missing parents) only its owner can enter;
/// as root, each one created is given to its parent's owner ([`owner_for`]).
pub(crate) fn create_private_dir(p: &Path) -> io::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return fs::DirBuilder::new().recursive(true).mode(0o700).create(p);
    }
    let missing: Vec<&Path> = p
        .ancestors()
        .take_while(|a| fs::symlink_metadata(a).is_err())
        .collect();
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        if let Some((uid, gid)) = owner_for(d) {
            std::os::unix::fs::lchown(d, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// Creates (or truncates) a file only its owner can read (as root, given
/// to the directory's owner: [`owner_for`]). Never follows a link at `p`.
pub(crate) fn create_private_file(p: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(p)?;
    adopt_file(f, p)
}

/// Opens a file that is only ever locked, not written: [`open_private`].
pub fn open_lock_file(p: &Path) -> io::Result<File> {
    open_private(p)
}

/// Opens a file for reading and writing, creating it private if missing,
/// never truncating it (as root, a new one is given to the directory's
/// owner: [`owner_for`]). Never follows a link at `p`.
pub fn open_private(p: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(p)?;
    adopt_file(f, p)
}

/// A store made by an older ducksnap (or copied with `cp -r`) may be
/// readable by other users: its chunks are the database. When the store's
/// directory admits anyone but its owner, every directory in it becomes
/// 0700 and every file 0600 (links are neither followed nor changed; they
/// are reported by the operations that meet them). One log line says so.
pub(super) fn tighten_modes(root: &Path) -> Result<()> {
    // The store's own path may be a link the user made (a store on another
    // disk): that one is followed, nothing inside it is.
    let root = &fs::canonicalize(root).map_err(io_err("resolve", root))?;
    let mode = fs::symlink_metadata(root)
        .map_err(io_err("stat", root))?
        .permissions()
        .mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    fn walk(p: &Path, changed: &mut usize) -> Result<()> {
        let m = fs::symlink_metadata(p).map_err(io_err("stat", p))?;
        let want = if m.is_dir() {
            0o700
        } else if m.is_file() {
            0o600
        } else {
            return Ok(());
        };
        if m.permissions().mode() & 0o7777 != want {
            fs::set_permissions(p, fs::Permissions::from_mode(want))
                .map_err(io_err("restrict the mode of", p))?;
            *changed += 1;
        }
        if m.is_dir() {
            for e in fs::read_dir(p).map_err(io_err("read directory", p))? {
                walk(&e.map_err(io_err("read directory", p))?.path(), changed)?;
            }
        }
        Ok(())
    }
    let mut changed = 0;
    walk(root, &mut changed)?;
    tracing::warn!(
        event = "store.modes_tightened",
        store = %root.display(),
        entries = changed,
        "the store was readable by other users; its directories are now 0700 and its files 0600"
    );
    Ok(())
}

/// Removes the entries of `dir` (files, and directories with their
/// contents) that `keep` does not keep — it is given each entry's path and
/// whether it is a directory. Returns how many went; `op` names the removal
/// in errors.
pub(super) fn remove_entries(
    dir: &Path,
    op: &'static str,
    keep: impl Fn(&Path, bool) -> bool,
) -> Result<usize> {
    let mut n = 0;
    for e in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let e = e.map_err(io_err("read directory", dir))?;
        let (p, is_dir) = (e.path(), e.file_type().is_ok_and(|t| t.is_dir()));
        if keep(&p, is_dir) {
            continue;
        }
        let r = if is_dir {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.map_err(io_err(op, &p))?;
        n += 1;
    }
    Ok(n)
}

pub(super) fn tmp_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// fsyncs a directory so a rename in it is durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Reads exactly `buf.len()` bytes at `off`, or fewer at end of file.
/// Newest first: by creation time, then by id.
pub(super) fn sort_newest_first<T>(v: &mut [T], key: impl Fn(&T) -> (&DateTime<Utc>, &SnapshotId)) {
    v.sort_by(|a, b| key(b).cmp(&key(a)));
}

/// Threads that hash, compress and copy chunks: one per core, at most 8.
/// Asked once per process (the answer reads cgroup files).
pub fn workers() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8)
    })
}

pub fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
