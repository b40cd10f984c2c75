//! DuckDB's write-ahead log read from outside, as a stream of commits: the
//! header that binds it to one database file and checkpoint iteration, the
//! framed entries and their checksums, and where each commit ends (just
//! past its `WAL_FLUSH` entry). Nothing here opens a file: it reads bytes
//! it is given. docs/ARCHITECTURE.md, "The WAL as a stream of commits",
//! cites DuckDB's source for each rule and the tests that prove them on
//! files written by PyPI's duckdb.

use thiserror::Error;

use super::blocks::checksum;

/// `WALType::WAL_VERSION`: the type of the header's object.
const WAL_VERSION: u64 = 98;
/// `WALType::CHECKPOINT`: a checkpoint began (written to the old WAL).
const CHECKPOINT: u64 = 99;
/// `WALType::WAL_FLUSH`: the end of one commit.
const WAL_FLUSH: u64 = 100;
/// `WALType::ROW_GROUP_DATA`: row groups an optimistic write put into the
/// database file before the commit (the WAL holds where they are).
const ROW_GROUP_DATA: u64 = 29;
/// The field ids the binary serializer writes
/// (`src/common/serializer/binary_serializer.cpp`).
const FIELD_TYPE: u16 = 100;
const FIELD_VERSION: u16 = 101;
const FIELD_DB_IDENTIFIER: u16 = 102;
const FIELD_ITERATION: u16 = 103;
const OBJECT_END: u16 = 0xffff;
/// The plain WAL version with checksummed entries; 3 is encrypted.
const PLAIN: u64 = 2;
const ENCRYPTED: u64 = 3;
/// Bytes before each entry's body: its size and checksum (two u64).
const FRAME: u64 = 16;

/// The unframed header every WAL starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalHeader {
    /// 2: plain entries with checksums; 3: encrypted.
    pub version: u64,
    /// The database file's identifier (main header, bytes 124..140),
    /// written by storage versions 66 and later.
    pub db_identifier: Option<[u8; 16]>,
    /// The checkpoint iteration of the database file it belongs to
    /// (storage 66 and later).
    pub iteration: Option<u64>,
    /// Bytes the header takes: the first entry starts here.
    pub len: u64,
}

/// Why a WAL cannot be read as a stream of commits at all.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum WalError {
    #[error("the WAL is shorter than its header ({0} bytes)")]
    Short(u64),
    #[error("the WAL header does not parse: {0}")]
    Header(String),
    #[error("the WAL is encrypted (version 3): its entries cannot be checked without the key")]
    Encrypted,
    #[error("WAL version {0} is not one this build reads (2, plain)")]
    Version(u64),
}

/// One commit: where the entries that make it up end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// The offset just past its `WAL_FLUSH` entry: a WAL cut here replays
    /// every commit up to and including this one.
    pub end: u64,
    /// Entries read up to and including its flush.
    pub entries: u64,
    /// It holds a `CHECKPOINT` entry: DuckDB began a checkpoint here, not
    /// an app's transaction.
    pub checkpoint: bool,
    /// It holds `ROW_GROUP_DATA` entries: its rows are in blocks of the
    /// database file written before it committed, so only an image of the
    /// file taken after it can replay it.
    pub optimistic: bool,
}

/// How the entries ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte belongs to a whole entry that verified.
    Clean,
    /// A tail that is not a whole entry (fewer than 16 bytes, or a size
    /// running past the end): what DuckDB's replay ignores, as a crash
    /// mid-write leaves it.
    Torn { offset: u64 },
    /// The entry framed at `offset` (its size field), the `index`-th
    /// (0-based), fails its checksum: DuckDB refuses to open the database.
    /// DuckDB's message names `offset + 16`, where its body starts.
    BadChecksum {
        offset: u64,
        index: u64,
        stored: u64,
        computed: u64,
    },
    /// The entry at `offset` verified but does not begin with its type.
    Malformed {
        offset: u64,
        index: u64,
        reason: String,
    },
}

/// Entries walked from one offset on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walked {
    /// Every commit whose flush was read, in order.
    pub commits: Vec<Commit>,
    /// Whole entries that verified.
    pub entries: u64,
    pub end: End,
    /// The offset past the last entry that verified.
    pub read_to: u64,
}

/// A WAL read from its header to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub header: WalHeader,
    /// Its entries, from the header's end.
    pub walked: Walked,
}

impl Scan {
    /// The offset past the last commit (the header's end when none): a
    /// WAL cut here replays every commit that verified.
    pub fn committed_to(&self) -> u64 {
        self.walked
            .commits
            .last()
            .map_or(self.header.len, |c| c.end)
    }
}

/// Reads a whole WAL: its header, then every entry.
pub fn scan(wal: &[u8]) -> Result<Scan, WalError> {
    let header = header(wal)?;
    let walked = entries(wal, header.len, 0);
    Ok(Scan { header, walked })
}

/// The header: `WAL_VERSION` (field 100), the version (101), and from
/// storage 66 the database identifier (102, 16 bytes as a list) and the
/// checkpoint iteration (103), then the object terminator. Unframed and
/// not checksummed (`WriteAheadLog::WriteHeader`).
pub fn header(wal: &[u8]) -> Result<WalHeader, WalError> {
    let mut r = Reader { b: wal, at: 0 };
    let short = |r: &Reader| WalError::Short(r.b.len() as u64);
    let bad = |s: String| WalError::Header(s);
    let field = r.u16().ok_or_else(|| short(&r))?;
    if field != FIELD_TYPE {
        return Err(bad(format!("starts with field {field}, not {FIELD_TYPE}")));
    }
    let kind = r.varint().ok_or_else(|| short(&r))?;
    if kind != WAL_VERSION {
        return Err(bad(format!(
            "first object is of type {kind}, not {WAL_VERSION}"
        )));
    }
    if r.u16().ok_or_else(|| short(&r))? != FIELD_VERSION {
        return Err(bad("no version field".into()));
    }
    let version = r.varint().ok_or_else(|| short(&r))?;
    let mut next = r.u16().ok_or_else(|| short(&r))?;
    let mut db_identifier = None;
    if next == FIELD_DB_IDENTIFIER {
        let n = r.varint().ok_or_else(|| short(&r))?;
        if n != 16 {
            return Err(bad(format!("database identifier of {n} bytes, not 16")));
        }
        let mut id = [0u8; 16];
        for b in &mut id {
            let v = r.varint().ok_or_else(|| short(&r))?;
            *b = u8::try_from(v).map_err(|_| bad(format!("identifier byte {v}")))?;
        }
        db_identifier = Some(id);
        next = r.u16().ok_or_else(|| short(&r))?;
    }
    let mut iteration = None;
    if next == FIELD_ITERATION {
        iteration = Some(r.varint().ok_or_else(|| short(&r))?);
        next = r.u16().ok_or_else(|| short(&r))?;
    }
    if next != OBJECT_END {
        return Err(bad(format!("unexpected field {next}")));
    }
    match version {
        PLAIN => Ok(WalHeader {
            version,
            db_identifier,
            iteration,
            len: r.at as u64,
        }),
        ENCRYPTED => Err(WalError::Encrypted),
        v => Err(WalError::Version(v)),
    }
}

/// Walks the entries of `wal` from offset `from` (an entry's start: the
/// header's end or a commit's end), numbering them from `index`. Stops at
/// the end, at a torn tail, or at the first entry that fails its checksum
/// or its type: nothing after that is trusted.
pub fn entries(wal: &[u8], from: u64, index: u64) -> Walked {
    let len = wal.len() as u64;
    let mut at = from;
    let mut count = index;
    let mut commits = Vec::new();
    let (mut checkpoint, mut optimistic) = (false, false);
    let end = loop {
        if at == len {
            break End::Clean;
        }
        if len - at < FRAME {
            break End::Torn { offset: at };
        }
        let word = |o: u64| {
            u64::from_le_bytes(wal[o as usize..o as usize + 8].try_into().expect("8 bytes"))
        };
        let (size, stored) = (word(at), word(at + 8));
        if size > len - at - FRAME {
            break End::Torn { offset: at };
        }
        let body = &wal[(at + FRAME) as usize..(at + FRAME + size) as usize];
        let computed = checksum(body);
        if computed != stored {
            break End::BadChecksum {
                offset: at,
                index: count,
                stored,
                computed,
            };
        }
        let mut r = Reader { b: body, at: 0 };
        let kind = match (r.u16(), r.varint()) {
            (Some(FIELD_TYPE), Some(k)) => k,
            _ => {
                break End::Malformed {
                    offset: at,
                    index: count,
                    reason: "the entry does not begin with its type".into(),
                };
            }
        };
        at += FRAME + size;
        count += 1;
        match kind {
            WAL_FLUSH => {
                commits.push(Commit {
                    end: at,
                    entries: count,
                    checkpoint,
                    optimistic,
                });
                (checkpoint, optimistic) = (false, false);
            }
            CHECKPOINT => checkpoint = true,
            ROW_GROUP_DATA => optimistic = true,
            _ => {}
        }
    };
    let read_to = match &end {
        End::Clean => len,
        End::Torn { offset } | End::BadChecksum { offset, .. } | End::Malformed { offset, .. } => {
            *offset
        }
    };
    Walked {
        commits,
        entries: count - index,
        end,
        read_to,
    }
}

/// A cursor over bytes in the binary serializer's encoding.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u16(&mut self) -> Option<u16> {
        let v = self.b.get(self.at..self.at + 2)?;
        self.at += 2;
        Some(u16::from_le_bytes([v[0], v[1]]))
    }

    /// An unsigned LEB128 number (`EncodingUtil::EncodeLEB128`).
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at)?;
            self.at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}
