//! Finding the app's DuckDB file under a project directory: regular files
//! (links are not followed) whose header carries DuckDB's magic, at most
//! four directories down, skipping hidden directories, virtual
//! environments, build output and ducksnap stores.

use std::fs;
use std::path::{Path, PathBuf};

use crate::ops::OpError;

use crate::database::duckfile::Header;

const MAX_DEPTH: usize = 4;
const SKIP: &[&str] = &[
    "node_modules",
    "target",
    "__pycache__",
    "venv",
    "site-packages",
];

/// The one DuckDB file under `dir`; an error naming them all when there are
/// several, or saying what to do when there is none.
pub fn the_database(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut found = Vec::new();
    walk(dir, 0, &mut found);
    found.sort();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(OpError::InvalidArgument {
            what: "--database",
            reason: format!(
                "not given, and no DuckDB database found under {} (searched {MAX_DEPTH} levels deep); name it with --database FILE (it may not exist yet)",
                dir.display()
            ),
        }
        .into()),
        many => Err(OpError::InvalidArgument {
            what: "--database",
            reason: format!(
                "not given, and there are several DuckDB databases under {}: {}; choose one with --database FILE",
                dir.display(),
                many.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        .into()),
    }
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    if crate::store::Store::exists_at(dir) {
        return; // a ducksnap store: its files are chunks, not databases
    }
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(kind) = e.file_type() else { continue };
        let path = e.path();
        if kind.is_dir()
            && depth < MAX_DEPTH
            && !name.starts_with('.')
            && !SKIP.contains(&name.as_str())
        {
            walk(&path, depth + 1, found);
        } else if kind.is_file() && Header::read_path(&path).is_ok() {
            found.push(path);
        }
    }
}
