//! Which blocks of a DuckDB file the active header uses, read from the file
//! without DuckDB: the free list, the blocks used more than once, and the
//! metadata blocks with their free sub-blocks.
//!
//! The active database header's `free_list` field points at a chain of
//! metadata sub-blocks (`SingleFileBlockManager::WriteHeader` writes it,
//! `LoadFreeList` reads it: `src/storage/single_file_block_manager.cpp`
//! at 044a04a, lines 1313–1365 and 863–884): `u64` count, that many
//! `i64` block ids, `u64` count of multi-use blocks, that many (`i64` id,
//! `u32` uses), then the metadata manager's own list (`MetadataManager::
//! Write`, `src/storage/metadata/metadata_manager.cpp:315`): `u64` count,
//! that many (`i64` block id, `u64` bit set of its free sub-blocks).
//!
//! A metadata block is split into 64 sub-blocks of
//! `floor8((block_alloc_size - 8) / 64)` bytes after the block's 8-byte
//! checksum (`GetMetadataBlockSize`, metadata_manager.cpp:340); a pointer
//! to one is the block id with the sub-block index in its top 8 bits
//! (`GetDiskPointer`, :196). Each sub-block starts with the pointer to the
//! next one of the chain (`u64`, all ones at the end), then data
//! (`MetadataReader::ReadNextBlock`, `src/storage/metadata/
//! metadata_reader.cpp:60–90`). Every block read here is checked against
//! its stored checksum (`Checksum`, `src/common/checksum.cpp`), so a block
//! caught half-written is an error, never a wrong list.
//!
//! Encrypted databases (a block header longer than 8 bytes) are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::duckfile::HEADER_REGION;

/// How the active header uses the blocks of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMap {
    /// The active header's iteration.
    pub iteration: u64,
    /// `block_alloc_size`: the distance between block starts.
    pub block_size: u64,
    /// Blocks `0..block_count` make up the file after the headers.
    pub block_count: u64,
    /// Blocks under `block_count` that hold nothing the header needs (they
    /// include blocks written since by uncommitted or not yet checkpointed
    /// bulk inserts, which DuckDB lists as free until a checkpoint keeps
    /// them).
    pub free: BTreeSet<u64>,
    /// Blocks shared by several users, with their use counts.
    pub multi_use: BTreeMap<u64, u32>,
    /// Metadata blocks, each with the bit set of its free sub-blocks.
    pub metadata: BTreeMap<u64, u64>,
}

/// Why a block map could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BlockMapError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the block map does not parse: {reason}")]
    Malformed { path: String, reason: String },
}

const SUB_BLOCKS: u64 = 64;
const BLOCK_HEADER: u64 = 8;
const END: u64 = u64::MAX;
/// More list entries than this is not a list this reader believes.
const MAX_ENTRIES: u64 = 1 << 32;

impl BlockMap {
    /// Reads the block map of the active header of `file`.
    pub fn read(file: &File, path: &Path) -> Result<BlockMap, BlockMapError> {
        let r = Reader { file, path };
        let mut head = vec![0u8; HEADER_REGION as usize];
        r.read_exact(&mut head, 0)?;
        let u = |off: usize| u64::from_le_bytes(head[off..off + 8].try_into().expect("8 bytes"));
        let active = if u(4096 + 8) >= u(8192 + 8) {
            4096
        } else {
            8192
        };
        let (iteration, free_list, block_count, block_size) = (
            u(active + 8),
            u(active + 24),
            u(active + 32),
            u(active + 40),
        );
        // The active header slot carries the checksum of its other 4088
        // bytes: one caught half-written fails it.
        let slot = &head[active + 8..active + 4096];
        if checksum(slot) != u(active) {
            return Err(r.malformed(format!(
                "the database header at {active} fails its checksum (written meanwhile?)"
            )));
        }
        if !(16 * 1024..=256 * 1024).contains(&block_size) || !block_size.is_power_of_two() {
            return Err(r.malformed(format!("implausible block size {block_size}")));
        }
        let mut map = BlockMap {
            iteration,
            block_size,
            block_count,
            free: BTreeSet::new(),
            multi_use: BTreeMap::new(),
            metadata: BTreeMap::new(),
        };
        if free_list == END {
            // No free list: nothing is free, and no metadata list either.
            return Ok(map);
        }
        let mut s = Stream::new(&r, block_size, block_count, free_list)?;
        let n = s.count()?;
        for _ in 0..n {
            let b = s.block_id()?;
            if !map.free.insert(b) {
                return Err(r.malformed(format!("block {b} is free twice")));
            }
        }
        let n = s.count()?;
        for _ in 0..n {
            let b = s.block_id()?;
            let uses = u32::from_le_bytes(s.bytes::<4>()?);
            map.multi_use.insert(b, uses);
        }
        let n = s.count()?;
        for _ in 0..n {
            let b = s.block_id()?;
            let free_subs = u64::from_le_bytes(s.bytes::<8>()?);
            map.metadata.insert(b, free_subs);
        }
        if let Some(b) = map.metadata.keys().find(|b| map.free.contains(b)) {
            return Err(r.malformed(format!("metadata block {b} is also free")));
        }
        Ok(map)
    }

    /// Whether the active header uses block `b`.
    pub fn in_use(&self, b: u64) -> bool {
        b < self.block_count && !self.free.contains(&b)
    }

    /// Where block `b` starts in the file.
    pub fn offset(&self, b: u64) -> u64 {
        HEADER_REGION + b * self.block_size
    }
}

struct Reader<'a> {
    file: &'a File,
    path: &'a Path,
}

impl Reader<'_> {
    fn malformed(&self, reason: String) -> BlockMapError {
        BlockMapError::Malformed {
            path: self.path.display().to_string(),
            reason,
        }
    }

    fn read_exact(&self, buf: &mut [u8], at: u64) -> Result<(), BlockMapError> {
        self.file
            .read_exact_at(buf, at)
            .map_err(|source| BlockMapError::Io {
                path: self.path.display().to_string(),
                source,
            })
    }
}

/// DuckDB's checksum (`Checksum`, `src/common/checksum.cpp`): the XOR of
/// every 8-byte word times a constant, and, when the length is not a
/// multiple of 8, a MurmurHash64A-style hash of the 1–7 bytes left
/// (`ChecksumRemainder`). A block's data is a multiple of 8 bytes; a WAL
/// entry's body ([`super::wal`]) need not be.
pub fn checksum(data: &[u8]) -> u64 {
    let words = data.chunks_exact(8);
    let rest = words.remainder();
    let sum = words
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .fold(5381u64, |acc, w| {
            acc ^ w.wrapping_mul(0xbf58_476d_1ce4_e5b9)
        });
    if rest.is_empty() {
        sum
    } else {
        sum ^ checksum_remainder(rest)
    }
}

/// `ChecksumRemainder` for the 1–7 bytes after the last whole word.
fn checksum_remainder(rest: &[u8]) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const SEED: u64 = 0xe17a_1465;
    const R: u32 = 47;
    let mut h = SEED ^ (rest.len() as u64).wrapping_mul(M);
    for (i, &b) in rest.iter().enumerate() {
        h ^= u64::from(b) << (8 * i);
    }
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The data of a chain of metadata sub-blocks, read in order.
struct Stream<'a, 'b> {
    r: &'b Reader<'a>,
    block_size: u64,
    block_count: u64,
    /// The block the current sub-block is in, checked once.
    block: Vec<u8>,
    block_id: Option<u64>,
    /// Offset of the current sub-block in `block`, and the position in it.
    sub: usize,
    pos: usize,
    next: u64,
    hops: u64,
}

impl<'a, 'b> Stream<'a, 'b> {
    fn new(
        r: &'b Reader<'a>,
        block_size: u64,
        block_count: u64,
        first: u64,
    ) -> Result<Stream<'a, 'b>, BlockMapError> {
        let mut s = Stream {
            r,
            block_size,
            block_count,
            block: Vec::new(),
            block_id: None,
            sub: 0,
            pos: 0,
            next: first,
            hops: 0,
        };
        s.advance()?;
        Ok(s)
    }

    fn sub_size(&self) -> usize {
        (((self.block_size - BLOCK_HEADER) / SUB_BLOCKS) & !7) as usize
    }

    /// Moves to the next sub-block of the chain.
    fn advance(&mut self) -> Result<(), BlockMapError> {
        if self.next == END {
            return Err(self
                .r
                .malformed("the list runs past its last sub-block".into()));
        }
        self.hops += 1;
        if self.hops > self.block_count.saturating_mul(SUB_BLOCKS) + 1 {
            return Err(self.r.malformed("the sub-block chain loops".into()));
        }
        let id = self.next & !(0xff << 56);
        let index = self.next >> 56;
        if id >= self.block_count || index >= SUB_BLOCKS {
            return Err(self.r.malformed(format!(
                "sub-block pointer {:#x} is outside the file's {} blocks",
                self.next, self.block_count
            )));
        }
        if self.block_id != Some(id) {
            let mut buf = vec![0u8; self.block_size as usize];
            self.r
                .read_exact(&mut buf, HEADER_REGION + id * self.block_size)?;
            let stored = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
            if checksum(&buf[8..]) != stored {
                return Err(self.r.malformed(format!(
                    "metadata block {id} fails its checksum (written meanwhile?)"
                )));
            }
            self.block = buf;
            self.block_id = Some(id);
        }
        self.sub = (BLOCK_HEADER as usize) + index as usize * self.sub_size();
        self.next = u64::from_le_bytes(
            self.block[self.sub..self.sub + 8]
                .try_into()
                .expect("8 bytes"),
        );
        self.pos = 8;
        Ok(())
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], BlockMapError> {
        let mut out = [0u8; N];
        let mut got = 0;
        while got < N {
            if self.pos == self.sub_size() {
                self.advance()?;
            }
            let take = (N - got).min(self.sub_size() - self.pos);
            let at = self.sub + self.pos;
            out[got..got + take].copy_from_slice(&self.block[at..at + take]);
            got += take;
            self.pos += take;
        }
        Ok(out)
    }

    fn count(&mut self) -> Result<u64, BlockMapError> {
        let n = u64::from_le_bytes(self.bytes::<8>()?);
        if n > MAX_ENTRIES.min(self.block_count.saturating_mul(SUB_BLOCKS)) {
            return Err(self.r.malformed(format!("a list of {n} entries")));
        }
        Ok(n)
    }

    fn block_id(&mut self) -> Result<u64, BlockMapError> {
        let b = u64::from_le_bytes(self.bytes::<8>()?);
        if b >= self.block_count {
            return Err(self.r.malformed(format!(
                "block {b} is past the file's {} blocks",
                self.block_count
            )));
        }
        Ok(b)
    }
}
