//! `ducksnap daemon`: the long-running service. Only this module knows
//! every task; each task gets the narrow handles of [`jobs`] it needs:
//!
//! * **worker** ([`worker`]) — the only task that changes the store from
//!   this process, one job at a time, in queue order;
//! * **server** ([`server`]) — the Unix socket;
//! * **scheduler** ([`scheduler`]) — cron slots ([`schedule`]); queues a
//!   scheduled snapshot (skipped when the database did not change),
//!   followed by retention;
//! * **drills** ([`scheduler`], the `Drills` kind) — `[schedule] verify`
//!   slots: a deep verify of the newest snapshot and a rolling sample;
//! * **pusher** ([`pusher`]) — with `[offsite]`, a push after each
//!   snapshot and on its own slots, on a blocking thread beside the worker;
//! * **watcher** ([`watch`]) — the database's directory;
//! * **archiver** ([`archiver`]) — with `[continuous]`, the WAL tailer
//!   (`archive::tail`) and the base snapshots it asks for;
//! * **watchdog** — `WATCHDOG=1` when systemd asks for it ([`sdnotify`]).
//!
//! The socket is bound here, or taken from systemd ([`activation`]).
//!
//! Shutdown and reload arrive as [`Control`] values on a channel passed
//! into [`serve`]; [`run`] feeds it from signals (signal-hook, on a thread):
//! SIGTERM/SIGINT stop — the tasks get [`SHUTDOWN_BOUND`] to finish (the
//! in-flight job completes or is abandoned, safely, by exiting: the store's
//! commit protocol keeps it consistent) and a second one exits at once;
//! SIGHUP reloads the config for every task (an invalid one is logged and
//! the old one stays).

pub mod activation;
pub mod archiver;
pub mod jobs;
pub mod pusher;
pub mod schedule;
pub mod scheduler;
pub mod sdnotify;
pub mod server;
pub mod watch;
pub mod worker;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch as channel};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, HostEnv};
use crate::environment;
use crate::ops::Ctx;
use crate::store::Store;
use jobs::{Queue, StateHandle};
use sdnotify::Notifier;

/// How long shutdown waits for in-flight work before exiting anyway.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(20);

/// Reloads the config the daemon was started with.
pub type Reload = Box<dyn Fn() -> Result<Config, ConfigError> + Send>;

/// What the daemon is told from outside while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Read the config again (SIGHUP).
    Reload,
    /// Finish in-flight work and stop (SIGTERM, SIGINT); a second one stops
    /// at once.
    Stop,
}

/// Runs the daemon until a signal stops it. Returns the exit code.
pub fn run(ctx: Ctx, env: HostEnv, reload: Reload) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let signals = forward_signals(tx)?;
    let result = rt.block_on(serve(ctx, env, reload, rx));
    signals.close();
    // A job abandoned at the shutdown bound must not hold the exit.
    rt.shutdown_background();
    result
}

/// SIGHUP becomes [`Control::Reload`], SIGTERM and SIGINT [`Control::Stop`].
fn forward_signals(
    tx: mpsc::UnboundedSender<Control>,
) -> std::io::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for s in signals.forever() {
            let c = if s == SIGHUP {
                Control::Reload
            } else {
                Control::Stop
            };
            if tx.send(c).is_err() {
                break;
            }
        }
    });
    Ok(handle)
}

/// Prepares the store (or logs cloud mode) before anything is served.
fn prepare(ctx: &Ctx) -> anyhow::Result<()> {
    if ctx.detection.is_cloud() {
        tracing::warn!(
            event = "daemon.cloud_mode",
            signals = %ctx.detection.fired().join(","),
            "{}; the daemon idles and answers every request with the disabled result",
            environment::disabled_message(&ctx.detection)
        );
        return Ok(());
    }
    if let Some(o) = &ctx.config.offsite {
        if o.http_warning {
            tracing::warn!(
                event = "offsite.plain_http",
                endpoint = o.endpoint.as_deref().unwrap_or(""),
                "offsite.allow_http = true: credentials and (sealed) data cross the network without TLS"
            );
        }
        if o.encryption == crate::config::Encryption::None {
            tracing::warn!(event = "offsite.unencrypted", url = %o.url, "offsite.encryption = \"none\": the object store can read every snapshot");
        }
    }
    // Open (create) the store now: cleans staging, checks the format and
    // that the store is this database's.
    let store = Store::open(
        &ctx.config.store.dir,
        true,
        ctx.config.store.compression_level,
    )?;
    crate::ops::context::check_owner(ctx, &store)?;
    crate::ops::restore::journal::recover(&ctx.config.database.path)?;
    // One DuckDB instance for every check: a pre-delete snapshot then does
    // not pay for starting one.
    crate::database::check::keep_instance();
    if !ctx.config.database.path.exists() {
        tracing::warn!(event = "watch.database_missing", database = %ctx.config.database.path.display(), "the database does not exist yet; snapshots start when it appears");
    }
    Ok(())
}

/// The socket systemd passed, or one bound here (with its inode, so that
/// only our own file is removed at exit).
fn listen(env: &HostEnv, path: &Path) -> anyhow::Result<(UnixListener, Option<u64>)> {
    match activation::inherited_listener(env)? {
        Some(std) => {
            tracing::info!(
                event = "socket.activated",
                "using the socket passed by systemd (socket activation)"
            );
            // systemd owns the socket file: never remove it on exit.
            Ok((UnixListener::from_std(std)?, None))
        }
        None => {
            let l = server::bind(path)?;
            Ok((l, std::fs::metadata(path).map(|m| m.ino()).ok()))
        }
    }
}

/// Serves until a [`Control::Stop`] arrives (or `control` closes). Returns
/// the exit code.
pub async fn serve(
    ctx: Ctx,
    env: HostEnv,
    reload: Reload,
    mut control: mpsc::UnboundedReceiver<Control>,
) -> anyhow::Result<u8> {
    let notifier = Notifier::from_env(&env);
    prepare(&ctx)?;
    let cloud = ctx.detection.is_cloud();
    let socket_path = ctx.config.socket.path.clone();
    let (listener, socket_ino) = listen(&env, &socket_path)?;

    let token = CancellationToken::new();
    let (settings_tx, settings) = channel::channel(Arc::new(ctx));
    let state = StateHandle::started(std::process::id(), Utc::now());
    let (queue, jobs_rx) = Queue::new(1024);
    let mut tasks = JoinSet::new();
    let snapshot_taken = Arc::new(tokio::sync::Notify::new());
    tasks.spawn(worker::worker(
        settings.clone(),
        state.clone(),
        jobs_rx,
        token.clone(),
        snapshot_taken.clone(),
        notifier.clone(),
    ));
    let server = server::Server {
        settings: settings.clone(),
        queue: queue.clone(),
        state: state.clone(),
        token: token.clone(),
    };
    tasks.spawn(server::serve(server, listener));
    if !cloud {
        let local = LocalTasks {
            settings: settings.clone(),
            queue,
            state: state.clone(),
            token: token.clone(),
            env: env.clone(),
            snapshot_taken,
            notifier: notifier.clone(),
        };
        local.spawn(&mut tasks);
    }
    if let Some(every) = notifier.watchdog_interval() {
        tasks.spawn(watchdog(notifier.clone(), every, token.clone()));
    }

    let mode = if cloud {
        "cloud mode: backups disabled"
    } else {
        "watching"
    };
    let ready_msg = format!("{mode}; socket {}", socket_path.display());
    tracing::info!(event = "daemon.ready", socket = %socket_path.display(), cloud, "daemon ready");
    notifier.ready(&ready_msg);

    while let Some(Control::Reload) = control.recv().await {
        notifier.reloading();
        apply_reload(&reload, &env, &settings_tx, &state);
        notifier.ready(&ready_msg);
    }
    tracing::info!(
        event = "daemon.stopping",
        "stopping: finishing in-flight work"
    );
    notifier.stopping();
    token.cancel();
    shut_down(tasks, &mut control, &socket_path, socket_ino).await;
    Ok(0)
}

/// The handles of the tasks that only run in local mode.
struct LocalTasks {
    settings: jobs::Settings,
    queue: Queue,
    state: StateHandle,
    token: CancellationToken,
    env: HostEnv,
    snapshot_taken: Arc<tokio::sync::Notify>,
    notifier: Notifier,
}

impl LocalTasks {
    /// The scheduler, the offsite pusher and the watcher.
    fn spawn(self, tasks: &mut JoinSet<()>) {
        let (s, q, st, t) = (
            self.settings.clone(),
            self.queue.clone(),
            self.state.clone(),
            self.token.clone(),
        );
        tasks.spawn(scheduler::scheduler(
            scheduler::Which::Snapshots,
            s,
            q,
            st,
            t,
        ));
        tasks.spawn(scheduler::scheduler(
            scheduler::Which::Drills,
            self.settings.clone(),
            self.queue.clone(),
            self.state.clone(),
            self.token.clone(),
        ));
        tasks.spawn(pusher::pusher(pusher::Pusher {
            settings: self.settings.clone(),
            state: self.state.clone(),
            token: self.token.clone(),
            env: self.env,
            kick: self.snapshot_taken,
            notifier: self.notifier.clone(),
        }));
        tasks.spawn(archiver::archiver(archiver::Archiver {
            settings: self.settings.clone(),
            queue: self.queue.clone(),
            state: self.state.clone(),
            notifier: self.notifier,
            token: self.token.clone(),
        }));
        tasks.spawn(watch::watcher(watch::Watch {
            settings: self.settings,
            queue: self.queue,
            state: self.state,
            token: self.token,
        }));
    }
}

async fn watchdog(n: Notifier, every: Duration, token: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tick.tick() => n.watchdog(),
        }
    }
}

/// Reads the config again and hands it to every task; an invalid one is
/// logged (and becomes the last error) and the old one stays. The mode and
/// the socket are fixed for the daemon's life.
fn apply_reload(
    reload: &Reload,
    env: &HostEnv,
    settings: &channel::Sender<Arc<Ctx>>,
    state: &StateHandle,
) {
    let config = match reload() {
        Ok(c) => c,
        Err(e) => {
            // Recorded before it is logged: whoever sees the log line sees
            // the error in `status`.
            state.record(crate::monitor::Job::Reload, Err(e.to_string()));
            tracing::error!(event = "daemon.reload_failed", error = %e, "invalid configuration; keeping the previous one");
            return;
        }
    };
    let old = settings.borrow().clone();
    let detection = environment::detect(env, &config.database.path, config.database.mode);
    if detection.mode != old.detection.mode {
        tracing::warn!(
            event = "daemon.reload_mode",
            "the new config changes the mode; restart the daemon for that to take effect"
        );
    }
    if config.socket.path != old.config.socket.path {
        tracing::warn!(
            event = "daemon.reload_socket",
            "socket.path changed; restart the daemon for that to take effect"
        );
    }
    let new = Ctx {
        config,
        detection: old.detection.clone(),
    };
    let _ = settings.send(Arc::new(new));
    state.record(crate::monitor::Job::Reload, Ok(()));
    tracing::info!(event = "daemon.reloaded", "configuration reloaded");
}

/// Waits up to [`SHUTDOWN_BOUND`] for the tasks (a second stop exits at
/// once), then removes the socket file if it is ours.
async fn shut_down(
    mut tasks: JoinSet<()>,
    control: &mut mpsc::UnboundedReceiver<Control>,
    socket_path: &PathBuf,
    socket_ino: Option<u64>,
) {
    let deadline = tokio::time::sleep(SHUTDOWN_BOUND);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => {
                if next.is_none() {
                    break;
                }
            }
            _ = &mut deadline => {
                tracing::warn!(event = "daemon.shutdown_timeout", "in-flight work did not finish in time; abandoning it (the store stays consistent)");
                break;
            }
            Some(Control::Stop) = control.recv() => {
                tracing::warn!(event = "daemon.second_signal", "second signal: exiting at once");
                remove_socket(socket_path, socket_ino);
                std::process::exit(0);
            }
        }
    }
    remove_socket(socket_path, socket_ino);
    tracing::info!(event = "daemon.stopped", "daemon stopped");
}

/// Removes the socket file if it is still ours (`ino` is `None` for a
/// socket systemd passed us).
fn remove_socket(path: &PathBuf, ino: Option<u64>) {
    if ino.is_some() && std::fs::metadata(path).map(|m| m.ino()).ok() == ino {
        let _ = std::fs::remove_file(path);
    }
}
