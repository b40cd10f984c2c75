//! The chain: a thread that reads the block map of every database header
//! DuckDB writes, so that a capture many checkpoints after its mirror's
//! still knows every block that can have been written since
//! (docs/ARCHITECTURE.md, "Which blocks a checkpoint can change": the free
//! list of every header in between says it, headers N and N+k alone do
//! not).
//!
//! Woken by inotify on every write to the database file (no polling), the
//! thread reads the 12 KiB header region; when the iteration is new it
//! reads that header's block map (checksum-checked, the header read again
//! after it) and records its [`Marks`]. The iterations it holds are
//! consecutive: a header it did not see — two checkpoints between two of
//! its reads — drops everything before it, and a capture that needed those
//! headers reads the whole database outside its window instead (the
//! prime). Captures feed the headers they read themselves into the same
//! record, and a daemon keeps one chain per database running
//! ([`follow`]), so that its captures never need a prime.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use crate::database::blocks::BlockMap;
use crate::database::duckfile::Header;

/// The blocks one header says a checkpoint or a bulk insert may write
/// while it is the active one: its free blocks, its metadata blocks
/// (rewritten in place, rule 6) and every block from its block count on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    pub iteration: u64,
    pub block_size: u64,
    pub count: u64,
    pub blocks: BTreeSet<u64>,
}

impl Marks {
    pub fn of(map: &BlockMap) -> Marks {
        let mut blocks = map.free.clone();
        blocks.extend(map.metadata.keys().copied());
        Marks {
            iteration: map.iteration,
            block_size: map.block_size,
            count: map.block_count,
            blocks,
        }
    }
}

/// The union of the marks of a run of headers: every block that can differ
/// between the first of them and the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// Every block from here on.
    pub from: u64,
    pub blocks: BTreeSet<u64>,
}

impl Changed {
    pub fn new() -> Changed {
        Changed {
            from: u64::MAX,
            blocks: BTreeSet::new(),
        }
    }

    pub fn add(&mut self, m: &Marks) {
        self.from = self.from.min(m.count);
        self.blocks
            .extend(m.blocks.iter().copied().filter(|&b| b < m.count));
    }

    pub fn contains(&self, b: u64) -> bool {
        b >= self.from || self.blocks.contains(&b)
    }
}

impl Default for Changed {
    fn default() -> Self {
        Changed::new()
    }
}

/// What the chain has seen of one database file (device and inode).
#[derive(Debug, Default)]
struct State {
    /// The thread is watching (inotify works): without it only the
    /// headers captures read themselves are recorded.
    following: bool,
    file: Option<(u64, u64)>,
    /// Consecutive iterations, each with its marks.
    seen: BTreeMap<u64, Marks>,
    /// Headers missed so far (each dropped the record before it).
    gaps: u64,
}

impl State {
    fn push(&mut self, file: (u64, u64), m: Marks) {
        let same_layout = self
            .seen
            .values()
            .next()
            .is_none_or(|first| first.block_size == m.block_size);
        if self.file != Some(file) || !same_layout {
            self.file = Some(file);
            self.seen.clear();
        }
        let (first, last) = match (self.seen.keys().next(), self.seen.keys().next_back()) {
            (Some(&f), Some(&l)) => (f, l),
            _ => {
                self.seen.insert(m.iteration, m);
                return;
            }
        };
        let it = m.iteration;
        if (first..=last).contains(&it) {
            return;
        }
        if it == last + 1 || it + 1 == first {
            self.seen.insert(it, m);
        } else if it > last {
            tracing::debug!(
                event = "capture.chain_gap",
                last,
                now = it,
                "a database header was not seen; the chain starts again"
            );
            self.gaps += 1;
            self.seen.clear();
            self.seen.insert(it, m);
        }
    }
}

/// A running chain for one database path; stopped when dropped.
pub struct Chain {
    db: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl Chain {
    /// Starts following `db` (which need not exist yet).
    pub fn start(db: &Path) -> std::io::Result<Chain> {
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, wake) = UnixStream::pair()?;
        let (path, shared) = (db.to_path_buf(), state.clone());
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("ducksnap-chain".into())
            .spawn(move || watch::run(&path, &shared, &wake, ready))?;
        // Watching, and the current header read (or the thread gave up).
        let _ = started.recv();
        Ok(Chain {
            db: db.to_path_buf(),
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Records a header's block map read by someone else (a capture), of
    /// the file with device and inode `file`.
    pub fn observe(&self, file: (u64, u64), map: &BlockMap) {
        lock(&self.state).push(file, Marks::of(map));
    }

    /// The marks of every header from `first` to `last` of the file
    /// `file`, when the chain saw each of them; an empty run is `Some`.
    pub fn between(&self, file: (u64, u64), first: u64, last: u64) -> Option<Vec<Marks>> {
        if first > last {
            return Some(Vec::new());
        }
        let s = lock(&self.state);
        if s.file != Some(file) {
            return None;
        }
        let run: Vec<Marks> = s.seen.range(first..=last).map(|(_, m)| m.clone()).collect();
        (run.len() as u64 == last - first + 1).then_some(run)
    }

    /// Forgets the headers before `iteration` (a capture of it is stored).
    pub fn keep_from(&self, iteration: u64) {
        let mut s = lock(&self.state);
        s.seen = s.seen.split_off(&iteration);
    }

    /// Whether the thread follows the file (it could watch it).
    pub fn following(&self) -> bool {
        lock(&self.state).following
    }

    /// Headers missed since the chain started.
    pub fn gaps(&self) -> u64 {
        lock(&self.state).gaps
    }

    pub fn path(&self) -> &Path {
        &self.db
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // Closing our end wakes the thread (its end hangs up).
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The chains daemons keep running, by database path.
static FOLLOWED: Mutex<Vec<(PathBuf, Weak<Chain>)>> = Mutex::new(Vec::new());

/// Starts a chain for `db` that captures of `db` in this process use for as
/// long as the returned handle lives (a daemon keeps it).
pub fn follow(db: &Path) -> std::io::Result<Arc<Chain>> {
    if let Some(c) = followed(db) {
        return Ok(c);
    }
    let c = Arc::new(Chain::start(db)?);
    let mut f = FOLLOWED.lock().unwrap_or_else(|e| e.into_inner());
    f.retain(|(_, w)| w.strong_count() > 0);
    f.push((db.to_path_buf(), Arc::downgrade(&c)));
    Ok(c)
}

/// The chain someone in this process keeps for `db`, if any.
pub fn followed(db: &Path) -> Option<Arc<Chain>> {
    let f = FOLLOWED.lock().unwrap_or_else(|e| e.into_inner());
    f.iter()
        .filter(|(p, _)| p == db)
        .find_map(|(_, w)| w.upgrade())
}

/// Reads the block map of the active header of `file`, checked: the
/// header is read again after the map and must not have moved. A map
/// caught while a checkpoint rewrites a metadata block fails its checksum:
/// it is read again, a bounded number of times.
pub fn read_settled(file: &File, path: &Path) -> Option<BlockMap> {
    for _ in 0..200 {
        match BlockMap::read(file, path) {
            Ok(map) => match Header::read_at(file, path) {
                Ok(h) if h.iteration == map.iteration => return Some(map),
                Ok(_) => continue,
                Err(_) => return None,
            },
            Err(crate::database::blocks::BlockMapError::Malformed { .. }) => {
                std::thread::yield_now();
            }
            Err(_) => return None,
        }
    }
    None
}

/// Device and inode of an open file.
pub fn identity(file: &File) -> std::io::Result<(u64, u64)> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

mod watch {
    //! The chain's thread: inotify on the database file (writes, link
    //! count) and on its directory (the file created or replaced).

    use std::ffi::OsStr;
    use std::fs::File;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::sync::Mutex;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

    use super::{Marks, State, identity, lock, read_settled};
    use crate::database::duckfile::Header;

    struct Followed {
        file: File,
        id: (u64, u64),
        watch: WatchDescriptor,
        /// The iteration last read from this file.
        last: Option<u64>,
    }

    pub(super) fn run(
        db: &Path,
        state: &Mutex<State>,
        wake: &UnixStream,
        ready: std::sync::mpsc::SyncSender<()>,
    ) {
        let mut ready = Some(ready);
        let Ok(ino) = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) else {
            tracing::debug!(
                event = "capture.no_inotify",
                "cannot follow the database's headers"
            );
            return;
        };
        let dir = db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = db.file_name().unwrap_or(OsStr::new(""));
        let _ = ino.add_watch(
            dir,
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_DELETE,
        );
        let mut followed = open(&ino, db);
        lock(state).following = true;
        // Whatever ends the loop, the chain is no longer followed.
        struct Stopped<'a>(&'a Mutex<State>);
        impl Drop for Stopped<'_> {
            fn drop(&mut self) {
                lock(self.0).following = false;
            }
        }
        let _stopped = Stopped(state);
        loop {
            if let Some(f) = followed.as_mut() {
                read_new_header(db, f, state);
            }
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            let mut fds = [
                PollFd::new(ino.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
            if fds[1].any().unwrap_or(true) {
                return;
            }
            let events = ino.read_events().unwrap_or_default();
            let renamed = events.iter().any(|e| {
                e.name.as_deref() == Some(name) || e.mask.contains(AddWatchFlags::IN_ATTRIB)
            });
            if renamed && !still_the_file(db, followed.as_ref()) {
                if let Some(f) = followed.take() {
                    let _ = ino.rm_watch(f.watch);
                }
                followed = open(&ino, db);
            }
        }
    }

    fn open(ino: &Inotify, db: &Path) -> Option<Followed> {
        let file = File::open(db).ok()?;
        let id = identity(&file).ok()?;
        let watch = ino
            .add_watch(db, AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_ATTRIB)
            .ok()?;
        Some(Followed {
            file,
            id,
            watch,
            last: None,
        })
    }

    fn still_the_file(db: &Path, f: Option<&Followed>) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(db), f) {
            (Ok(m), Some(f)) => (m.dev(), m.ino()) == f.id,
            (Err(_), None) => true,
            _ => false,
        }
    }

    fn read_new_header(db: &Path, f: &mut Followed, state: &Mutex<State>) {
        let Ok(h) = Header::read_at(&f.file, db) else {
            return;
        };
        if f.last == Some(h.iteration) {
            return;
        }
        // A map that cannot be read is not asked for again at this
        // iteration: the next header then starts the chain again.
        f.last = Some(h.iteration);
        if let Some(map) = read_settled(&f.file, db) {
            f.last = Some(map.iteration);
            lock(state).push(f.id, Marks::of(&map));
        }
    }
}
