//! The daemon as a service: signals and systemd notifications, the unit
//! files, socket activation, one daemon per project, reloads.

use crate::helpers::daemon::*;
use crate::helpers::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn signals_and_systemd_notifications() {
    let ws = Workspace::new();
    set_config(&ws, "[schedule]\nenabled = false\n");
    make_big(&ws, 1_500_000);
    let mut d = Daemon::start(&ws, &[]);
    assert_eq!(ws.json(&["status", "--json"])["next_run"], Value::Null);

    // SIGHUP with a changed schedule takes effect.
    set_config(&ws, "[schedule]\ncron = \"* * * * * *\"\n");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let n = d.notification();
    assert!(n.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{n}");
    let usec: u64 = n
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("MONOTONIC_USEC=")
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(d.notification().starts_with("READY=1"));
    d.wait_event("daemon.reloaded", Duration::from_secs(10));
    d.wait_event("snapshot.created", Duration::from_secs(30));

    // SIGHUP with an invalid config: error logged, old config kept, still serving.
    std::fs::write(ws.config_path(), "[database]\nbogus = 1\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(d.notification().starts_with("RELOADING=1"));
    assert!(d.notification().starts_with("READY=1"));
    let e = d.wait_event("daemon.reload_failed", Duration::from_secs(10));
    assert!(e["error"].as_str().unwrap().contains("bogus"), "{e}");
    assert_eq!(d.connect().call(json!({"op": "ping"}))["result"], "pong");
    d.wait_event("schedule.skipped", Duration::from_secs(30)); // the old schedule still runs

    // SIGTERM during a long snapshot: exit 0 within the bound, socket gone.
    set_config(&ws, "[schedule]\nenabled = false\n");
    write_db(
        &ws.db(),
        "UPDATE events SET amount = amount + 1 WHERE id < 1000000",
    );
    let socket = d.socket.clone();
    let client = std::thread::spawn(move || {
        Conn::new(&socket).call(json!({"op": "snapshot", "reason": "long"}))
    });
    d.wait_event("snapshot.started", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let stopping = d.notification();
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    let code = d.wait_exit(Duration::from_secs(30));
    println!(
        "SIGTERM during a snapshot: exited {code:?} after {:?}",
        t.elapsed()
    );
    assert_eq!(code, Some(0));
    assert!(!d.socket.exists(), "socket file left behind");
    let answer = client.join().unwrap();
    println!("in-flight client got: {}", answer["ok"]);
    let out = ws.run(&["verify", "--all"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn unit_files_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    // Copy them all first: the socket unit refers to the service.
    let mut units = Vec::new();
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        // The unit runs the installed binary; point it at the one under test.
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("%h/.cargo/bin/ducksnap", BIN);
        let copy = dir.path().join(p.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        units.push(copy);
    }
    assert!(units.iter().any(|u| u.extension().unwrap() == "service"));
    // A template is verified as one of its instances (the template stays
    // too: OnFailure= names instances of ducksnap-alert@.service).
    for u in units.iter_mut() {
        let name = u.file_name().unwrap().to_str().unwrap().to_string();
        if let Some(prefix) = name.strip_suffix("@.service") {
            let instance = u.with_file_name(format!("{prefix}@shop.service"));
            std::fs::copy(&*u, &instance).unwrap();
            *u = instance;
        }
    }
    assert!(units.iter().any(|u| u.extension().unwrap() == "timer"));
    assert!(units.iter().any(|u| u.extension().unwrap() == "socket"));
    for u in &units {
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(u)
            .output()
            .expect("systemd-analyze (installed by .ci/run)");
        assert!(
            out.stderr.is_empty() && out.status.success(),
            "{}: {}",
            u.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_bad_config_stops_the_unit_instead_of_restarting_it() {
    // The daemon exits 2 on a bad config, and the unit does not restart on 2.
    let ws = Workspace::new();
    std::fs::write(ws.config_path(), "[store]\ncompression_level = 40\n").unwrap();
    let out = ws.run(&["daemon"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/ducksnap.service"),
    )
    .unwrap();
    let prevent: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("RestartPreventExitStatus="))
        .flat_map(|v| v.split_whitespace())
        .collect();
    assert!(
        prevent.contains(&"2"),
        "RestartPreventExitStatus lacks 2: {prevent:?}"
    );
}

#[test]
fn socket_activation_uses_the_passed_socket() {
    let ws = daemon_ws("[schedule]\nenabled = false\n", "CREATE TABLE t(i INTEGER)");
    let sock = ws.path().join("activated.sock");
    // Python plays systemd: binds the socket and passes it as descriptor 3
    // with LISTEN_FDS and LISTEN_PID set for the daemon's own pid.
    let script = "import os, socket, sys\n\
        s = socket.socket(socket.AF_UNIX)\n\
        s.bind(sys.argv[1])\n\
        s.listen(16)\n\
        os.dup2(s.fileno(), 3)\n\
        os.set_inheritable(3, True)\n\
        pid = os.fork()\n\
        if pid == 0:\n    \
        env = dict(os.environ, LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n    \
        os.execve(sys.argv[2], [sys.argv[2], '--config', sys.argv[3], 'daemon'], env)\n\
        print(pid, flush=True)\n";
    let mut py = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&sock)
        .arg(BIN)
        .arg(ws.config_path())
        .current_dir(ws.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(py.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: i32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid: {line:?}"));
    py.wait().unwrap();
    let mut c = Conn::new(&sock);
    assert_eq!(c.call(json!({"op": "ping"}))["result"], "pong");
    assert_eq!(c.call(json!({"op": "hello"}))["result"]["pid"], pid);
    assert!(
        !socket_of(&ws).exists(),
        "an activated daemon must not bind its own socket"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sock.exists(),
        "the socket file belongs to systemd and stays"
    );
}

#[test]
fn the_template_unit_runs_one_daemon_per_project() {
    // Two projects, started the way ducksnap@shop and ducksnap@blog start:
    // the unit's environment only, no --config, no socket.path.
    let ws = Workspace::new();
    let (config_home, runtime) = (ws.path().join("config"), ws.path().join("runtime"));
    std::fs::create_dir_all(config_home.join("ducksnap")).unwrap();
    let mut daemons = Vec::new();
    for project in ["shop", "blog"] {
        let db = ws.path().join(project).join("app.duckdb");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        make_db(&db, &format!("CREATE TABLE {project}(i INTEGER)"));
        std::fs::write(
            config_home.join("ducksnap").join(format!("{project}.toml")),
            format!(
                "[database]\npath = \"{}\"\nmode = \"local\"\n[store]\ndir = \"{}\"\nmin_free_space = \"1MiB\"\n[schedule]\nenabled = false\n[log]\nformat = \"json\"\n",
                db.display(),
                ws.path().join(project).join("backups").display()
            ),
        )
        .unwrap();
        let env = unit_environment("ducksnap@.service", project, &config_home, &runtime);
        assert!(env.iter().any(|(k, _)| k == "DUCKSNAP_CONFIG"), "{env:?}");
        let mut cmd = ws.bare_cmd();
        cmd.arg("daemon").envs(env);
        let socket = runtime.join("ducksnap").join(format!("{project}.sock"));
        daemons.push((project, db, Daemon::spawn(&ws, cmd, socket)));
    }
    for (project, db, d) in &daemons {
        let hello = d.connect().call(json!({"op": "hello"}));
        assert_eq!(hello["result"]["database"], json!(db), "{project}: {hello}");
        let snap = d.connect().call(json!({"op": "snapshot", "database": db}));
        assert_eq!(snap["ok"], true, "{project}: {snap}");
        let tables = &snap["result"]["snapshot"]["check"]["tables"];
        assert_eq!(
            tables[0]["name"], *project,
            "{project} snapshotted its own database: {tables}"
        );
    }
    // Asking shop's daemon about blog's database is refused.
    let (_, blog_db, _) = &daemons[1];
    let r = daemons[0]
        .2
        .connect()
        .call(json!({"op": "snapshot", "database": blog_db}));
    assert_eq!(r["error"]["code"], "wrong_database", "{r}");
}

#[test]
fn a_reload_reaches_the_watcher() {
    // Started with the watcher off; the reloaded config turns it on (with
    // snapshots on change) and points it at another database, with its own
    // store (a store belongs to one database).
    let ws = daemon_ws(
        "[schedule]\nenabled = false\n[watch]\nenabled = false\n",
        "CREATE TABLE t(i INTEGER)",
    );
    let mut d = Daemon::start(&ws, &[]);
    let other = ws.path().join("data/other.duckdb");
    make_db(&other, "CREATE TABLE u(i INTEGER)");
    let text = config(
        &ws,
        "[schedule]\nenabled = false\n[watch]\nsnapshot_on_change = true\ndebounce = \"100ms\"\nquiet_period = \"200ms\"\nmin_interval = \"1s\"\n",
    )
    .replace("data/app.duckdb", "data/other.duckdb")
    .replace("data/backups", "data/other-backups");
    std::fs::write(ws.config_path(), text).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let reloaded = d.wait_event("watch.reloaded", Duration::from_secs(10));
    assert!(
        reloaded["database"]
            .as_str()
            .unwrap()
            .ends_with("other.duckdb"),
        "{reloaded}"
    );
    write_db(&other, "INSERT INTO u VALUES (1)");
    let created = d.wait_event("snapshot.created", Duration::from_secs(30));
    assert_eq!(created["reason"], "change", "{created}");
    let id = created["id"].as_str().unwrap();
    let shown = ws.json(&["show", id, "--json"]);
    let path = shown["manifest"]["database"]["path"].as_str().unwrap();
    assert!(path.ends_with("other.duckdb"), "{path}");
}
