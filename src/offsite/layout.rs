//! What is stored offsite, and under which names. Under `offsite.url`:
//!
//! - `ducksnap-offsite.json` — the marker (plain JSON, no secret): format,
//!   encryption, a random remote id, whether conditional puts are used, and
//!   a key check (a sealed known text: a wrong key fails here, first);
//! - `packs/<name>` — chunk data: the plain bytes of several chunks, one
//!   after the other, zstd-compressed as a whole, then sealed. Immutable;
//!   the name is a (keyed) hash of the content;
//! - `snapshots/<name>` — one sealed record per snapshot: its manifest and,
//!   for every chunk, the pack holding it and where. The name is a (keyed)
//!   hash of the id. Written after every pack it names: a record is the
//!   remote commit point.

use serde::{Deserialize, Serialize};

use super::OffsiteError;
use super::seal::Sealer;
use crate::store::Manifest;

pub const MARKER: &str = "ducksnap-offsite.json";
pub const PACKS: &str = "packs";
pub const SNAPSHOTS: &str = "snapshots";
pub const FORMAT: u32 = 1;
const KEY_CHECK_TEXT: &[u8] = b"ducksnap offsite key check v1";
const KEY_CHECK_NAME: &str = "key-check";

/// The remote's marker object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub format: u32,
    /// `xchacha20poly1305` or `none`.
    pub encryption: String,
    /// Random; a local cache of another remote (or a recreated one) is
    /// recognised as stale by it.
    pub remote_id: String,
    /// Whether the server refused a second create of one name (412), so
    /// that uploads use `PutMode::Create`.
    pub conditional_put: bool,
    /// The key check, hex.
    pub key_check: String,
}

impl Marker {
    pub fn new(sealer: &Sealer, encryption: &str, conditional_put: bool) -> Marker {
        let id = blake3::hash(&rand_bytes()).to_hex()[..32].to_string();
        Marker {
            format: FORMAT,
            encryption: encryption.to_string(),
            remote_id: id,
            conditional_put,
            key_check: hex(&sealer.seal(KEY_CHECK_NAME, KEY_CHECK_TEXT)),
        }
    }

    /// Fails unless the marker is one this build reads and `sealer` holds
    /// its key (or both say "none").
    pub fn check(&self, sealer: &Sealer, encryption: &str) -> Result<(), OffsiteError> {
        if self.format != FORMAT {
            return Err(OffsiteError::Layout(format!(
                "the remote's format is {}, this build reads {FORMAT}",
                self.format
            )));
        }
        if self.encryption != encryption {
            return Err(OffsiteError::Layout(format!(
                "the remote was set up with encryption = {:?}, the config says {encryption:?}",
                self.encryption
            )));
        }
        let sealed = unhex(&self.key_check)
            .ok_or_else(|| OffsiteError::Layout("the marker's key check is not hex".into()))?;
        match sealer.open(KEY_CHECK_NAME, &sealed) {
            Ok(t) if t == KEY_CHECK_TEXT => Ok(()),
            _ => Err(OffsiteError::WrongKey),
        }
    }
}

/// Where one chunk is: pack (index into [`Record::packs`]), offset and
/// length in the pack's plain bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loc {
    pub pack: u32,
    pub offset: u64,
    pub len: u64,
}

/// One snapshot offsite: its manifest and where each of its chunks is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub manifest: Manifest,
    pub packs: Vec<String>,
    /// Chunk hash → location.
    pub chunks: std::collections::BTreeMap<String, Loc>,
}

impl Record {
    /// Checks that the record is whole: its manifest validates, and every
    /// chunk the manifest names has a location in a listed pack.
    pub fn validate(&self) -> Result<(), String> {
        self.manifest.validate()?;
        for h in self.manifest.chunk_hashes() {
            match self.chunks.get(h) {
                Some(l) if (l.pack as usize) < self.packs.len() => {}
                _ => return Err(format!("chunk {h} has no location")),
            }
        }
        Ok(())
    }
}

/// The object name of a pack whose plain content hashes to `hash`.
pub fn pack_object(sealer: &Sealer, hash: &str) -> String {
    format!("{PACKS}/{}", sealer.name("pack", hash))
}

/// The object name of snapshot `id`'s record.
pub fn record_object(sealer: &Sealer, id: &str) -> String {
    format!("{SNAPSHOTS}/{}", sealer.name("snapshot", id))
}

fn rand_bytes() -> [u8; 32] {
    use chacha20poly1305::aead::Generate;
    chacha20poly1305::aead::Key::<chacha20poly1305::XChaCha20Poly1305>::generate().into()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
