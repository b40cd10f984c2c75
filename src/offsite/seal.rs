//! Client-side encryption of everything ducksnap puts offsite, and the
//! names the objects get.
//!
//! The key file holds one 256-bit master key (`ducksnap offsite init`
//! creates it with mode 0600 and never overwrites it). Two keys are derived
//! from it with BLAKE3's key derivation: one seals objects with
//! XChaCha20-Poly1305 (a random 192-bit nonce per object, the object's name
//! as associated data, so that an object moved to another name fails to
//! open), the other names them (a keyed hash), so that the server learns
//! neither the content nor the content hashes. With `encryption = "none"`
//! objects carry a BLAKE3 checksum instead and names are plain hashes.
//!
//! Sealed object: `DSE1` · nonce (24) · ciphertext · tag (16).
//! Plain object:  `DSN1` · BLAKE3 of name and content (32) · content.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, Generate, Key, KeyInit, Payload};

const SEALED: &[u8; 4] = b"DSE1";
const PLAIN: &[u8; 4] = b"DSN1";
const NONCE: usize = 24;
const KEY_HEADER: &str = "ducksnap-offsite-key-v1";

/// Why an object or the key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("offsite object {name}: {reason}")]
    Object { name: String, reason: String },
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
}

/// How objects are protected: sealed with the key, or only checksummed.
#[derive(Clone)]
pub enum Sealer {
    Sealed {
        cipher: Box<XChaCha20Poly1305>,
        names: [u8; 32],
    },
    Plain,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sealer::Sealed { .. } => "Sealer::Sealed(<key>)",
            Sealer::Plain => "Sealer::Plain",
        })
    }
}

impl Sealer {
    /// The sealer of a master key.
    pub fn from_key(master: &[u8; 32]) -> Sealer {
        let enc = blake3::derive_key("ducksnap offsite objects v1", master);
        let names = blake3::derive_key("ducksnap offsite object names v1", master);
        Sealer::Sealed {
            cipher: Box::new(XChaCha20Poly1305::new(&Key::<XChaCha20Poly1305>::from(enc))),
            names,
        }
    }

    /// The object name for `what` (a kind and a content hash or id): keyed
    /// when sealed, so the server cannot link it to content.
    pub fn name(&self, kind: &str, what: &str) -> String {
        let input = format!("{kind}:{what}");
        match self {
            Sealer::Sealed { names, .. } => blake3::keyed_hash(names, input.as_bytes())
                .to_hex()
                .to_string(),
            Sealer::Plain => blake3::hash(input.as_bytes()).to_hex().to_string(),
        }
    }

    /// The object's bytes for `content` stored under `name`.
    pub fn seal(&self, name: &str, content: &[u8]) -> Vec<u8> {
        match self {
            Sealer::Sealed { cipher, .. } => {
                let nonce = chacha20poly1305::XNonce::generate();
                let ct = cipher
                    .encrypt(
                        &nonce,
                        Payload {
                            msg: content,
                            aad: name.as_bytes(),
                        },
                    )
                    .expect("XChaCha20-Poly1305 encrypts any length ducksnap produces");
                [SEALED.as_slice(), nonce.as_slice(), &ct].concat()
            }
            Sealer::Plain => {
                let sum = plain_sum(name, content);
                [PLAIN.as_slice(), sum.as_bytes().as_slice(), content].concat()
            }
        }
    }

    /// The content of object `name`, or an error naming it: a wrong key, a
    /// truncated object, a flipped byte, an object of the other kind.
    pub fn open(&self, name: &str, object: &[u8]) -> Result<Vec<u8>, SealError> {
        let bad = |reason: &str| SealError::Object {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        match (self, object.get(..4)) {
            (Sealer::Sealed { cipher, .. }, Some(m)) if m == SEALED => {
                if object.len() < 4 + NONCE + 16 {
                    return Err(bad("truncated"));
                }
                let nonce = chacha20poly1305::XNonce::try_from(&object[4..4 + NONCE])
                    .map_err(|_| bad("truncated"))?;
                cipher
                    .decrypt(&nonce, Payload { msg: &object[4 + NONCE..], aad: name.as_bytes() })
                    .map_err(|_| bad("cannot be decrypted: the key is wrong, or the object was altered or truncated"))
            }
            (Sealer::Plain, Some(m)) if m == PLAIN => {
                let (sum, content) = object[4..]
                    .split_at_checked(32)
                    .ok_or_else(|| bad("truncated"))?;
                if plain_sum(name, content).as_bytes() != sum {
                    return Err(bad(
                        "checksum mismatch: the object was altered or truncated",
                    ));
                }
                Ok(content.to_vec())
            }
            (Sealer::Plain, Some(m)) if m == SEALED => Err(bad(
                "is encrypted, but the config says encryption = \"none\"",
            )),
            (Sealer::Sealed { .. }, Some(m)) if m == PLAIN => {
                Err(bad("is not encrypted, but the config expects a key"))
            }
            _ => Err(bad("not a ducksnap offsite object")),
        }
    }
}

fn plain_sum(name: &str, content: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(name.as_bytes()).update(&[0]).update(content);
    h.finalize()
}

/// Creates a new key file with a fresh random key, mode 0600; refuses to
/// replace one that exists.
pub fn create_key(path: &Path) -> Result<[u8; 32], SealError> {
    let err = |reason: String| SealError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let key: [u8; 32] = Key::<XChaCha20Poly1305>::generate().into();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                "exists; ducksnap never overwrites a key (losing it loses the offsite copy)".into()
            } else {
                e.to_string()
            })
        })?;
    writeln!(f, "{KEY_HEADER} {}", hex(&key))
        .and_then(|()| f.sync_all())
        .map_err(|e| err(e.to_string()))?;
    Ok(key)
}

/// Reads a key file, refusing one that group or others may read.
pub fn load_key(path: &Path) -> Result<[u8; 32], SealError> {
    let err = |reason: String| SealError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(path)
        .map_err(|e| err(format!("{e} (create it with `ducksnap offsite init`)")))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(err(format!(
            "mode {:o} lets other users read it; chmod 600 it",
            meta.permissions().mode() & 0o777
        )));
    }
    let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let hexkey = text
        .trim()
        .strip_prefix(KEY_HEADER)
        .map(str::trim)
        .ok_or_else(|| {
            err(format!(
                "not a ducksnap key file (expected \"{KEY_HEADER} <64 hex digits>\")"
            ))
        })?;
    let mut key = [0u8; 32];
    if hexkey.len() != 64 || !hexkey.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err("the key must be 64 hex digits".into()));
    }
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&hexkey[2 * i..2 * i + 2], 16).map_err(|e| err(e.to_string()))?;
    }
    Ok(key)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
