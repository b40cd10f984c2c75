//! Which file is the database: the real path behind a configured or given
//! one (through `..`, relative spellings and symbolic links, as the kernel
//! resolves them when the app opens it), and whether another path names the
//! database or one of its side files — by path or by device and inode.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::database::duckfile;

/// The real path of `p`: `p` with every link and `..` resolved when it
/// exists; otherwise its directory's real path joined with its name. A link
/// to a file that does not exist is an error (writing there would replace
/// the link, not create the file it names).
pub fn real_path(p: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    match fs::canonicalize(&abs) {
        Ok(r) => Ok(r),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(&abs).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} is a link to a file that does not exist", abs.display()),
                ));
            }
            let name = abs.file_name().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "path has no file name")
            })?;
            let dir = abs.parent().unwrap_or(Path::new("/"));
            Ok(fs::canonicalize(dir)?.join(name))
        }
        Err(e) => Err(e),
    }
}

/// The first path of `to`'s file set (the file and its side files) that is
/// the database `db` or one of its side files, by real path or, for files
/// that exist, by device and inode (hard links). `db` and `to` are real
/// paths ([`real_path`]).
pub fn clash(db: &Path, to: &Path) -> Option<PathBuf> {
    let ours = duckfile::all_paths(db);
    let theirs = duckfile::all_paths(to);
    if let Some(t) = theirs.iter().find(|t| ours.contains(t)) {
        return Some(t.clone());
    }
    let id = |p: &PathBuf| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let ids: Vec<(u64, u64)> = ours.iter().filter_map(id).collect();
    theirs
        .iter()
        .find(|t| id(t).is_some_and(|i| ids.contains(&i)))
        .cloned()
}

/// Whether `given` names the same database file as `ours` (the configured
/// path): the same real path, or the same device and inode (a hard link).
/// Paths that are not files (`md:…`) compare as strings.
pub fn same_database(ours: &Path, given: &Path) -> bool {
    if ours == given {
        return true;
    }
    match (real_path(ours), real_path(given)) {
        (Ok(a), Ok(b)) if a == b => return true,
        _ => {}
    }
    let id = |p: &Path| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    matches!((id(ours), id(given)), (Some(a), Some(b)) if a == b)
}
