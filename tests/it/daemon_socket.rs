//! The daemon's socket: requests and their answers, concurrent and hostile
//! clients, other users, a squatted or stale socket, one error table for the
//! CLI and the socket. The real binary on real DuckDB files.

use crate::helpers::daemon::*;
use crate::helpers::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn restore_over_the_socket_with_and_without_check() {
    let ws = daemon_ws(
        "[schedule]\nenabled = false\n",
        "CREATE TABLE t AS SELECT range i FROM range(1000)",
    );
    let d = InProcess::start(&ws);
    let mut c = d.connect();
    let s = c.call(json!({"op": "snapshot", "reason": "manual"}));
    let id = s["result"]["snapshot"]["id"].as_str().unwrap().to_string();
    // The answer is the stored manifest less its chunk lists; the store
    // (and `show`) keep them.
    let stored: Value = serde_json::from_slice(
        &std::fs::read(ws.store_dir().join(format!("snapshots/{id}.json"))).unwrap(),
    )
    .unwrap();
    let shown = c.call(json!({"op": "show", "id": id}))["result"]["manifest"].clone();
    assert_eq!(shown, stored);
    let mut without = stored.clone();
    for f in without["files"].as_array_mut().unwrap() {
        assert!(
            !f["chunks"].as_array().unwrap().is_empty(),
            "the stored manifest lists its chunks: {f}"
        );
        f.as_object_mut().unwrap().remove("chunks");
    }
    assert_eq!(s["result"]["snapshot"], without);
    for check in [false, true] {
        let to = ws.path().join(format!("copy-{check}.duckdb"));
        let v = c.call(json!({"op": "restore", "id": id, "to": to, "check": check}));
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["result"]["checked"], check, "{v}");
        assert_eq!(v["result"]["verified"], true, "{v}");
        assert_eq!(query_i64(&open_ro(&to), "SELECT count(*) FROM t"), 1000);
    }
    drop(c);
    assert_eq!(d.stop(), 0, "a clean stop");
}

#[test]
fn daemon_checks_with_one_kept_duckdb_instance() {
    // The daemon keeps one DuckDB instance and ATTACHes each file it checks:
    // every check must still see the file as it is now (no stale blocks),
    // replay a WAL, and handle odd names; deep verify goes the same way.
    let ws = daemon_ws(
        "[schedule]\nenabled = false\n",
        "CREATE TABLE t AS SELECT range i FROM range(1000);
         CREATE SCHEMA \"s'q\"; CREATE TABLE \"s'q\".\"odd \"\"name\" AS SELECT 1 AS x;",
    );
    let mut d = Daemon::start(&ws, &[]);
    let mut c = d.connect();
    let rows = |snap: &Value, table: &str| -> u64 {
        snap["check"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == table)
            .unwrap_or_else(|| panic!("no table {table} in {snap}"))["rows"]
            .as_u64()
            .unwrap()
    };
    let mut snap = || {
        let v = c.call(json!({"op": "snapshot", "reason": "manual"}));
        assert_eq!(v["ok"], true, "{v}");
        v["result"]["snapshot"].clone()
    };
    let s1 = snap();
    assert_eq!(s1["check"]["status"], "verified");
    assert_eq!(rows(&s1, "t"), 1000);
    assert_eq!(rows(&s1, "odd \"name"), 1);
    write_db(&ws.db(), "INSERT INTO t SELECT range FROM range(500)");
    assert_eq!(rows(&snap(), "t"), 1500, "a stale view of the file");
    run_python(
        "import duckdb,sys
c=duckdb.connect(sys.argv[1]); c.execute('SET enable_progress_bar = false')
c.execute('pragma disable_checkpoint_on_shutdown')
c.execute('insert into t select range from range(250)')
c.close()",
        &[ws.db().to_str().unwrap()],
    );
    assert!(ws.db().with_extension("duckdb.wal").exists());
    let s3 = snap();
    assert_eq!(rows(&s3, "t"), 1750, "the WAL was not replayed");
    assert_eq!(s3["files"].as_array().unwrap().len(), 2);
    let v = c.call(json!({"op": "verify", "deep": true}));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["result"]["problems"], 0, "{v}");
    assert_eq!(v["result"]["checked"], 3, "{v}");
    // A file DuckDB cannot open fails its check, and the kept instance
    // still checks the next one correctly.
    let good = std::fs::read(ws.db()).unwrap();
    std::fs::write(ws.db(), &good[..12288 + 4096]).unwrap();
    let v = c.call(json!({"op": "snapshot", "reason": "manual"}));
    assert_eq!(v["ok"], false, "a truncated database was snapshotted: {v}");
    std::fs::write(ws.db(), &good).unwrap();
    let v = c.call(json!({"op": "snapshot", "reason": "manual"}));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(rows(&v["result"]["snapshot"], "t"), 1750);
    // Drain the log so far.
    d.wait_where(Duration::from_millis(500), |_| false);
    assert_eq!(d.count("check.attached"), 7, "4 snapshots + 3 deep checks");
    assert_eq!(d.count("check.detach_failed"), 0);
    assert_eq!(d.count("check.instance_failed"), 0);
}

#[test]
fn fifty_concurrent_snapshot_requests() {
    let ws = daemon_ws(
        "[schedule]\nenabled = false\n",
        "CREATE TABLE t AS SELECT range i FROM range(1000)",
    );
    let d = InProcess::start(&ws);
    let socket = d.socket.clone();
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Conn::new(&socket);
                c.call(json!({"op": "snapshot", "reason": "pre-delete", "label": format!("client {i}")}))
            })
        })
        .collect();
    let answers: Vec<Value> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut ids = std::collections::BTreeSet::new();
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a["ok"], true, "client {i}: {a}");
        assert_eq!(a["result"]["snapshot"]["label"], format!("client {i}"));
        ids.insert(a["result"]["snapshot"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 50, "ids are not distinct");
    // No overlapping captures: each starts after the previous ended.
    let mut spans: Vec<(i64, i64)> = answers
        .iter()
        .map(|a| {
            let m = &a["result"]["snapshot"];
            let start = chrono::DateTime::parse_from_rfc3339(m["created_at"].as_str().unwrap())
                .unwrap()
                .timestamp_micros();
            (
                start,
                start + m["capture"]["duration_ms"].as_i64().unwrap() * 1000,
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0 + 1000, "captures overlap: {w:?}");
    }
    let out = ws.run(&["verify", "--all"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn hostile_clients_do_not_hurt() {
    let ws = daemon_ws(
        "[schedule]\nenabled = false\n",
        "CREATE TABLE t AS SELECT range i FROM range(1000)",
    );
    let d = InProcess::start(&ws);
    let mut c = d.connect();
    assert_eq!(c.call(json!({"op": "hello"}))["result"]["protocol"], 1);
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();
    c.send_raw(b"{not json\n");
    assert_eq!(code(&c.read().unwrap()), "invalid_json");
    assert_eq!(
        code(&c.call(json!({"op": "format_disk"}))),
        "invalid_request"
    );
    assert_eq!(
        code(&c.call(json!({"op": "snapshot", "pin": "yes"}))),
        "invalid_request"
    );
    assert_eq!(
        code(&c.call(json!({"op": "show", "id": 7}))),
        "invalid_request"
    );
    assert_eq!(
        code(&c.call(json!({"op": "show", "id": "../../etc/passwd"}))),
        "invalid_argument"
    );
    assert_eq!(
        code(&c.call(json!({"op": "list", "extra": 1}))),
        "invalid_request"
    );
    assert_eq!(code(&c.call(json!([1, 2]))), "invalid_request");
    c.send_raw(&[0xff, 0xfe, 0x00, 0x01, b'\n']);
    assert_eq!(code(&c.read().unwrap()), "invalid_json");
    assert_eq!(
        c.call(json!({"op": "ping"}))["result"],
        "pong",
        "the connection survives bad lines"
    );

    // 1 MiB with no newline: error, connection closed.
    let mut big = d.connect();
    let writer = {
        let mut w = big.writer.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&vec![b'a'; 1 << 20]);
        })
    };
    assert_eq!(code(&big.read().unwrap()), "line_too_long");
    assert!(big.closed());
    let _ = writer.join();

    // Several hundred connections held open, some that never send.
    let held: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    let t = Instant::now();
    let mut good = d.connect();
    assert_eq!(good.call(json!({"op": "ping"}))["result"], "pong");
    let snap = good.call(json!({"op": "snapshot", "reason": "pre-delete"}));
    assert_eq!(snap["ok"], true, "{snap}");
    println!(
        "well-behaved client served in {:?} with 300 idle connections open",
        t.elapsed()
    );
    // Idle ones are closed after the idle timeout with an error.
    let mut idle = Conn {
        writer: held[0].try_clone().unwrap(),
        reader: BufReader::new(held[0].try_clone().unwrap()),
    };
    assert_eq!(code(&idle.read().unwrap()), "idle_timeout");
    assert!(idle.closed());
    drop(held);
    assert_eq!(d.connect().call(json!({"op": "ping"}))["result"], "pong");
    let out = ws.run(&["verify", "--all"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn another_uid_is_refused() {
    if !nix::unistd::getuid().is_root() {
        println!(
            "not root: cannot run a client as another user here; the check is exercised only where root"
        );
        return;
    }
    let ws = daemon_ws("[schedule]\nenabled = false\n", "CREATE TABLE t(i INTEGER)");
    let d = Daemon::start(&ws, &[]);
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // Let the other user reach the socket at all, so the daemon's own check decides.
    for p in [ws.path().to_path_buf(), ws.path().join("run")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
             try:\n    s.sendall(b'{\"op\":\"list\"}\\n')\nexcept BrokenPipeError:\n    pass\n\
             print(s.makefile().readline())",
        )
        .arg(&d.socket)
        .uid(65534)
        .gid(65534)
        .env_clear()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    assert_eq!(d.connect().call(json!({"op": "ping"}))["result"], "pong");
}

#[test]
fn stale_socket_and_second_daemon() {
    let ws = daemon_ws("[schedule]\nenabled = false\n", "CREATE TABLE t(i INTEGER)");
    let mut d = Daemon::start(&ws, &[]);
    d.child.as_mut().unwrap().kill().unwrap(); // SIGKILL: the socket file stays
    d.wait_exit(Duration::from_secs(10));
    assert!(d.socket.exists(), "expected a stale socket file");
    let d2 = Daemon::start(&ws, &[]);
    assert_eq!(d2.connect().call(json!({"op": "ping"}))["result"], "pong");
    let out = ws.run(&["daemon"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("already answering"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        d2.connect().call(json!({"op": "ping"}))["result"],
        "pong",
        "the first daemon kept its socket"
    );
}

#[test]
fn cloud_mode_daemon_answers_disabled() {
    let ws = Workspace::new();
    std::fs::write(
        ws.config_path(),
        config(&ws, "").replace("mode = \"local\"\n", "mode = \"auto\"\n"),
    )
    .unwrap();
    let mut d = Daemon::start(&ws, &[("STREAMLIT_SHARING_MODE", "1")]);
    d.wait_event("daemon.cloud_mode", Duration::from_secs(5));
    let warn = d
        .seen
        .iter()
        .find(|v| v["event"] == "daemon.cloud_mode")
        .unwrap()
        .clone();
    assert_eq!(warn["level"], "WARN");
    assert!(
        warn["message"].as_str().unwrap().contains("MotherDuck"),
        "{warn}"
    );
    let mut c = d.connect();
    let s = c.call(json!({"op": "snapshot", "reason": "pre-delete"}));
    assert_eq!(
        s["result"],
        json!({"snapshot": null, "disabled": true, "reason": s["result"]["reason"]})
    );
    assert_eq!(c.call(json!({"op": "list"}))["result"], json!([]));
    assert_eq!(
        c.call(json!({"op": "restore", "id": "20260101T000000Z-0000"}))["error"]["code"],
        "disabled"
    );
    assert_eq!(c.call(json!({"op": "prune"}))["result"]["removed"], 0);
    assert_eq!(c.call(json!({"op": "verify"}))["result"]["disabled"], true);
    assert_eq!(c.call(json!({"op": "status"}))["result"]["mode"], "cloud");
    d.wait_where(Duration::from_millis(500), |_| false);
    assert_eq!(d.count("daemon.cloud_mode"), 1, "one warning, not a storm");
    assert!(!ws.store_dir().exists(), "cloud mode created a store");
}

#[test]
fn duplicate_keys_and_relative_paths_are_invalid_requests() {
    let ws = daemon_ws("[schedule]\nenabled = false\n", "CREATE TABLE t(i INTEGER)");
    let d = InProcess::start(&ws);
    let mut c = d.connect();
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();
    c.send_raw(b"{\"op\":\"ping\",\"op\":\"prune\"}\n");
    let v = c.read().unwrap();
    assert_eq!(code(&v), "invalid_request", "{v}");
    c.send_raw(b"{\"op\":\"snapshot\",\"label\":\"a\",\"label\":\"b\"}\n");
    assert_eq!(code(&c.read().unwrap()), "invalid_request");
    let v = c.call(json!({"op": "restore", "id": "20260101T000000Z-abcd", "to": "out.duckdb"}));
    assert_eq!(code(&v), "invalid_request", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("absolute"),
        "{v}"
    );
    assert_eq!(c.call(json!({"op": "ping"}))["result"], "pong");
    assert!(ws.list_ids().is_empty(), "nothing ran");
}

#[test]
fn a_squatted_socket_is_refused() {
    if !nix::unistd::getuid().is_root() {
        println!("not root: cannot act as another user here; exercised only as root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let ws = daemon_ws("[schedule]\nenabled = false\n", "CREATE TABLE t(i INTEGER)");
    // Another user created the socket directory first, open to all.
    let run = ws.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = ws.cmd(&["daemon"]).output().unwrap();
    assert!(
        !out.status.success(),
        "the daemon started in another user's directory"
    );
    assert!(
        stderr(&out).contains(&run.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("uid 65534"), "{}", stderr(&out));

    // Another user's server answers on the socket path.
    let fake = "import socket,sys,os,json\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\n\
                os.chmod(sys.argv[1], 0o777)\ns.listen(8)\nprint('ready', flush=True)\n\
                while True:\n    c,_=s.accept()\n    f=c.makefile('rwb')\n    for line in f:\n        \
                f.write(json.dumps({'ok': True, 'result': {'protocol': 1, 'store': sys.argv[2], \
                'snapshot': {'id': '20260101T000000Z-abcd'}, 'disabled': False}}).encode()+b'\\n')\n        f.flush()\n";
    let mut server = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(fake)
        .arg(socket_of(&ws))
        .arg(ws.store_dir())
        .uid(65534)
        .gid(65534)
        .env_clear()
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let out = ws.run(&["snapshot"]);
    assert!(
        !out.status.success(),
        "the CLI trusted another user's server: {}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("uid 65534"), "{}", stderr(&out));
    // The Python client: with_snapshot raises, the wrapped function does not run.
    let code = "import sys\nfrom ducksnap import Client, with_snapshot, UntrustedDaemon\n\
                ran = []\n@with_snapshot(client=Client(socket_path=sys.argv[1], force_local=True))\n\
                def delete():\n    ran.append(1)\ntry:\n    delete()\n    print('ran')\n\
                except UntrustedDaemon as e:\n    print('refused', ran, e)\n";
    let out = run_python(code, &[socket_of(&ws).to_str().unwrap()]);
    assert!(out.starts_with("refused []"), "{out}");
    let _ = server.kill();
    let _ = server.wait();
    assert!(ws.list_ids().is_empty());
}

#[test]
fn a_request_about_another_database_is_refused() {
    let ws = daemon_ws("[schedule]\nenabled = false\n", "CREATE TABLE t(i INTEGER)");
    let d = InProcess::start(&ws);
    let mut c = d.connect();
    let other = ws.path().join("other.duckdb");
    make_db(&other, "CREATE TABLE u(i INTEGER)");
    let r = c.call(json!({"op": "snapshot", "database": other}));
    assert_eq!(r["error"]["code"], "wrong_database", "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains(ws.db().to_str().unwrap()), "{msg}");
    assert!(ws.list_ids().is_empty(), "nothing was snapshotted");
    // The same file by another spelling (a link, `..`) is the same database.
    let link = ws.path().join("link.duckdb");
    std::os::unix::fs::symlink(ws.db(), &link).unwrap();
    let dotted = ws.path().join("data/../data/app.duckdb");
    for p in [link, dotted] {
        let r = c.call(json!({"op": "snapshot", "database": p}));
        assert_eq!(r["ok"], true, "{p:?}: {r}");
    }
    let r = c.call(json!({"op": "list", "database": "data/app.duckdb"}));
    assert_eq!(r["error"]["code"], "invalid_request", "{r}");
    let r = c.call(json!({"op": "list", "database": 3}));
    assert_eq!(r["error"]["code"], "invalid_request", "{r}");
}

#[test]
fn the_cli_uses_the_daemons_mode_whatever_the_shell_says() {
    let ws = daemon_ws(
        "[schedule]\nenabled = false\n",
        "CREATE TABLE t(i INTEGER); INSERT INTO t VALUES (1)",
    );
    // mode = "auto": the daemon's clean environment says local.
    let text = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        text.replace("mode = \"local\"", "mode = \"auto\""),
    )
    .unwrap();
    let _d = Daemon::start(&ws, &[]);
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    for signal in [
        ("STREAMLIT_SHARING_MODE", "1"),
        ("STREAMLIT_SERVER_HEADLESS", "true"),
    ] {
        let env = [signal];
        let list = cli_with(&ws, &env, &["list", "--json"]);
        let list: Value = serde_json::from_slice(&list.stdout).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1, "{signal:?}: {list}");
        let status = cli_with(&ws, &env, &["status", "--json"]);
        let status: Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(status["mode"], "local", "{status}");
        let prune = cli_with(&ws, &env, &["prune", "--dry-run", "--json"]);
        let prune: Value = serde_json::from_slice(&prune.stdout).unwrap();
        assert_eq!(prune["disabled"], false, "{prune}");
        let to = ws.path().join(format!("copy-{}.duckdb", signal.0));
        let out = cli_with(
            &ws,
            &env,
            &["restore", &id, "--to", to.to_str().unwrap(), "--yes"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let shown = stdout(&cli_with(&ws, &env, &["env"]));
        assert!(shown.contains("a daemon serves this store"), "{shown}");
    }
    // $DUCKSNAP_MODE in the shell wins, for every command alike.
    let env = [("DUCKSNAP_MODE", "cloud")];
    let list = cli_with(&ws, &env, &["list", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&list.stdout).unwrap(),
        json!([])
    );
    let out = cli_with(&ws, &env, &["restore", &id, "--yes"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let prune = cli_with(&ws, &env, &["prune", "--json"]);
    let prune: Value = serde_json::from_slice(&prune.stdout).unwrap();
    assert_eq!(prune["removed"], 0, "{prune}");
    assert_eq!(ws.list_ids(), vec![id.clone()], "nothing was touched");
    let out = cli_with(&ws, &[("DUCKSNAP_MODE", "sometimes")], &["list"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("DUCKSNAP_MODE"), "{}", stderr(&out));
}

#[test]
fn one_error_table_for_the_cli_and_the_socket() {
    use ducksnap::protocol::ErrorCode;
    let ws = daemon_ws(
        "[schedule]\nenabled = false\n[capture]\nattempts = 2\nbackoff = \"10ms\"\n",
        "CREATE TABLE t AS SELECT range i FROM range(100000)",
    );
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    let bad_id = json!({"op": "show", "id": "not-an-id"});
    assert_one_code(
        &ws,
        ErrorCode::InvalidArgument,
        &["show", "not-an-id"],
        bad_id,
        &[],
    );
    let unknown = "20260101T000000Z-0000";
    let wire = json!({"op": "show", "id": unknown});
    assert_one_code(&ws, ErrorCode::NotFound, &["show", unknown], wire, &[]);
    {
        let _app = duckdb::Connection::open(ws.db()).unwrap(); // holds DuckDB's lock
        let wire = json!({"op": "restore", "id": id});
        assert_one_code(&ws, ErrorCode::InUse, &["restore", &id, "--yes"], wire, &[]);
    }
    // Cloud mode (auto, with a cloud signal) refuses a restore.
    let text = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        text.replace("mode = \"local\"", "mode = \"auto\""),
    )
    .unwrap();
    let cloud = [("STREAMLIT_SHARING_MODE", "1")];
    let wire = json!({"op": "restore", "id": id});
    assert_one_code(
        &ws,
        ErrorCode::Disabled,
        &["restore", &id, "--yes"],
        wire,
        &cloud,
    );
    std::fs::write(ws.config_path(), text).unwrap();
    // A manifest that does not validate stops garbage collection.
    let bogus = ws
        .store_dir()
        .join("snapshots")
        .join("20260101T000000Z-0001.json");
    std::fs::write(&bogus, "{not json").unwrap();
    assert_one_code(
        &ws,
        ErrorCode::Damaged,
        &["prune"],
        json!({"op": "prune"}),
        &[],
    );
    std::fs::remove_file(&bogus).unwrap();
    // A database whose data blocks are garbage: idle, the copy fails
    // DuckDB's check (failed); held by an app, every online attempt does
    // (busy).
    corrupt_data_blocks(&ws.db());
    assert_one_code(
        &ws,
        ErrorCode::Failed,
        &["snapshot"],
        json!({"op": "snapshot"}),
        &[],
    );
    std::fs::remove_file(ws.db()).unwrap();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range i FROM range(100000)",
    );
    {
        let _app = duckdb::Connection::open(ws.db()).unwrap();
        corrupt_data_blocks(&ws.db());
        assert_one_code(
            &ws,
            ErrorCode::Busy,
            &["snapshot"],
            json!({"op": "snapshot"}),
            &[],
        );
    }
    std::fs::remove_file(ws.db()).unwrap();
    let _ = std::fs::remove_file(ws.path().join("data/app.duckdb.wal"));
    let wire = json!({"op": "snapshot"});
    assert_one_code(&ws, ErrorCode::DatabaseMissing, &["snapshot"], wire, &[]);
}

#[test]
fn last_error_has_a_time_clears_on_success_and_ignores_refusals() {
    let ws = daemon_ws(
        "[schedule]\nenabled = false\n",
        "CREATE TABLE t(i INTEGER); INSERT INTO t VALUES (1)",
    );
    let mut d = Daemon::start(&ws, &[]);
    let mut c = d.connect();
    let status = |c: &mut Conn| c.call(json!({"op": "status"}))["result"]["daemon"].clone();
    // A refused request is the caller's answer, not the daemon's error.
    let r = c.call(json!({"op": "restore", "id": "20260101T000000Z-0000"}));
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    assert!(status(&mut c)["last_error"].is_null());
    // A snapshot that cannot be taken: the file is not a DuckDB database.
    let good = std::fs::read(ws.db()).unwrap();
    std::fs::write(ws.db(), vec![7u8; 8192]).unwrap();
    let before = chrono::Utc::now();
    let r = c.call(json!({"op": "snapshot"}));
    assert_eq!(r["ok"], false, "{r}");
    let e = status(&mut c)["last_error"].clone();
    assert_eq!(e["what"], "snapshot", "{e}");
    let at: chrono::DateTime<chrono::Utc> = e["at"].as_str().unwrap().parse().unwrap();
    assert!(at >= before - chrono::Duration::seconds(1), "{e}");
    let human = stdout(&ws.run(&["status"]));
    assert!(
        human.contains("last error:") && human.contains(") snapshot:"),
        "{human}"
    );
    // The next successful snapshot clears it.
    std::fs::write(ws.db(), good).unwrap();
    let r = c.call(json!({"op": "snapshot"}));
    assert_eq!(r["ok"], true, "{r}");
    assert!(status(&mut c)["last_error"].is_null());
    // A config reload that fails, then one that works.
    std::fs::write(ws.config_path(), "[database\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_event("daemon.reload_failed", Duration::from_secs(10));
    assert_eq!(status(&mut c)["last_error"]["what"], "reload");
    set_config(&ws, "[schedule]\nenabled = false\n");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_event("daemon.reloaded", Duration::from_secs(10));
    assert!(status(&mut c)["last_error"].is_null());
}

#[test]
fn status_without_a_daemon_promises_no_next_run() {
    let ws = Workspace::new();
    ws.write_config("[schedule]\ncron = \"* * * * * *\"\n");
    make_db(&ws.db(), "CREATE TABLE t(i INTEGER)");
    let v = ws.json(&["status", "--json"]);
    assert!(v["next_run"].is_null(), "{v}");
    assert!(v["daemon"].is_null(), "{v}");
    let human = stdout(&ws.run(&["status"]));
    assert!(
        human.contains("next run:      none (no daemon runs"),
        "{human}"
    );
}
