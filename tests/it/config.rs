//! Config: shipped files load, lookup order, path resolution, and every class
//! of malformed config is refused naming the file and the key.

use std::path::Path;

use ducksnap::config::{self, HostEnv, Located, ModeSetting};

use crate::helpers::{Workspace, stderr, stdout};

fn env_at(cwd: &Path, vars: &[(&str, &str)]) -> HostEnv {
    HostEnv {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cwd: cwd.to_path_buf(),
    }
}

#[test]
fn shipped_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let env = env_at(Path::new("/"), &[]);
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let c = config::load_file(&p, &env).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(
                c.database.path,
                root.join("data/app.duckdb"),
                "{}",
                p.display()
            );
            assert_eq!(c.retention.keep_last, 10);
            n += 1;
        }
    }
    assert!(
        n >= 2,
        "expected the example and the default config, found {n}"
    );
}

#[test]
fn default_toml_equals_builtin_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let env = env_at(&root, &[]);
    let file = config::load_file(&root.join("default.toml"), &env).unwrap();
    let builtin = config::from_str_at("", None, &root, &env).unwrap();
    assert_eq!(
        serde_json::to_value(&file)
            .unwrap()
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "source")
            .collect::<Vec<_>>(),
        serde_json::to_value(&builtin)
            .unwrap()
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "source")
            .collect::<Vec<_>>()
    );
}

#[test]
fn builtin_defaults_when_nothing_found() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_at(dir.path(), &[("HOME", dir.path().to_str().unwrap())]);
    assert_eq!(config::locate(None, &env).unwrap(), Located::Defaults);
    let c = config::load(None, &env).unwrap();
    assert_eq!(c.database.path, dir.path().join("data/app.duckdb"));
    assert_eq!(c.store.dir, dir.path().join("data/backups"));
    assert_eq!(c.retention.keep_last, 10);
    assert_eq!(c.database.mode, ModeSetting::Auto);
}

#[test]
fn lookup_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let xdg = d.join("xdg/ducksnap");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::write(xdg.join("config.toml"), "[store]\ndir = \"xdg-store\"\n").unwrap();
    let vars = [(
        "XDG_CONFIG_HOME",
        d.join("xdg").to_str().unwrap().to_string(),
    )];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env = env_at(d, &vars);
    // XDG only.
    let c = config::load(None, &env).unwrap();
    assert_eq!(
        c.store.dir,
        xdg.join("xdg-store"),
        "relative paths resolve against the config file"
    );
    // ./ducksnap.toml wins over XDG.
    std::fs::write(d.join("ducksnap.toml"), "[store]\ndir = \"local-store\"\n").unwrap();
    assert_eq!(
        config::load(None, &env).unwrap().store.dir,
        d.join("local-store")
    );
    // $DUCKSNAP_CONFIG wins over ./ducksnap.toml.
    std::fs::write(d.join("envcfg.toml"), "[store]\ndir = \"/abs/store\"\n").unwrap();
    let mut vars2 = vars.clone();
    vars2.push(("DUCKSNAP_CONFIG", "envcfg.toml"));
    let env2 = env_at(d, &vars2);
    assert_eq!(
        config::load(None, &env2).unwrap().store.dir,
        Path::new("/abs/store")
    );
    // --config wins over everything.
    std::fs::write(d.join("cli.toml"), "[store]\ndir = \"cli-store\"\n").unwrap();
    assert_eq!(
        config::load(Some(Path::new("cli.toml")), &env2)
            .unwrap()
            .store
            .dir,
        d.join("cli-store")
    );
    // An explicit file that does not exist is an error, not a fallback.
    let e = config::load(Some(Path::new("nope.toml")), &env2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.toml") && e.contains("--config"), "{e}");
    let env3 = env_at(d, &[("DUCKSNAP_CONFIG", "missing.toml")]);
    let e = config::load(None, &env3).unwrap_err().to_string();
    assert!(
        e.contains("missing.toml") && e.contains("DUCKSNAP_CONFIG"),
        "{e}"
    );
}

#[test]
fn values_parse() {
    let env = env_at(Path::new("/base"), &[("HOME", "/home/u")]);
    let c = config::from_str_at(
        r#"
[database]
path = "md:app"
[store]
dir = "~/backups"
[schedule]
cron = ["*/5 * * * *", "30 0 3 * * *", "@daily"]
timezone = "Europe/Berlin"
[retention]
keep_within = "7d"
max_total_size = "330MB"
[socket]
path = "run/ds.sock"
max_line = 65536
"#,
        None,
        Path::new("/base"),
        &env,
    )
    .unwrap();
    assert_eq!(
        c.database.path,
        Path::new("md:app"),
        "md: names are kept verbatim"
    );
    assert_eq!(c.store.dir, Path::new("/home/u/backups"));
    assert_eq!(c.schedule.cron.len(), 3);
    assert_eq!(c.retention.keep_within.unwrap().0.as_secs(), 7 * 86400);
    assert_eq!(c.retention.max_total_size.unwrap().0, 330_000_000);
    assert_eq!(c.socket.path, Path::new("/base/run/ds.sock"));
    assert_eq!(c.socket.max_line.0, 65536);
}

/// Each class of malformed config: `config check` exits 2 and names the file
/// and the key.
#[test]
fn malformed_configs_are_refused_with_file_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("unknown key", "[store]\ndirr = \"x\"\n", "dirr"),
        ("unknown section", "[stor]\ndir = \"x\"\n", "stor"),
        (
            "wrong type",
            "[retention]\nkeep_last = \"ten\"\n",
            "keep_last",
        ),
        (
            "negative count",
            "[retention]\nkeep_last = -1\n",
            "keep_last",
        ),
        (
            "bad duration unit",
            "[capture]\ntimeout = \"30x\"\n",
            "timeout",
        ),
        (
            "duration without unit",
            "[retention]\nkeep_within = \"7\"\n",
            "keep_within",
        ),
        (
            "bad size",
            "[retention]\nmax_total_size = \"330XB\"\n",
            "max_total_size",
        ),
        (
            "size not a number",
            "[socket]\nmax_line = \"lots\"\n",
            "max_line",
        ),
        ("bad cron", "[schedule]\ncron = \"61 * * * *\"\n", "cron"),
        (
            "cron wrong field count",
            "[schedule]\ncron = \"* * *\"\n",
            "cron",
        ),
        (
            "bad cron in list",
            "[schedule]\ncron = [\"@hourly\", \"@sometimes\"]\n",
            "cron",
        ),
        (
            "bad time zone",
            "[schedule]\ntimezone = \"Mars/Olympus\"\n",
            "schedule.timezone",
        ),
        ("bad mode", "[database]\nmode = \"remote\"\n", "mode"),
        ("bad log level", "[log]\nlevel = \"loud\"\n", "log.level"),
        (
            "compression out of range",
            "[store]\ncompression_level = 40\n",
            "store.compression_level",
        ),
        (
            "zero attempts",
            "[capture]\nattempts = 0\n",
            "capture.attempts",
        ),
        (
            "reason rule for a reason no snapshot can have",
            "[retention.reasons]\n\"pre delete\" = { keep_within = \"14d\" }\n",
            "retention.reasons",
        ),
        (
            "unknown key in a reason rule",
            "[retention.reasons]\npre-delete = { keep_for = \"14d\" }\n",
            "keep_for",
        ),
        ("syntax error", "[store\ndir = \"x\"\n", "store"),
        ("empty path", "[database]\npath = \"\"\n", "database.path"),
    ];
    let ws = Workspace::new();
    for (what, text, key) in cases {
        let path = ws.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = ws
            .bare_cmd()
            .args(["--config", path.to_str().unwrap(), "config", "check"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: expected exit 2, got {:?}: {err}",
            out.status
        );
        assert!(
            err.contains(path.to_str().unwrap()),
            "{what}: error does not name the file: {err}"
        );
        assert!(
            err.contains(key),
            "{what}: error does not name the key {key:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
        if ![
            "syntax error",
            "empty path",
            "bad time zone",
            "bad log level",
            "compression out of range",
            "zero attempts",
            "reason rule for a reason no snapshot can have",
        ]
        .contains(what)
        {
            assert!(
                err.contains("line"),
                "{what}: error does not give the line: {err}"
            );
        }
    }
}

/// The cron typos people make: each refused with the expression, what is
/// wrong with it and the accepted forms, never serde's "did not match any
/// variant of untagged enum" (what they gave before).
#[test]
fn cron_typos_name_the_expression_and_the_accepted_forms() {
    let cases: &[(&str, &str)] = &[
        ("\"@hourlly\"", "unknown nickname \"@hourlly\""),
        ("\"0 25 * * *\"", "hour \"25\" is not valid (0-23)"),
        ("\"every hour\"", "found 2 field(s)"),
        (
            "[\"@daily\", \"61 * * * *\"]",
            "minute \"61\" is not valid (0-59)",
        ),
        ("\"0 0 * FOO *\"", "month \"FOO\" is not valid"),
        ("\"\"", "empty"),
    ];
    let ws = Workspace::new();
    let check = |cron: &str| {
        let path = ws.path().join("cron.toml");
        std::fs::write(&path, format!("[schedule]\ncron = {cron}\n")).unwrap();
        ws.bare_cmd()
            .args(["--config", path.to_str().unwrap(), "config", "check"])
            .output()
            .unwrap()
    };
    for (value, why) in cases {
        let out = check(value);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{value}: {err}");
        assert!(err.contains(why), "{value}: does not say {why:?}: {err}");
        assert!(
            err.contains("accepted: 5 fields \"minute hour day month weekday\"")
                && err.contains("@hourly, @daily"),
            "{value}: no accepted forms: {err}"
        );
        assert!(!err.contains("untagged"), "{value}: {err}");
    }
    for good in [
        "\"@HOURLY\"",
        "\"@annually\"",
        "[\"*/5 * * * *\", \"0 30 2 * * *\"]",
    ] {
        let out = check(good);
        assert_eq!(out.status.code(), Some(0), "{good}: {}", stderr(&out));
    }
}

#[test]
fn config_check_prints_effective_config() {
    let ws = Workspace::new();
    let out = ws.run(&["config", "check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(ws.config_path().to_str().unwrap()), "{text}");
    assert!(
        text.contains(ws.db().to_str().unwrap()),
        "paths are shown resolved: {text}"
    );
    let v = ws.json(&["config", "check", "--json"]);
    assert_eq!(v["database"]["path"], ws.db().to_str().unwrap());
    assert_eq!(v["retention"]["keep_last"], 10);
}

/// `offsite.url`: the forms accepted and why the others are not.
#[test]
fn offsite_urls() {
    let dir = |p: &str| {
        Ok(ducksnap::config::OffsiteTarget::Directory {
            path: std::path::PathBuf::from(p),
        })
    };
    let cases: [(&str, Result<ducksnap::config::OffsiteTarget, &str>); 12] = [
        (
            "s3://bucket/team/app/",
            Ok(ducksnap::config::OffsiteTarget::S3 {
                bucket: "bucket".into(),
                prefix: "team/app".into(),
            }),
        ),
        (
            "s3://bucket",
            Ok(ducksnap::config::OffsiteTarget::S3 {
                bucket: "bucket".into(),
                prefix: String::new(),
            }),
        ),
        ("s3://Bucket/x", Err("bucket name")),
        ("s3://bucket/a/../b", Err("'..'")),
        ("file:///mnt/nas/ducksnap", dir("/mnt/nas/ducksnap")),
        (
            "file:///mnt/My Disk/ducksnap/",
            dir("/mnt/My Disk/ducksnap"),
        ),
        ("file://localhost/srv/b", dir("/srv/b")),
        ("file://mnt/nas", Err("absolute")),
        ("file:///", Err("root directory")),
        ("file:///mnt/../etc", Err("'..'")),
        ("file:///mnt//x", Err("empty parts")),
        ("/mnt/nas", Err("neither an s3:// nor a file://")),
    ];
    for (url, want) in cases {
        match (ducksnap::config::OffsiteTarget::parse(url), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{url}"),
            (Err(e), Err(part)) => assert!(e.contains(part), "{url}: {e}"),
            (got, want) => panic!("{url}: {got:?}, wanted {want:?}"),
        }
    }
}
