//! Environment detection: every signal, the override, and the CLI's disabled
//! results in cloud mode.

use std::path::Path;

use ducksnap::config::{HostEnv, ModeSetting};
use ducksnap::environment::{Mode, detect};

use crate::helpers::{Workspace, stdout};

fn host(cwd: &str, vars: &[(&str, &str)]) -> HostEnv {
    HostEnv {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cwd: cwd.into(),
    }
}

const DB: &str = "/home/dev/app/data/app.duckdb";

#[test]
fn no_signal_means_local() {
    let d = detect(
        &host("/home/dev/app", &[]),
        Path::new(DB),
        ModeSetting::Auto,
    );
    assert_eq!(d.mode, Mode::Local);
    assert!(d.fired().is_empty());
    assert_eq!(d.signals.len(), 6, "every signal is reported");
}

#[test]
fn each_signal_fires_alone() {
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "STREAMLIT_SHARING_MODE",
            "/home/dev/app",
            &[("STREAMLIT_SHARING_MODE", "streamlit")],
            DB,
        ),
        (
            "STREAMLIT_SHARING_MODE",
            "/home/dev/app",
            &[("STREAMLIT_SHARING_MODE", "")],
            DB,
        ),
        (
            "STREAMLIT_SERVER_HEADLESS",
            "/home/dev/app",
            &[("STREAMLIT_SERVER_HEADLESS", "true")],
            DB,
        ),
        ("working_directory", "/mount/src/myapp", &[], DB),
        (
            "database_path",
            "/home/dev/app",
            &[],
            "/mount/src/myapp/data/app.duckdb",
        ),
        ("database_md", "/home/dev/app", &[], "md:my_db"),
        (
            "DATABASE_MODE",
            "/home/dev/app",
            &[("DATABASE_MODE", "motherduck")],
            DB,
        ),
    ];
    for (name, cwd, vars, db) in cases {
        let d = detect(&host(cwd, vars), Path::new(db), ModeSetting::Auto);
        assert_eq!(d.mode, Mode::Cloud, "{name} should mean cloud");
        assert_eq!(d.fired(), vec![*name], "only {name} should fire");
        assert!(
            d.reason.contains(name),
            "the reason names the signal: {}",
            d.reason
        );
    }
}

#[test]
fn near_misses_do_not_fire() {
    let vars = [
        ("STREAMLIT_SERVER_HEADLESS", "false"),
        ("DATABASE_MODE", "local"),
    ];
    let d = detect(
        &host("/mount/srcfoo", &vars),
        Path::new("/data/md:x.duckdb"),
        ModeSetting::Auto,
    );
    assert_eq!(d.mode, Mode::Local, "{:?}", d.fired());
}

#[test]
fn config_overrides_detection() {
    let cloudy = host("/mount/src/app", &[("STREAMLIT_SHARING_MODE", "1")]);
    let d = detect(&cloudy, Path::new(DB), ModeSetting::Local);
    assert_eq!(d.mode, Mode::Local);
    assert!(d.reason.contains("forced"), "{}", d.reason);
    assert!(
        !d.fired().is_empty(),
        "signals are still reported when overridden"
    );
    let d = detect(&host("/home/dev", &[]), Path::new(DB), ModeSetting::Cloud);
    assert_eq!(d.mode, Mode::Cloud);
    assert!(d.reason.contains("forced"), "{}", d.reason);
}

#[test]
fn cli_in_cloud_mode_reports_disabled() {
    let ws = Workspace::new();
    ws.write_config("");
    std::fs::write(ws.config_path(), "[database]\npath = \"data/app.duckdb\"\n").unwrap();
    let env = ws.json_env(&["env", "--json"], &[("STREAMLIT_SHARING_MODE", "1")]);
    assert_eq!(env["mode"], "cloud");
    let sig = env["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "STREAMLIT_SHARING_MODE")
        .unwrap();
    assert_eq!(sig["fired"], true);
    assert_eq!(sig["value"], "1");

    let snap = ws.json_env(&["snapshot", "--json"], &[("STREAMLIT_SHARING_MODE", "1")]);
    assert_eq!(snap["snapshot"], serde_json::Value::Null);
    assert_eq!(snap["disabled"], true);
    assert!(
        snap["reason"]
            .as_str()
            .unwrap()
            .contains("STREAMLIT_SHARING_MODE"),
        "{snap}"
    );
    let list = ws.json_env(&["list", "--json"], &[("STREAMLIT_SHARING_MODE", "1")]);
    assert_eq!(list, serde_json::json!([]));
    assert!(!ws.store_dir().exists(), "cloud mode creates no store");

    let out = ws
        .cmd(&["snapshot"])
        .env("DATABASE_MODE", "motherduck")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("disabled") && text.contains("DATABASE_MODE") && text.contains("MotherDuck"),
        "{text}"
    );

    // Local with no signal: env says local.
    let env = ws.json(&["env", "--json"]);
    assert_eq!(env["mode"], "local");
}

impl Workspace {
    fn json_env(&self, args: &[&str], vars: &[(&str, &str)]) -> serde_json::Value {
        let mut c = self.cmd(args);
        for (k, v) in vars {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}
