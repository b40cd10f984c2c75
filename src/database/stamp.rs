//! A file's identity and last change as `stat` reports them: inode, device,
//! size, mtime and ctime to the nanosecond (ctime moves on every write and
//! attribute change and, unlike mtime, cannot be set back by anyone). Capture compares the database's stamp
//! before and after a copy (and its inode and device with the path's, to
//! see a file replaced); the daemon's scheduler compares the database's and
//! WAL's stamps with those of its last snapshot to skip an unchanged
//! database. Equal stamps mean "probably unchanged", not proof: a write
//! that keeps the size within the file system's mtime granularity leaves
//! the stamp as it was (capture therefore also checks the header's
//! iteration).

use std::fs;
use std::os::unix::fs::MetadataExt;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Stamp {
    pub ino: u64,
    pub dev: u64,
    pub size: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    pub fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            ino: m.ino(),
            dev: m.dev(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Whether both stamps are of the same file (inode and device), changed
    /// or not.
    pub fn same_file(&self, other: &Stamp) -> bool {
        self.ino == other.ino && self.dev == other.dev
    }
}
