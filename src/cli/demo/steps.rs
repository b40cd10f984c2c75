//! The demo's steps, each printed and checked. [`Demo`] owns what runs
//! meanwhile (the in-process daemon, the app process) and stops both when
//! dropped, whatever step failed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::sync::mpsc;

use super::short;
use crate::cli::client;
use crate::cli::output::outln;
use crate::cli::remote;
use crate::config::{self, HostEnv};
use crate::daemon::Control;
use crate::environment;
use crate::ops::{Ctx, RestoreRequest, Restored, SnapshotReply, SnapshotRequest};
use crate::protocol::calls;
use crate::store::CaptureMethod;

const CUSTOMERS: i64 = 1_000;
const ORDERS: i64 = 20_000;
/// The customer the cascade delete removes.
const VICTIM: i64 = 42;

pub struct Demo {
    dir: PathBuf,
    db: PathBuf,
    ctx: Ctx,
    daemon: Option<(
        mpsc::UnboundedSender<Control>,
        JoinHandle<anyhow::Result<u8>>,
    )>,
    /// Where the daemon sends its systemd notifications (kept until it stops).
    notify: Option<UnixDatagram>,
    app: Option<App>,
    step: usize,
}

struct App {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Demo {
    pub fn new(dir: &Path) -> anyhow::Result<Demo> {
        let env = demo_env(dir, None);
        let config = config::load(Some(&dir.join("ducksnap.toml")), &env)?;
        let detection = environment::detect(&env, &config.database.path, config.database.mode);
        Ok(Demo {
            dir: dir.to_path_buf(),
            db: config.database.path.clone(),
            ctx: Ctx { config, detection },
            daemon: None,
            notify: None,
            app: None,
            step: 0,
        })
    }

    pub fn run(mut self) -> anyhow::Result<()> {
        self.create_database()?;
        self.start_daemon()?;
        self.start_app()?;
        let before = self.ask("count 42")?.parse::<i64>()?;
        let id = self.snapshot_before_delete(before)?;
        self.cascade_delete(before)?;
        self.list()?;
        self.restore(&id)?;
        self.rows_back(before)?;
        self.stop_daemon()
    }

    fn say(&mut self, what: &str, command: &str) -> anyhow::Result<()> {
        self.step += 1;
        outln!("{:>2}. {what}", self.step);
        if !command.is_empty() {
            outln!("      $ {command}");
        }
        Ok(())
    }

    fn create_database(&mut self) -> anyhow::Result<()> {
        let conn =
            duckdb::Connection::open_with_flags(&self.db, crate::database::check::base_config()?)?;
        conn.execute_batch(&format!(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR, city VARCHAR);
             -- No REFERENCES: DuckDB refuses to delete a referenced row even
             -- when the same transaction deleted its references first.
             CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER,
                                  amount DECIMAL(10, 2));
             INSERT INTO customers SELECT i, 'customer ' || i, ['Berlin', 'Lyon', 'Porto'][i % 3 + 1]
               FROM range(1, {c} + 1) t(i);
             INSERT INTO orders SELECT i, i % {c} + 1, (i * 7919) % 50000 / 100
               FROM range(1, {o} + 1) t(i);
             CHECKPOINT;",
            c = CUSTOMERS,
            o = ORDERS
        ))?;
        drop(conn);
        let what = format!(
            "A sample shop database, {}: {CUSTOMERS} customers, {ORDERS} orders.",
            short(&self.dir, &self.db)
        );
        self.say(&what, "")
    }

    fn start_daemon(&mut self) -> anyhow::Result<()> {
        let notify_path = self.dir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path)?;
        notify.set_read_timeout(Some(Duration::from_secs(60)))?;
        let env = demo_env(&self.dir, Some(&notify_path));
        let (tx, rx) = mpsc::unbounded_channel();
        let (ctx, config_path) = (self.ctx.clone(), self.dir.join("ducksnap.toml"));
        let env2 = env.clone();
        let reload: crate::daemon::Reload =
            Box::new(move || config::load(Some(&config_path), &env2));
        let thread = std::thread::spawn(move || daemon_thread(ctx, env, reload, rx, notify_path));
        self.daemon = Some((tx, thread));
        // The daemon says READY=1 on the notify socket once it listens (or
        // the thread says it ended): an event, not a poll.
        let mut buf = [0u8; 4096];
        let n = notify
            .recv(&mut buf)
            .context("waiting for the daemon to start")?;
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.notify = Some(notify);
        ensure!(msg.contains("READY=1"), "the daemon did not start: {msg}");
        let what = format!(
            "The daemon runs (here in-process), its socket at {}.",
            short(&self.dir, &self.ctx.config.socket.path)
        );
        self.say(&what, "ducksnap daemon")
    }

    fn start_app(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("finding this program")?;
        let mut child = Command::new(exe)
            .arg("__demo-app")
            .arg(&self.db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the demo app")?;
        let stdin = child.stdin.take().context("app stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("app stdout")?);
        self.app = Some(App {
            child,
            stdin,
            stdout,
        });
        let ready = self.read_app()?;
        let pid = ready
            .strip_prefix("ready ")
            .context("the app did not start")?;
        ensure!(
            self.ask(&format!("order {VICTIM}"))? == "ok",
            "the app could not write"
        );
        let what = format!(
            "The app (pid {pid}) holds the database open read-write, as Streamlit would; it just recorded a new order for customer {VICTIM} (still only in its WAL)."
        );
        self.say(&what, "")
    }

    fn snapshot_before_delete(&mut self, orders: i64) -> anyhow::Result<String> {
        let req = SnapshotRequest {
            reason: "pre-delete".into(),
            label: Some(format!("before deleting customer {VICTIM}")),
            pin: false,
            skip_unchanged: false,
            never_lock: false,
        };
        let (mut c, _) =
            client::daemon_for(&self.ctx)?.context("the daemon does not answer on its socket")?;
        let call = calls::snapshot(req);
        let reply: SnapshotReply = serde_json::from_value(remote::answer(c.call(&call.request)?)?)?;
        let m = reply.snapshot.context("the daemon took no snapshot")?;
        ensure!(
            m.capture.method == CaptureMethod::Online,
            "expected an online capture, got {}",
            m.capture.method
        );
        ensure!(m.file("wal").is_some(), "the snapshot lacks the app's WAL");
        let what = format!(
            "Right before its cascade delete, the app asks the daemon for a snapshot over the socket and waits: {} ({} capture: the app kept its connection; {} attempt(s), {} ms; customer {VICTIM} has {orders} orders in it).",
            m.id, m.capture.method, m.capture.attempts, m.capture.duration_ms
        );
        self.say(&what, "ducksnap snapshot --reason pre-delete   # Python: @with_snapshot(reason=\"pre-delete\") on the delete (from ducksnap import with_snapshot)")?;
        Ok(m.id.to_string())
    }

    fn cascade_delete(&mut self, before: i64) -> anyhow::Result<()> {
        let answer = self.ask(&format!("delete {VICTIM}"))?;
        ensure!(
            answer == format!("{before} 1"),
            "the delete removed {answer:?}"
        );
        ensure!(
            self.ask(&format!("count {VICTIM}"))? == "0",
            "orders left after the delete"
        );
        let what = format!(
            "The app deletes customer {VICTIM} and their {before} orders (one transaction). Oops."
        );
        self.say(&what, "")
    }

    fn list(&mut self) -> anyhow::Result<()> {
        self.say("The snapshots:", "ducksnap list")?;
        let listing = crate::ops::list(&self.ctx)?;
        for e in &listing.snapshots {
            let s = &e.summary;
            outln!(
                "        {}  {:<10}  {}  {}",
                s.id,
                s.reason,
                crate::cli::human::size(s.db_size + s.wal_size),
                s.label.as_deref().unwrap_or("")
            );
        }
        ensure!(!listing.snapshots.is_empty(), "no snapshot listed");
        Ok(())
    }

    fn restore(&mut self, id: &str) -> anyhow::Result<()> {
        self.ask("quit").ok();
        let mut app = self.app.take().context("no app")?;
        drop(app.stdin);
        let status = app.child.wait()?;
        ensure!(status.success(), "the app exited with {status}");
        let req = RestoreRequest {
            id: Some("latest:pre-delete".into()),
            as_of: None,
            to: None,
            force: false,
            check: false,
        };
        let (mut c, _) = client::daemon_for(&self.ctx)?.context("the daemon does not answer")?;
        let call = calls::restore(req);
        let r: Restored = serde_json::from_value(remote::answer(c.call(&call.request)?)?)?;
        ensure!(r.id.as_str() == id, "restored {} instead of {id}", r.id);
        ensure!(r.verified, "the restored file is not known good");
        let pre = r.pre_restore.context("no pre-restore safety snapshot")?;
        let what = format!(
            "The app closes its connection, and the pre-delete snapshot goes back over the database (every chunk and the whole file hash-checked; the state it replaced is kept too, as pinned snapshot {pre})."
        );
        self.say(&what, "ducksnap restore latest:pre-delete")
    }

    fn rows_back(&mut self, before: i64) -> anyhow::Result<()> {
        let config =
            crate::database::check::base_config()?.access_mode(duckdb::AccessMode::ReadOnly)?;
        let conn = duckdb::Connection::open_with_flags(&self.db, config)?;
        let (name, orders): (String, i64) = conn.query_row(
            "SELECT c.name, (SELECT count(*) FROM orders WHERE customer_id = c.id) FROM customers c WHERE c.id = ?",
            [VICTIM],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ).context("customer 42 is not back")?;
        let total: i64 = conn.query_row("SELECT count(*) FROM orders", [], |r| r.get(0))?;
        ensure!(
            orders == before,
            "customer {VICTIM} has {orders} orders, expected {before}"
        );
        ensure!(
            total == ORDERS + 1,
            "{total} orders in all, expected {}",
            ORDERS + 1
        );
        let what = format!(
            "The rows are back: {name} with {orders} orders (the one from the WAL too), {total} orders in all."
        );
        self.say(&what, "")
    }

    fn stop_daemon(&mut self) -> anyhow::Result<()> {
        let (tx, thread) = self.daemon.take().context("no daemon")?;
        tx.send(Control::Stop).ok();
        let joined = thread.join();
        if self.notify.take().is_some() {
            let _ = std::fs::remove_file(self.dir.join("notify.sock"));
        }
        match joined {
            Ok(Ok(0)) => Ok(()),
            Ok(Ok(code)) => bail!("the daemon exited with code {code}"),
            Ok(Err(e)) => Err(e.context("the daemon failed")),
            Err(_) => bail!("the daemon thread panicked"),
        }
    }

    /// Sends one command to the app and returns its answer.
    fn ask(&mut self, command: &str) -> anyhow::Result<String> {
        let app = self.app.as_mut().context("the app is not running")?;
        writeln!(app.stdin, "{command}")?;
        app.stdin.flush()?;
        self.read_app()
    }

    fn read_app(&mut self) -> anyhow::Result<String> {
        let app = self.app.as_mut().context("the app is not running")?;
        let mut line = String::new();
        if app.stdout.read_line(&mut line)? == 0 {
            bail!("the app exited");
        }
        let line = line.trim_end().to_string();
        if let Some(e) = line.strip_prefix("error ") {
            bail!("the app failed: {e}");
        }
        Ok(line)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut app) = self.app.take() {
            let _ = app.child.kill();
            let _ = app.child.wait();
        }
        if let Some((tx, thread)) = self.daemon.take() {
            tx.send(Control::Stop).ok();
            let _ = thread.join();
        }
    }
}

/// This process's environment without what would make the in-process daemon
/// adopt another socket, notify another service manager or change the mode;
/// `notify` is where it announces READY=1.
fn demo_env(dir: &Path, notify: Option<&Path>) -> HostEnv {
    let mut vars = HostEnv::from_process().vars;
    vars.retain(|k, _| {
        !(k.starts_with("LISTEN_")
            || k.starts_with("WATCHDOG_")
            || k.starts_with("DUCKSNAP_")
            || k == "NOTIFY_SOCKET")
    });
    if let Some(n) = notify {
        vars.insert("NOTIFY_SOCKET".into(), n.display().to_string());
    }
    HostEnv {
        vars,
        cwd: dir.to_path_buf(),
    }
}

/// Runs the daemon on its own runtime; tells the notify socket when it
/// ends, so that a daemon that fails to start does not leave the demo
/// waiting.
fn daemon_thread(
    ctx: Ctx,
    env: HostEnv,
    reload: crate::daemon::Reload,
    rx: mpsc::UnboundedReceiver<Control>,
    notify: PathBuf,
) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(crate::daemon::serve(ctx, env, reload, rx));
    rt.shutdown_background();
    if let Err(e) = &result
        && let Ok(s) = UnixDatagram::unbound()
    {
        let _ = s.send_to(format!("ENDED: {e:#}").as_bytes(), &notify);
    }
    result
}
