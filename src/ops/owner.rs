//! `ducksnap adopt`: hands a store to the configured database on purpose
//! (a project moved or copied). The check every operation makes — is this
//! store the configured database's? — is `check_owner` in
//! [`super::context`], beside `open_store`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::context::{Ctx, OpError, database_path};
use crate::store::{Owner, Store};

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
