//! The archive on disk, inside the store, apart from the snapshots' chunks
//! so that archiving never waits for a capture's store lock:
//!
//! ```text
//! <store>/archive/lock                 OFD write lock held while writing
//! <store>/archive/generations/<id>.json.zst one record per WAL generation (zstd JSON)
//! <store>/archive/segments/<generation>-<offset>-<blake3>
//!                                       WAL bytes: tag (0 raw, 1 zstd) + payload
//! <store>/archive/pages/<generation>-<first>-<blake3>
//!                                       sealed commit boundaries (zstd JSON)
//! <store>/archive/head                 the newest record's id (JSON)
//! <store>/archive/tombstones/<id>.json what prune left of a record it removed
//! ```
//!
//! The records form one hash-linked chain ([`super::chain`]): a record
//! written for the first time links to the one `head` names, then `head`
//! names it.
//!
//! Every file is written under a temporary name in `archive/`, fsynced,
//! renamed and the directory fsynced; a segment or page is durable before a
//! record names it, so a crash at any instant leaves every recorded
//! boundary readable (plus unreferenced files, removed by
//! [`Archive::collect`]). A record is rewritten at every pass; segments
//! and pages never change once named, and a record names at most
//! [`PAGE_COMMITS`] boundaries itself, so a pass costs what it archives,
//! not what the generation holds.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::database::oslock::{self, LockKind};
use crate::id::SnapshotId;
use crate::store::{Store, StoreError, create_private_dir, create_private_file, fsync_dir};

use super::chain::{self, Tombstone};
use super::record::{CommitMark, CommitPage, Generation, Link, MAX_SEGMENT, PAGE_COMMITS, Segment};

type Result<T> = std::result::Result<T, StoreError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The archive of one store.
#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
    level: i32,
}

/// Held while writing the archive.
#[derive(Debug)]
pub struct ArchiveLock {
    _file: File,
}

/// A record that cannot be trusted, by file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub file: String,
    pub reason: String,
    /// The base snapshots it names, when the record itself was read and
    /// only one of its pages failed; `None`: unknown (whatever snapshot
    /// it may name must be kept).
    pub bases: Option<Vec<SnapshotId>>,
    /// No such file: the chain names a record that is not there (or the
    /// head or a tombstone does not read). Nothing is left to keep from
    /// collection but the segments and pages named after it.
    pub absent: bool,
}

/// The head file's body.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    id: SnapshotId,
}

impl Archive {
    /// The archive of `store`, whether or not anything was archived yet.
    pub fn of(store: &Store, level: i32) -> Archive {
        Archive {
            root: store.root().join("archive"),
            level,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether anything was ever archived here.
    pub fn exists(&self) -> bool {
        self.root.join("generations").is_dir()
    }

    /// Creates the directories (private; a link in their place is refused).
    pub fn create(&self) -> Result<()> {
        for p in [
            self.root.clone(),
            self.root.join("generations"),
            self.root.join("segments"),
            self.root.join("pages"),
            self.root.join("tombstones"),
        ] {
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => return Err(StoreError::Link { path: p }),
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(StoreError::Format {
                        path: p.clone(),
                        reason: "is not a directory".into(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_private_dir(&p).map_err(io_err("create directory", &p))?
                }
                Err(e) => return Err(io_err("stat", &p)(e)),
            }
        }
        Ok(())
    }

    /// Takes the archive's write lock, waiting for another holder.
    pub fn lock(&self) -> Result<ArchiveLock> {
        self.create()?;
        let p = self.root.join("lock");
        let f = crate::store::open_lock_file(&p).map_err(io_err("open", &p))?;
        oslock::lock_wait(&f, LockKind::Write).map_err(io_err("lock", &p))?;
        Ok(ArchiveLock { _file: f })
    }

    fn record_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("generations").join(format!("{id}.json.zst"))
    }

    /// A segment's file: named by its generation and offset as well as
    /// its hash, so that no two generations share one and a segment a
    /// generation replaced can be removed at once.
    pub fn segment_path(&self, generation: &SnapshotId, s: &Segment) -> PathBuf {
        self.root
            .join("segments")
            .join(format!("{generation}-{}-{}", s.from, s.hash))
    }

    /// A page's file: named by its generation and the index of its first
    /// boundary as well as its hash.
    fn page_path(&self, generation: &SnapshotId, first: usize, p: &CommitPage) -> PathBuf {
        self.root
            .join("pages")
            .join(format!("{generation}-{first}-{}", p.hash))
    }

    /// Writes `data` as `path` through a temporary name beside it.
    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let tmp = self.root.join(format!(
            "tmp-{}-{}",
            std::process::id(),
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        {
            let mut f = create_private_file(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(data).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("fsync", &tmp))?;
        }
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
        fsync_dir(path.parent().unwrap_or(Path::new(".")))
    }

    /// Stores WAL bytes `[from, from + data.len())` as a segment.
    pub fn put_segment(
        &self,
        _lock: &ArchiveLock,
        generation: &SnapshotId,
        from: u64,
        data: &[u8],
    ) -> Result<Segment> {
        assert!(data.len() as u64 <= MAX_SEGMENT, "segment too long");
        let seg = Segment {
            hash: blake3::hash(data).to_hex().to_string(),
            from,
            to: from + data.len() as u64,
        };
        let path = self.segment_path(generation, &seg);
        if !path.exists() {
            let z = zstd::bulk::compress(data, self.level).map_err(io_err("compress", &path))?;
            let mut body = Vec::with_capacity(z.len().min(data.len()) + 1);
            if z.len() < data.len() {
                body.push(1);
                body.extend_from_slice(&z);
            } else {
                body.push(0);
                body.extend_from_slice(data);
            }
            self.write_atomic(&path, &body)?;
        }
        Ok(seg)
    }

    /// Removes a segment file a generation no longer names (it replaced
    /// it with a longer one); the next collection would otherwise.
    pub fn drop_segment(&self, _lock: &ArchiveLock, generation: &SnapshotId, s: &Segment) {
        let _ = fs::remove_file(self.segment_path(generation, s));
    }

    /// The bytes of segment `s`, checked against its name and length.
    pub fn read_segment(&self, generation: &SnapshotId, s: &Segment) -> Result<Vec<u8>> {
        let path = self.segment_path(generation, s);
        let md = fs::symlink_metadata(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::ChunkMissing {
                hash: format!("archive segment {}", s.hash),
            },
            _ => io_err("stat", &path)(e),
        })?;
        let corrupt = |reason: String| StoreError::ChunkCorrupt {
            hash: format!("archive segment {}", s.hash),
            reason,
        };
        if !md.is_file() {
            return Err(corrupt("not a regular file".into()));
        }
        let raw = fs::read(&path).map_err(io_err("read", &path))?;
        let len = (s.to - s.from) as usize;
        let data = match raw.split_first() {
            Some((0, rest)) => rest.to_vec(),
            Some((1, rest)) => zstd::bulk::decompress(rest, len)
                .map_err(|e| corrupt(format!("does not decompress: {e}")))?,
            _ => return Err(corrupt("unknown tag".into())),
        };
        if data.len() != len {
            return Err(corrupt(format!("holds {} bytes, not {len}", data.len())));
        }
        if blake3::hash(&data).to_hex().as_str() != s.hash {
            return Err(corrupt("its bytes do not match its name".into()));
        }
        Ok(data)
    }

    /// Writes (or replaces) a generation's record: first seals every full
    /// page of boundaries not sealed yet (dropping pages that no longer
    /// match `g.commits`), then the record with the boundaries after them.
    pub fn write_generation(&self, _lock: &ArchiveLock, g: &mut Generation) -> Result<()> {
        let path = self.record_path(&g.id);
        g.trim_pages();
        let mut sealed = g.sealed();
        while g.commits.len() - sealed >= PAGE_COMMITS {
            let marks = &g.commits[sealed..sealed + PAGE_COMMITS];
            let json = serde_json::to_vec(marks).expect("boundaries serialize");
            let page = CommitPage {
                hash: blake3::hash(&json).to_hex().to_string(),
                count: PAGE_COMMITS as u64,
                last_end: marks[PAGE_COMMITS - 1].end,
            };
            let ppath = self.page_path(&g.id, sealed, &page);
            if !ppath.exists() {
                let data = zstd::bulk::compress(&json, 3).map_err(io_err("compress", &ppath))?;
                self.write_atomic(&ppath, &data)?;
            }
            g.pages.push(page);
            sealed += PAGE_COMMITS;
        }
        g.format = super::record::GENERATION_FORMAT;
        // Written for the first time: it follows the newest record (a
        // link set by a write that failed is kept).
        let first = !path.exists();
        if first && g.prev.is_none() {
            g.prev = self.link_to_head(&g.id);
        }
        g.validate().map_err(|reason| StoreError::BadManifest {
            path: path.clone(),
            reason,
        })?;
        // Compressed: the boundaries of a busy generation (one time per
        // commit) are otherwise larger than the WAL bytes they describe.
        let all = std::mem::take(&mut g.commits);
        g.commits = all[sealed..].to_vec();
        let json = serde_json::to_vec(&*g).expect("a record serializes");
        g.commits = all;
        let data = zstd::bulk::compress(&json, 3).map_err(io_err("compress", &path))?;
        self.write_atomic(&path, &data)?;
        if first {
            let head = serde_json::to_vec(&Head { id: g.id.clone() }).expect("a head serializes");
            self.write_atomic(&self.root.join("head"), &head)?;
        }
        Ok(())
    }

    /// The link a record written now for the first time gets: to the
    /// newest record (with its history's hash if it closed, from its
    /// record or its tombstone). `None` when there is none, or the head
    /// does not read (the chain check reports that).
    fn link_to_head(&self, id: &SnapshotId) -> Option<Link> {
        let head = self.head().ok()??;
        if &head == id {
            return None;
        }
        let file = format!("{head}.json.zst");
        let path = self.root.join("generations").join(&file);
        let hash = match self.read_record(&path, &file) {
            Ok(g) => g.closed.is_some().then(|| g.history_hash()),
            Err(_) => self.tombstone(&head).ok().flatten().and_then(|t| t.hash),
        };
        Some(Link { id: head, hash })
    }

    /// The id `archive/head` names (`None`: no head file).
    pub fn head(&self) -> std::result::Result<Option<SnapshotId>, String> {
        let p = self.root.join("head");
        match read_small(&p) {
            Ok(None) => Ok(None),
            Ok(Some(data)) => serde_json::from_slice::<Head>(&data)
                .map(|h| Some(h.id))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        }
    }

    fn tombstone_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("tombstones").join(format!("{id}.json"))
    }

    fn tombstone(&self, id: &SnapshotId) -> std::result::Result<Option<Tombstone>, String> {
        match read_small(&self.tombstone_path(id))? {
            None => Ok(None),
            Some(data) => {
                let t: Tombstone = serde_json::from_slice(&data).map_err(|e| e.to_string())?;
                if &t.id != id {
                    return Err(format!("names generation {} in its body", t.id));
                }
                Ok(Some(t))
            }
        }
    }

    /// The names and paths of what the archive's directory `sub` holds
    /// (nothing when it does not exist).
    fn files_in(&self, sub: &str) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.root.join(sub);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read directory", &dir)(e)),
        };
        entries
            .map(|e| {
                let e = e.map_err(io_err("read directory", &dir))?;
                Ok((e.file_name().to_string_lossy().into_owned(), e.path()))
            })
            .collect()
    }

    /// Every tombstone, and the files that are not one.
    fn tombstones(&self) -> Result<(Vec<Tombstone>, Vec<BadRecord>)> {
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        for (file, _) in self.files_in("tombstones")? {
            let read = file
                .strip_suffix(".json")
                .ok_or_else(|| "not a tombstone (.json) file".to_string())
                .and_then(|id| SnapshotId::parse(id).map_err(|e| e.to_string()))
                .and_then(|id| {
                    self.tombstone(&id)?
                        .ok_or_else(|| "not a regular file".to_string())
                });
            match read {
                Ok(t) => out.push(t),
                Err(reason) => bad.push(BadRecord {
                    file: format!("tombstones/{file}"),
                    reason,
                    bases: Some(Vec::new()),
                    absent: true,
                }),
            }
        }
        Ok((out, bad))
    }

    /// Every generation record, oldest first, and the files that are not
    /// valid records.
    pub fn generations(&self) -> Result<(Vec<Generation>, Vec<BadRecord>)> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for (file, path) in self.files_in("generations")? {
            match self.read_record(&path, &file) {
                Ok(g) => out.push(g),
                Err((reason, bases)) => bad.push(BadRecord {
                    file,
                    reason,
                    bases,
                    absent: false,
                }),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        // The chain: what reading each record alone cannot tell.
        let (tombstones, mut bad_tombstones) = self.tombstones()?;
        bad.append(&mut bad_tombstones);
        let head = self.head().unwrap_or_else(|reason| {
            bad.push(BadRecord {
                file: "head".into(),
                reason,
                bases: Some(Vec::new()),
                absent: true,
            });
            None
        });
        for b in chain::check(&out, &tombstones, head.as_ref()) {
            let file = format!("{}.json.zst", b.id());
            match out.iter().position(|g| g.id == *b.id()) {
                // Its history cannot be trusted: its points are not
                // listed, but the bases it names are kept.
                Some(i) => {
                    let g = out.remove(i);
                    bad.push(BadRecord {
                        file,
                        reason: b.reason(),
                        bases: Some(g.bases.iter().map(|b| b.snapshot.clone()).collect()),
                        absent: false,
                    });
                }
                None if bad.iter().any(|x| x.file == file) => {}
                None => bad.push(BadRecord {
                    file,
                    reason: b.reason(),
                    bases: Some(Vec::new()),
                    absent: true,
                }),
            }
        }
        Ok((out, bad))
    }

    /// The record at `path`, pages and all; or why not, with the bases
    /// it names when the record itself was read.
    fn read_record(
        &self,
        path: &Path,
        file: &str,
    ) -> std::result::Result<Generation, (String, Option<Vec<SnapshotId>>)> {
        let unknown = |e: String| (e, None);
        let id = file
            .strip_suffix(".json.zst")
            .ok_or_else(|| unknown("not a record (.json.zst) file".into()))?;
        let id = SnapshotId::parse(id).map_err(|e| unknown(e.to_string()))?;
        let md = fs::symlink_metadata(path).map_err(|e| unknown(e.to_string()))?;
        if !md.is_file() {
            return Err(unknown("not a regular file".into()));
        }
        let data = fs::read(path).map_err(|e| unknown(e.to_string()))?;
        // A record is at most a few MB of JSON (one line per commit of a
        // WAL that DuckDB checkpoints at 16 MB by default).
        let mut json = Vec::new();
        {
            use std::io::Read;
            zstd::stream::read::Decoder::new(&data[..])
                .map_err(|e| unknown(format!("does not decompress: {e}")))?
                .take(256 << 20)
                .read_to_end(&mut json)
                .map_err(|e| unknown(format!("does not decompress: {e}")))?;
        }
        let mut g: Generation =
            serde_json::from_slice(&json).map_err(|e| unknown(e.to_string()))?;
        if g.id != id {
            return Err(unknown(format!("names generation {} in its body", g.id)));
        }
        let known = |e: String, g: &Generation| {
            (
                e,
                Some(g.bases.iter().map(|b| b.snapshot.clone()).collect()),
            )
        };
        g.check_format().map_err(|e| known(e, &g))?;
        if !g.pages.is_empty() {
            let mut all = Vec::new();
            for p in &g.pages {
                match self.read_page(&g.id, all.len(), p) {
                    Ok(marks) => all.extend(marks),
                    Err(e) => return Err(known(e, &g)),
                }
            }
            all.append(&mut g.commits);
            g.commits = all;
        }
        g.validate().map_err(|e| known(e, &g))?;
        Ok(g)
    }

    /// The boundaries of page `p` (its first is the `first`-th), checked
    /// against its name, count and last boundary.
    fn read_page(
        &self,
        generation: &SnapshotId,
        first: usize,
        p: &CommitPage,
    ) -> std::result::Result<Vec<CommitMark>, String> {
        let path = self.page_path(generation, first, p);
        let what = || format!("page {}-{first}-{}", generation, p.hash);
        let md = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", what()))?;
        if !md.is_file() {
            return Err(format!("{} is not a regular file", what()));
        }
        let data = fs::read(&path).map_err(|e| format!("{}: {e}", what()))?;
        let mut json = Vec::new();
        {
            use std::io::Read;
            zstd::stream::read::Decoder::new(&data[..])
                .map_err(|e| format!("{} does not decompress: {e}", what()))?
                .take(64 << 20)
                .read_to_end(&mut json)
                .map_err(|e| format!("{} does not decompress: {e}", what()))?;
        }
        if blake3::hash(&json).to_hex().as_str() != p.hash {
            return Err(format!("{}: its bytes do not match its name", what()));
        }
        let marks: Vec<CommitMark> =
            serde_json::from_slice(&json).map_err(|e| format!("{}: {e}", what()))?;
        if marks.len() as u64 != p.count || marks.last().map(|c| c.end) != Some(p.last_end) {
            return Err(format!(
                "{} does not hold {} boundaries up to {}",
                what(),
                p.count,
                p.last_end
            ));
        }
        Ok(marks)
    }

    /// The WAL of generation `g` cut at `end`: its bytes `[0, end)`, each
    /// segment checked.
    pub fn wal_prefix(&self, g: &Generation, end: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(end as usize);
        for s in &g.segments {
            if s.from >= end {
                break;
            }
            let data = self.read_segment(&g.id, s)?;
            let take = (end.min(s.to) - s.from) as usize;
            out.extend_from_slice(&data[..take]);
        }
        Ok(out)
    }

    /// Removes segments and pages no record names, and temporary files. Refuses (and
    /// removes nothing) when a record cannot be read.
    pub fn collect(&self, _lock: &ArchiveLock) -> Result<usize> {
        let (gens, bad) = self.generations()?;
        if bad.iter().any(|b| !b.absent) {
            return Err(StoreError::GcRefused {
                manifests: bad
                    .into_iter()
                    .filter(|b| !b.absent)
                    .map(|b| format!("archive/generations/{}", b.file))
                    .collect(),
            });
        }
        let name = |p: PathBuf| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let mut live: BTreeSet<String> = BTreeSet::new();
        // A missing record's segments and pages stay: with them, it can
        // still be rebuilt.
        let missing: Vec<String> = bad
            .iter()
            .filter_map(|b| b.file.strip_suffix(".json.zst"))
            .map(|id| format!("{id}-"))
            .collect();
        for g in &gens {
            live.extend(g.segments.iter().map(|s| name(self.segment_path(&g.id, s))));
            let mut first = 0;
            for p in &g.pages {
                live.insert(name(self.page_path(&g.id, first, p)));
                first += p.count as usize;
            }
        }
        let mut n = 0;
        for dir in [self.root.join("segments"), self.root.join("pages")] {
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !live.contains(&name) && !missing.iter().any(|m| name.starts_with(m)) {
                        fs::remove_file(e.path()).map_err(io_err("remove", &e.path()))?;
                        n += 1;
                    }
                }
            }
        }
        // Tombstones no link and no head names any more.
        let head = self.head().ok().flatten();
        let named: BTreeSet<String> = chain::named(&gens, head.as_ref())
            .map(|id| format!("{id}.json"))
            .collect();
        if let Ok(entries) = fs::read_dir(self.root.join("tombstones")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !named.contains(&name)
                    && !bad.iter().any(|b| b.file == format!("tombstones/{name}"))
                {
                    fs::remove_file(e.path()).map_err(io_err("remove", &e.path()))?;
                }
            }
        }
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("tmp-") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(n)
    }

    /// Removes a generation's record, leaving its tombstone first (its
    /// segments go at the next [`Archive::collect`], and the tombstone
    /// once no record names it).
    pub fn remove_generation(
        &self,
        _lock: &ArchiveLock,
        g: &Generation,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        let t = serde_json::to_vec(&Tombstone::of(g, now)).expect("a tombstone serializes");
        self.write_atomic(&self.tombstone_path(&g.id), &t)?;
        let p = self.record_path(&g.id);
        fs::remove_file(&p).map_err(io_err("remove", &p))?;
        fsync_dir(&self.root.join("generations"))
    }
}

/// A small file's bytes (`None`: no file), refusing a link, a directory
/// or anything over 1 MB.
fn read_small(p: &Path) -> std::result::Result<Option<Vec<u8>>, String> {
    let md = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if !md.is_file() {
        return Err("not a regular file".into());
    }
    if md.len() > 1 << 20 {
        return Err(format!("{} bytes: too long", md.len()));
    }
    fs::read(p).map(Some).map_err(|e| e.to_string())
}
