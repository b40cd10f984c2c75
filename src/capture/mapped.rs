//! Read-only memory maps of a database (or WAL) file for a quiescent
//! capture, so that the chunk workers hash the page cache in place instead
//! of copying every byte into a buffer first (the copy was a third of a
//! snapshot's CPU time).
//!
//! Besides [`crate::daemon::activation`], this is the crate's only `unsafe`: viewing
//! a mapping as `&[u8]` is sound only while nobody changes or shortens the
//! file. Capture maps a file only while its OFD read lock keeps every DuckDB
//! writer out (DuckDB's read-write open needs a write lock the read lock
//! refuses, and only the writer holding that lock writes the WAL), and
//! restore's exclusive lock waits for ours. An online capture, where a writer
//! may checkpoint and truncate the live file at any moment, never maps it:
//! it maps only its own staged copy, a file in the store's staging area
//! that this process created and that nothing else writes (staging belongs
//! to the holder of the store lock). A
//! program that ignores DuckDB's locks and truncates the file during a
//! quiescent capture would get the process killed by `SIGBUS`; like any
//! crash, that leaves the store as it was (the chunks written so far are in
//! staging, which the next operation clears).

#![allow(unsafe_code)] // see the header: why it is sound here

use std::fs::File;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mmap, munmap};

/// A read-only, shared mapping of the first `len` bytes of a file.
pub struct Mapped {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value; reading it from
// several threads at once is like reading any shared `&[u8]`.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first `len` bytes of `file` (`None` for an empty file).
    /// The caller must keep every writer out of `file` until the mapping is
    /// dropped (see the module documentation).
    pub fn map(file: &File, len: u64) -> std::io::Result<Option<Mapped>> {
        let Some(length) = usize::try_from(len).ok().and_then(NonZeroUsize::new) else {
            return Ok(None);
        };
        // SAFETY: a fresh read-only mapping at an address the kernel picks
        // aliases no Rust object; the file's bytes stay unchanged while the
        // caller's lock is held (module documentation).
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                file,
                0,
            )
        }?;
        // Advice only: a failure changes nothing but read-ahead.
        // SAFETY: the range is exactly the mapping just created.
        let _ = unsafe { madvise(ptr, length.get(), MmapAdvise::MADV_SEQUENTIAL) };
        Ok(Some(Mapped {
            ptr: ptr.cast(),
            len: length.get(),
        }))
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` readable bytes for as long as `self`
        // lives, and nothing writes them (module documentation).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns; no slice from
        // `bytes` outlives `self`.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}
