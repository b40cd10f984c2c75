//! Progress of long operations, for whoever shows it (the CLI's bars): a
//! callback the operation calls with [`Event`]s. Operations never print;
//! without a callback ([`Progress::none`]) the events go nowhere.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// One snapshot's verification.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SnapshotCheck {
    pub id: String,
    pub ok: bool,
    pub chunks: usize,
    pub missing_chunks: Vec<String>,
    pub corrupt_chunks: Vec<String>,
    /// `--deep`: the reassembled file opened with DuckDB, every column read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deep: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What an operation reports while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// Work of `total` bytes starts.
    Begin { total: u64 },
    /// `n` more bytes are done.
    Bytes(u64),
    /// One snapshot's verification finished (`verify`).
    Checked(&'a SnapshotCheck),
}

type Sink = dyn Fn(Event<'_>) + Send + Sync;

/// Where an operation's [`Event`]s go.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<Sink>>);

impl Progress {
    /// Events go nowhere.
    pub fn none() -> Progress {
        Progress(None)
    }

    pub fn new(f: impl Fn(Event<'_>) + Send + Sync + 'static) -> Progress {
        Progress(Some(Arc::new(f)))
    }

    pub fn emit(&self, e: Event<'_>) {
        if let Some(f) = &self.0 {
            f(e);
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(on)"
        } else {
            "Progress(off)"
        })
    }
}
