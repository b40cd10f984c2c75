//! The daemon harness: a real `ducksnap daemon` with a fake
//! `NOTIFY_SOCKET` and its JSON log on a channel ([`Daemon`]); the daemon
//! in this test process, for tests that need only its socket
//! ([`InProcess`]); a socket connection ([`Conn`]); and the configs and
//! databases the daemon tests use.

use super::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `ducksnap daemon` with a fake `NOTIFY_SOCKET`; its JSON log
/// lines arrive on a channel. Stopped (SIGTERM, then SIGKILL) on drop.
pub(crate) struct Daemon {
    pub(crate) child: Option<Child>,
    pub(crate) socket: PathBuf,
    /// What the daemon sent `$NOTIFY_SOCKET`, read by a thread as it
    /// arrives (as systemd does: a full queue would make it drop messages).
    pub(crate) notify: mpsc::Receiver<String>,
    pub(crate) logs: mpsc::Receiver<Value>,
    pub(crate) seen: Vec<Value>,
}

pub(crate) fn socket_of(ws: &Workspace) -> PathBuf {
    ws.path().join("run/ducksnap.sock")
}

/// Config text with a socket in the workspace. Continuous archiving is
/// off unless `extra` has a `[continuous]` section (as `Workspace::
/// write_config` says why).
pub(crate) fn config(ws: &Workspace, extra: &str) -> String {
    let off = if extra.contains("[continuous]") {
        ""
    } else {
        "[continuous]\nenabled = false\n"
    };
    format!(
        "[database]\npath = \"data/app.duckdb\"\nmode = \"local\"\n[store]\ndir = \"data/backups\"\nmin_free_space = \"1MiB\"\n\
         [socket]\npath = \"{}\"\nidle_timeout = \"3s\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n{off}{extra}",
        socket_of(ws).display()
    )
}

/// Writes the daemon config (with `extra`) into the workspace.
pub(crate) fn set_config(ws: &Workspace, extra: &str) {
    std::fs::write(ws.config_path(), config(ws, extra)).unwrap();
}

/// A workspace with the daemon config and a database made by `sql`.
pub(crate) fn daemon_ws(extra: &str, sql: &str) -> Workspace {
    let ws = Workspace::new();
    set_config(&ws, extra);
    make_db(&ws.db(), sql);
    ws
}

impl Daemon {
    pub(crate) fn start(ws: &Workspace, extra_env: &[(&str, &str)]) -> Daemon {
        let mut cmd = ws.cmd(&["daemon"]);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Daemon::spawn(ws, cmd, socket_of(ws))
    }

    /// Starts `cmd` (a `ducksnap daemon` command) listening on `socket`;
    /// returns once it said READY=1.
    pub(crate) fn spawn(ws: &Workspace, mut cmd: std::process::Command, socket: PathBuf) -> Daemon {
        let (notify_path, notify) = notify_socket(ws);
        cmd.env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or_else(|_| json!({"raw": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let d = Daemon {
            child: Some(child),
            socket,
            notify,
            logs: rx,
            seen: Vec::new(),
        };
        let ready = d.notification();
        assert!(ready.starts_with("READY=1"), "first notification: {ready}");
        d
    }

    pub(crate) fn notification(&self) -> String {
        // STATUS= updates after each job are not what callers wait for.
        loop {
            let n = self.notification_raw();
            if !n.starts_with("STATUS=") {
                return n;
            }
        }
    }

    /// The next notification, whatever it is.
    pub(crate) fn notification_raw(&self) -> String {
        self.notify
            .recv_timeout(Duration::from_secs(60))
            .expect("a systemd notification")
    }

    /// Waits for a log event with this `event` field (and optional field match).
    pub(crate) fn wait_event(&mut self, event: &str, timeout: Duration) -> Value {
        self.wait_where(timeout, |v| v["event"] == event)
            .unwrap_or_else(|| {
                panic!(
                    "no {event} event within {timeout:?}; seen: {:#?}",
                    self.seen
                        .iter()
                        .map(|v| v["event"].clone())
                        .collect::<Vec<_>>()
                )
            })
    }

    pub(crate) fn wait_where(
        &mut self,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.logs.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if f(&v) {
                        return Some(v);
                    }
                }
                Err(_) => break,
            }
        }
        None
    }

    /// How many events named `event` the daemon logged so far: the lines
    /// its log pipe holds now are read first (after [`Daemon::stop`], the
    /// whole log).
    pub(crate) fn count(&mut self, event: &str) -> usize {
        while let Ok(v) = self.logs.try_recv() {
            self.seen.push(v);
        }
        self.seen.iter().filter(|v| v["event"] == event).count()
    }

    /// Stops the daemon (SIGTERM) and reads its log to the end; returns
    /// its exit code.
    pub(crate) fn stop(&mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let code = self.wait_exit(Duration::from_secs(25));
        // The reader thread hangs up at the pipe's end.
        while let Ok(v) = self.logs.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(v);
        }
        code
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub(crate) fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for exit; returns the code.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn connect(&self) -> Conn {
        Conn::new(&self.socket)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(25);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A fake `NOTIFY_SOCKET` in the workspace: its path, and what arrives on
/// it, read by a thread as it arrives (as systemd does: a full queue would
/// make the daemon drop messages).
fn notify_socket(ws: &Workspace) -> (PathBuf, mpsc::Receiver<String>) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let notify_path = ws.path().join(format!("notify-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&notify_path);
    let dgram = UnixDatagram::bind(&notify_path).unwrap();
    let (notify_tx, notify) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = dgram.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if notify_tx.send(msg).is_err() {
                break;
            }
        }
    });
    (notify_path, notify)
}

/// The daemon run inside this test process: `daemon::serve` on a thread
/// with a runtime of its own, the workspace's config, a fake
/// `NOTIFY_SOCKET` given through the injected `HostEnv` (the process
/// environment is never touched). For tests that need only the socket: no
/// binary, no log lines, no signals. Stopped (`Control::Stop`) and joined
/// on drop.
pub(crate) struct InProcess {
    control: tokio::sync::mpsc::UnboundedSender<ducksnap::daemon::Control>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<u8>>>,
    pub(crate) socket: PathBuf,
}

impl InProcess {
    /// Starts it; returns once it said READY=1.
    pub(crate) fn start(ws: &Workspace) -> InProcess {
        use ducksnap::config::HostEnv;
        let (notify_path, notify) = notify_socket(ws);
        let env = HostEnv {
            vars: [(
                "NOTIFY_SOCKET".to_string(),
                notify_path.display().to_string(),
            )]
            .into(),
            cwd: ws.path().to_path_buf(),
        };
        let path = ws.config_path();
        let config = ducksnap::config::load_file(&path, &env).unwrap();
        let detection =
            ducksnap::environment::detect(&env, &config.database.path, config.database.mode);
        let socket = config.socket.path.clone();
        let ctx = ducksnap::ops::Ctx { config, detection };
        let reload_env = env.clone();
        let reload: ducksnap::daemon::Reload =
            Box::new(move || ducksnap::config::load_file(&path, &reload_env));
        let (control, rx) = tokio::sync::mpsc::unbounded_channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let r = rt.block_on(ducksnap::daemon::serve(ctx, env, reload, rx));
            rt.shutdown_background();
            r
        });
        let ready = notify
            .recv_timeout(Duration::from_secs(60))
            .expect("READY=1 from the daemon");
        assert!(ready.starts_with("READY=1"), "first notification: {ready}");
        InProcess {
            control,
            thread: Some(thread),
            socket,
        }
    }

    pub(crate) fn connect(&self) -> Conn {
        Conn::new(&self.socket)
    }

    /// Stops it as SIGTERM would; its exit code.
    pub(crate) fn stop(mut self) -> u8 {
        let _ = self.control.send(ducksnap::daemon::Control::Stop);
        let thread = self.thread.take().expect("running");
        thread.join().expect("the daemon thread").expect("serve")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.control.send(ducksnap::daemon::Control::Stop);
            let _ = t.join();
        }
    }
}

pub(crate) struct Conn {
    pub(crate) reader: BufReader<UnixStream>,
    pub(crate) writer: UnixStream,
}

impl Conn {
    pub(crate) fn new(path: &Path) -> Conn {
        let s =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        Conn {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    pub(crate) fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad response line {line:?}: {e}")),
            ),
        }
    }

    pub(crate) fn call(&mut self, req: Value) -> Value {
        let mut line = serde_json::to_vec(&req).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
        self.read().expect("a response")
    }

    /// True once the daemon has closed the connection.
    pub(crate) fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}

pub(crate) fn write_db(db: &Path, sql: &str) {
    // The daemon may be mid-capture (its OFD read lock keeps writers out for
    // the copy): retry until DuckDB can open the file.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match duckdb::Connection::open(db) {
            Ok(c) => {
                c.execute_batch(sql).unwrap();
                c.execute_batch("CHECKPOINT").unwrap();
                return;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("open {}: {e}", db.display()),
        }
    }
}

/// Runs the CLI with `env` added to the workspace's clean environment.
pub(crate) fn cli_with(
    ws: &Workspace,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let mut c = ws.cmd(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The rows of `table` in the newest snapshot (restored to a copy).
pub(crate) fn count_in_newest(ws: &Workspace, table: &str) -> i64 {
    let newest = ws.json(&["list", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let copy = ws.path().join(format!("newest-{newest}.duckdb"));
    ws.json(&[
        "restore",
        &newest,
        "--to",
        copy.to_str().unwrap(),
        "--yes",
        "--json",
    ]);
    query_i64(&open_ro(&copy), &format!("SELECT count(*) FROM {table}"))
}

/// `Environment=` lines of a unit file, with `%i`, `%E` and `%t` as given.
pub(crate) fn unit_environment(
    unit: &str,
    instance: &str,
    config_home: &Path,
    runtime: &Path,
) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(unit),
    )
    .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .map(|kv| {
            let kv = kv
                .replace("%i", instance)
                .replace("%E", config_home.to_str().unwrap())
                .replace("%t", runtime.to_str().unwrap());
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What a snapshot holds: each file's role and hash.
pub(crate) fn content(ws: &Workspace, id: &str) -> Vec<(String, String)> {
    ws.manifest(id)
        .files
        .iter()
        .map(|f| (f.role.to_string(), f.hash.clone()))
        .collect()
}

/// Overwrites everything after DuckDB's three header blocks: the header
/// still reads, the data does not. From another process: closing any
/// descriptor of the file in this one would drop the POSIX lock a
/// connection of this process holds on it.
pub(crate) fn corrupt_data_blocks(db: &Path) {
    let code = "import os,sys\nn=os.path.getsize(sys.argv[1])\nf=open(sys.argv[1],'r+b')\nf.seek(12288)\nf.write(b'\\xff'*(n-12288))";
    let out = std::process::Command::new("python3")
        .args(["-c", code])
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One failure class, through the CLI (working on the store directly) and
/// through the socket (a daemon on the same workspace): the exit code and
/// the wire code are those the one table gives.
pub(crate) fn assert_one_code(
    ws: &Workspace,
    code: ducksnap::protocol::ErrorCode,
    cli: &[&str],
    wire: Value,
    env: &[(&str, &str)],
) {
    let out = cli_with(ws, env, cli);
    assert_eq!(
        out.status.code(),
        Some(code.exit_code() as i32),
        "{code}: ducksnap {cli:?}: {}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let d = Daemon::start(ws, env);
    let r = d.connect().call(wire.clone());
    assert_eq!(r["ok"], false, "{code}: {wire} answered {r}");
    assert_eq!(
        r["error"]["code"],
        json!(code),
        "{code}: {wire} answered {r}"
    );
    assert_eq!(r["error"]["code"], code.as_str());
}
