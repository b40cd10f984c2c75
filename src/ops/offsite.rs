//! The offsite operations behind `ducksnap offsite …` and `restore --from
//! offsite`: set a remote up ([`init`]), push, list, status, pull. Each
//! opens the remote itself (the network is never touched by the other
//! operations); in cloud mode each gives the disabled error.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::config::{Encryption, HostEnv};
use crate::environment;
use crate::offsite::backend::Backend;
use crate::offsite::layout::{MARKER, Marker};
use crate::offsite::prune::RemotePruned;
use crate::offsite::pull::{Pulled, pull, remote_snapshots};
use crate::offsite::push::{Pushed, push as push_all};
use crate::offsite::verify::RemoteVerified;
use crate::offsite::{self, Offsite, OffsiteError, seal};
use crate::ops::context::{Ctx, OpError, open_store};
use crate::ops::select::Selector;
use crate::store::Summary;

/// What `offsite init` found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Initialized {
    pub url: String,
    /// The remote was set up by an earlier init (and the key fits it).
    pub existed: bool,
    /// A new key file was written.
    pub key_created: bool,
    pub encryption: &'static str,
    pub conditional_put: bool,
    /// A directory remote on the file system that holds the store: one
    /// failing disk would take both copies.
    pub same_disk: bool,
}

/// Whether the directory remote is on the store's file system (the store
/// or, before the first snapshot, its nearest existing parent).
fn same_disk(ctx: &Ctx) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(crate::config::OffsiteTarget::Directory { path }) =
        ctx.config.offsite.as_ref().map(|o| &o.target)
    else {
        return false;
    };
    let store = ctx.config.store.dir.ancestors().find(|p| p.exists());
    match (std::fs::metadata(path), store.map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() == b.dev(),
        _ => false,
    }
}

fn enabled(ctx: &Ctx) -> Result<(), OpError> {
    if ctx.detection.is_cloud() {
        return Err(OpError::Disabled {
            reason: environment::disabled_message(&ctx.detection),
        });
    }
    Ok(())
}

/// Checks reachability, credentials and bucket access, creates the key
/// (never over an existing one), detects conditional puts, writes the
/// marker. Run again, it checks that the key fits the remote.
pub fn init(ctx: &Ctx, env: &HostEnv) -> Result<Initialized, OpError> {
    enabled(ctx)?;
    let cfg = ctx
        .config
        .offsite
        .as_ref()
        .ok_or(OffsiteError::NotConfigured)?;
    let remote = offsite::connect(cfg, env, true)?;
    let existing = offsite::read_marker(remote.as_ref())?;
    let key_created = cfg.encryption != Encryption::None && !cfg.key_file.exists();
    if key_created && existing.is_some() {
        return Err(OffsiteError::KeyMissing(cfg.key_file.clone()).into());
    }
    if let Some(m) = existing {
        let sealer = offsite::sealer(cfg)?;
        m.check(&sealer, cfg.encryption.as_str())?;
        return Ok(Initialized {
            url: cfg.url.clone(),
            existed: true,
            key_created: false,
            encryption: cfg.encryption.as_str(),
            conditional_put: m.conditional_put,
            same_disk: same_disk(ctx),
        });
    }
    // The remote takes writes (the probe) before a key exists: a key is
    // written only for a remote that is then set up with it, so the run
    // that succeeds is the one that says "NEW KEY".
    let conditional_put = probe_conditional(remote.as_ref())?;
    if key_created {
        seal::create_key(&cfg.key_file).map_err(OffsiteError::from)?;
    }
    let written = offsite::sealer(cfg).and_then(|sealer| {
        let marker = Marker::new(&sealer, cfg.encryption.as_str(), conditional_put);
        remote.put(
            MARKER,
            serde_json::to_vec_pretty(&marker).expect("marker serializes"),
        )
    });
    if let Err(e) = written {
        if key_created {
            // Nothing was sealed with it: a key for no remote only misleads.
            let _ = std::fs::remove_file(&cfg.key_file);
        }
        return Err(e.into());
    }
    tracing::info!(event = "offsite.initialized", url = %cfg.url, conditional_put, "offsite remote set up");
    Ok(Initialized {
        url: cfg.url.clone(),
        existed: false,
        key_created,
        encryption: cfg.encryption.as_str(),
        conditional_put,
        same_disk: same_disk(ctx),
    })
}

/// Whether the server refuses a second create of one name.
fn probe_conditional(remote: &dyn Backend) -> Result<bool, OffsiteError> {
    let name = format!("probe-{}", std::process::id());
    remote.put(&name, b"1".to_vec())?;
    let second_was_new = remote.put(&name, b"2".to_vec())?;
    remote.delete(&name)?;
    Ok(!second_was_new)
}

/// Opens the configured remote for an operation.
pub fn open(ctx: &Ctx, env: &HostEnv) -> Result<Offsite, OpError> {
    enabled(ctx)?;
    Ok(offsite::open(ctx.config.offsite.as_ref(), env)?)
}

/// Pushes every local snapshot the remote lacks.
pub fn push(ctx: &Ctx, env: &HostEnv) -> Result<Pushed, OpError> {
    let r = super::context::run_job(ctx, crate::monitor::Job::Offsite, true, || {
        let off = match open(ctx, env) {
            Ok(o) => o,
            Err(e) => {
                if let Ok(store) = open_store(ctx, true) {
                    offsite::cache::note_failed_check(&store, &e.to_string());
                }
                return Err(e);
            }
        };
        // No store lock: the network must never hold up a snapshot. Chunks
        // are read and hash-checked; one that a prune removed meanwhile
        // fails this push, and the next one skips the pruned snapshot.
        let store = open_store(ctx, true)?;
        let grace = ctx
            .config
            .offsite
            .as_ref()
            .map(|o| o.prune_grace.0)
            .unwrap_or_default();
        Ok(push_all(&store, &off, grace)?)
    });
    if let Err(e) = &r
        && !matches!(e, OpError::Disabled { .. })
    {
        tracing::error!(event = "offsite.push_failed", error = %e, "offsite push failed");
    }
    r
}

/// Every push is work.
impl super::context::JobResult for Pushed {}

/// Checks the local record of what is offsite against the bucket (lists
/// its records and packs; reads records only when they changed). A failure
/// is recorded too: local retention then counts nothing as offsite.
pub fn confirm(ctx: &Ctx, env: &HostEnv) -> Result<(), OpError> {
    let store = open_store(ctx, true)?;
    let off = match open(ctx, env) {
        Ok(o) => o,
        Err(e) => {
            offsite::cache::note_failed_check(&store, &e.to_string());
            return Err(e);
        }
    };
    offsite::cache::Cache::current(&store, &off)?;
    Ok(())
}

/// [`confirm`] for `status --check`: only with `[offsite]`, outside cloud
/// mode, and when credentials are at hand (else `Ok`: the last check's
/// findings stand). `Err` says why the bucket could not be asked.
pub fn confirm_if_possible(ctx: &Ctx, env: &HostEnv) -> Result<(), String> {
    let Some(cfg) = ctx.config.offsite.as_ref() else {
        return Ok(());
    };
    if ctx.detection.is_cloud()
        || !offsite::reachable_without_asking(cfg, env)
        || !crate::store::Store::exists_at(&ctx.config.store.dir)
    {
        tracing::debug!(
            event = "offsite.check_skipped",
            "offsite not checked: cloud mode, no credentials or no store"
        );
        return Ok(());
    }
    confirm(ctx, env).map_err(|e| e.to_string())
}

/// Remote retention and the two-phase deletion of unnamed packs.
pub fn prune(ctx: &Ctx, env: &HostEnv, dry_run: bool) -> Result<RemotePruned, OpError> {
    let off = open(ctx, env)?;
    let cfg = ctx
        .config
        .offsite
        .as_ref()
        .ok_or(OffsiteError::NotConfigured)?;
    let store = open_store(ctx, true)?;
    Ok(crate::offsite::prune::prune(
        &store,
        &off,
        &cfg.retention,
        cfg.prune_grace.0,
        dry_run,
        chrono::Utc::now(),
    )?)
}

/// Checks every record and `percent` of the packs (a rolling sample).
pub fn verify(ctx: &Ctx, env: &HostEnv, percent: u32) -> Result<RemoteVerified, OpError> {
    let off = open(ctx, env)?;
    let store = open_store(ctx, true)?;
    Ok(crate::offsite::verify::verify(&store, &off, percent)?)
}

/// The snapshots offsite that can be restored, newest first (records
/// naming a missing pack, and objects that are not records, are logged as
/// warnings and left out).
pub fn list(ctx: &Ctx, env: &HostEnv) -> Result<Vec<Summary>, OpError> {
    let off = open(ctx, env)?;
    let mut v: Vec<Summary> = remote_snapshots(&off)?
        .whole
        .iter()
        .map(|(_, r)| Summary::from(&r.manifest))
        .collect();
    v.reverse();
    Ok(v)
}

/// What `offsite status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct OffsiteStatus {
    pub url: String,
    /// Snapshots offsite: listed on the remote, or — when it cannot be
    /// reached — what the local record says was pushed.
    pub remote_snapshots: usize,
    /// Local snapshots not offsite yet, oldest first.
    pub not_pushed: Vec<String>,
    /// Seconds since the oldest local snapshot not yet pushed was taken.
    pub lag_seconds: Option<i64>,
    /// Why the remote could not be asked (the figures above then come from
    /// the local record of what was pushed, `<store>/offsite/pushed.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// The running daemon's last offsite failure, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<crate::ops::LastError>,
}

/// The remote's view when it answers; when the network or the server fails,
/// the local record's view and the failure (an `Err` only for what a retry
/// would not fix: configuration, key, damage).
pub fn status(ctx: &Ctx, env: &HostEnv) -> Result<(OffsiteStatus, Option<OpError>), OpError> {
    let store = open_store(ctx, true)?;
    let asked = open(ctx, env).and_then(|off| Ok(offsite::cache::Cache::current(&store, &off)?));
    let (remote, failure): (BTreeSet<String>, _) = match asked {
        Ok((cache, _)) => (cache.snapshots.into_keys().collect(), None),
        Err(e @ OpError::Offsite(OffsiteError::Remote { .. })) => (
            offsite::cache::pushed_ids(ctx.config.offsite.as_ref(), &store).unwrap_or_default(),
            Some(e),
        ),
        Err(e) => return Err(e),
    };
    let mut local = store.catalog()?;
    local.sort_by(|a, b| a.id.cmp(&b.id));
    let waiting: Vec<&Summary> = local
        .iter()
        .filter(|s| !remote.contains(s.id.as_str()))
        .collect();
    let status = OffsiteStatus {
        url: ctx
            .config
            .offsite
            .as_ref()
            .map(|o| o.url.clone())
            .unwrap_or_default(),
        remote_snapshots: remote.len(),
        lag_seconds: waiting
            .first()
            .map(|s| (chrono::Utc::now() - s.created_at).num_seconds()),
        not_pushed: waiting.iter().map(|s| s.id.to_string()).collect(),
        unreachable: failure.as_ref().map(|e| e.to_string()),
        last_error: None,
    };
    Ok((status, failure))
}

/// Copies the offsite snapshot `given` (an id, prefix, `latest`…) into the
/// local store, created if absent; returns what was pulled.
pub fn pull_one(ctx: &Ctx, env: &HostEnv, given: &str) -> Result<Pulled, OpError> {
    let sel = Selector::parse(given)?;
    let off = open(ctx, env)?;
    let records = remote_snapshots(&off)?.whole;
    let summaries: Vec<Summary> = records
        .iter()
        .map(|(_, r)| Summary::from(&r.manifest))
        .collect();
    let id = sel.pick(given, &summaries).map_err(|e| match e {
        crate::ops::select::Unresolved::None => OpError::NoMatch {
            given: format!("{given:?}"),
            store: ctx
                .config
                .offsite
                .as_ref()
                .map(|o| o.url.clone())
                .unwrap_or_default()
                .into(),
            hint: sel.instead(&summaries),
        },
        crate::ops::select::Unresolved::Ambiguous(reason) => OpError::InvalidArgument {
            what: "snapshot",
            reason,
        },
    })?;
    let (object, record) = records
        .iter()
        .find(|(_, r)| r.manifest.id == id)
        .expect("picked from these");
    let store = open_store(ctx, true)?;
    let lock = store.lock()?;
    let pulled = pull(&store, &lock, &off, record)?;
    // The remote holds it whole (it was just listed, read and pulled):
    // `list` and `status` say it is offsite.
    let mut cache = offsite::cache::Cache::saved(&store)
        .filter(|c| c.remote_id == off.marker.remote_id)
        .unwrap_or_else(|| offsite::cache::Cache::from_records(&off.marker.remote_id, &[]));
    cache.add(object, record);
    if let Err(e) = cache.save(&store) {
        tracing::warn!(event = "offsite.cache_unsaved", error = %e, "pulled, but the record of what is offsite could not be saved");
    }
    Ok(pulled)
}
