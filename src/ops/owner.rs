//! One store, one database: every operation that opens the store checks
//! its owner record ([`crate::store::owner`]) against the configured
//! database, and `ducksnap adopt` hands a store to the configured database
//! explicitly (a project moved or copied on purpose).
//!
//! The rules: no record and the database exists — the store is claimed
//! (stores made before the record existed, and new ones); the record names
//! the database's real path — this project's store; another path but the
//! same device and inode — the project moved with `mv`, the record follows
//! it; anything else — refused, naming both databases (exit 2).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::context::{Ctx, OpError, database_path};
use crate::store::{Owner, Store};

/// Checks that `store` belongs to the configured database (or claims it),
/// see the module header.
pub fn check(ctx: &Ctx, store: &Store) -> Result<(), OpError> {
    let db = database_path(ctx)?;
    let recorded = store.owner()?;
    match recorded {
        Some(o) if o.same_path(&db) => {
            // A restore replaces the file (a new inode): keep the record
            // current so that a later move is still recognised.
            if !o.same_file(&db)
                && db.is_file()
                && let Ok(now) = Owner::of(&db, Some(o.store_id.clone()))
            {
                write(store, &now);
            }
            Ok(())
        }
        Some(o) if db.is_file() && o.same_file(&db) => {
            tracing::info!(event = "store.owner_moved", store = %store.root().display(), from = %o.database.display(), to = %db.display(), "the database moved; the store follows it");
            if let Ok(now) = Owner::of(&db, Some(o.store_id)) {
                write(store, &now);
            }
            Ok(())
        }
        Some(o) => Err(OpError::ForeignStore {
            store: store.root().to_path_buf(),
            owner: o.database,
            database: db,
        }),
        None if db.is_file() => {
            if let Ok(now) = Owner::of(&db, None) {
                tracing::info!(event = "store.owner_recorded", store = %store.root().display(), database = %db.display(), "the store now records the database it belongs to");
                write(store, &now);
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// A record that cannot be written (a read-only store) leaves the check
/// to the next writer; it never fails the operation.
fn write(store: &Store, owner: &Owner) {
    if let Err(e) = store.set_owner(owner) {
        tracing::debug!(event = "store.owner_write_failed", error = %e, "could not write the store's owner record");
    }
}

/// What `adopt` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Adopted {
    pub store: PathBuf,
    pub store_id: String,
    pub database: PathBuf,
    /// The database the store belonged to before (`None`: no record).
    pub previous: Option<PathBuf>,
}

/// Makes the configured database the owner of the configured store.
pub fn adopt(ctx: &Ctx) -> Result<Adopted, OpError> {
    if ctx.detection.is_cloud() {
        return Err(OpError::Disabled {
            reason: crate::environment::disabled_message(&ctx.detection),
        });
    }
    let db = database_path(ctx)?;
    if !db.is_file() {
        return Err(OpError::Capture(crate::capture::CaptureError::Missing {
            path: db.clone(),
        }));
    }
    let store = Store::open(
        &ctx.config.store.dir,
        false,
        ctx.config.store.compression_level,
    )?;
    let _lock = store.lock()?;
    let previous = store.owner().ok().flatten();
    let owner =
        Owner::of(&db, previous.as_ref().map(|o| o.store_id.clone())).map_err(|e| io(&db, e))?;
    store.set_owner(&owner)?;
    tracing::info!(event = "store.adopted", store = %store.root().display(), database = %db.display(), "store adopted");
    Ok(Adopted {
        store: store.root().to_path_buf(),
        store_id: owner.store_id,
        database: db,
        previous: previous.map(|o| o.database),
    })
}

fn io(path: &Path, e: std::io::Error) -> OpError {
    OpError::InvalidArgument {
        what: "database.path",
        reason: format!("{}: {e}", path.display()),
    }
}
