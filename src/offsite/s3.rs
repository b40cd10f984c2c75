//! [`S3`]: the offsite [`Backend`] on S3 and every S3-compatible server,
//! through Apache Arrow's `object_store`, driven from synchronous code on a
//! small runtime of its own. Every request has a timeout and bounded retries, so
//! a server that accepts and never answers fails the operation instead of
//! hanging it; uploads run several at a time.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};

use super::OffsiteError;
use super::backend::{Backend, Listed, PARALLEL};
use crate::config::OffsiteConfig;

/// Credentials, never printed.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// A connected bucket and prefix of `offsite.url`.
pub struct S3 {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    rt: tokio::runtime::Runtime,
    /// Whether `PutMode::Create` is used (recorded by `offsite init`).
    conditional: bool,
    shown: String,
    bucket: String,
    endpoint: String,
}

impl S3 {
    /// A client for `bucket`/`prefix` (from `cfg.url`) with `cfg`'s
    /// endpoint, region and timeouts. Nothing is sent yet.
    pub fn connect(
        cfg: &OffsiteConfig,
        (bucket, prefix): (&str, &str),
        creds: &Credentials,
        conditional: bool,
    ) -> Result<S3, OffsiteError> {
        let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
        let options = ClientOptions::new()
            .with_timeout(cfg.timeout.0)
            .with_connect_timeout(Duration::from_secs(5).min(cfg.timeout.0))
            .with_allow_http(cfg.allow_http);
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: cfg.timeout.0 * 3,
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region(&cfg.region)
            .with_access_key_id(&creds.access_key_id)
            .with_secret_access_key(&creds.secret_access_key)
            .with_client_options(options)
            .with_retry(retry)
            .with_allow_http(cfg.allow_http)
            .with_conditional_put(if conditional {
                S3ConditionalPut::ETagMatch
            } else {
                S3ConditionalPut::Disabled
            });
        if let Some(t) = &creds.session_token {
            b = b.with_token(t);
        }
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        let store = b.build().map_err(|e| OffsiteError::Setup {
            what: "offsite.url / offsite.endpoint".into(),
            reason: e.to_string(),
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| OffsiteError::Setup {
                what: "runtime".into(),
                reason: e.to_string(),
            })?;
        Ok(S3 {
            store: Arc::new(store),
            prefix,
            rt,
            conditional,
            shown: cfg.url.clone(),
            endpoint: cfg
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("AWS S3 ({})", cfg.region)),
            bucket,
        })
    }

    fn path(&self, name: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(name)
        } else {
            ObjPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn err(&self, op: &'static str, name: &str, e: object_store::Error) -> OffsiteError {
        let text = e.to_string();
        if s3_error_code(&text) == Some("NoSuchBucket") {
            return self.no_bucket();
        }
        OffsiteError::Remote {
            op,
            object: format!("{}/{name}", self.shown.trim_end_matches('/')),
            reason: one_line(&text),
        }
    }

    fn no_bucket(&self) -> OffsiteError {
        OffsiteError::NoBucket {
            bucket: self.bucket.clone(),
            endpoint: self.endpoint.clone(),
        }
    }

    async fn put_async(&self, name: String, bytes: Vec<u8>) -> Result<bool, OffsiteError> {
        let mode = if self.conditional {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(&name), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.err("upload", &name, e)),
        }
    }
}

impl Backend for S3 {
    fn url(&self) -> &str {
        &self.shown
    }

    fn conditional(&self) -> bool {
        self.conditional
    }

    /// Stores `bytes` as `name`: created only if absent when the server
    /// supports it (an object that exists already counts as success: names
    /// are content hashes), a plain put otherwise. Returns whether it was
    /// new.
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<bool, OffsiteError> {
        self.rt.block_on(self.put_async(name.to_string(), bytes))
    }

    /// Stores `bytes` as `name`, replacing what is there (the one mutable
    /// object: the doomed-pack list).
    fn put_overwrite(&self, name: &str, bytes: Vec<u8>) -> Result<(), OffsiteError> {
        self.rt.block_on(async {
            self.store
                .put(&self.path(name), PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| self.err("upload", name, e))
        })
    }

    /// Uploads every `(name, bytes)`, [`PARALLEL`] at a time; returns how
    /// many were new. Stops at the first error (objects already uploaded
    /// stay: nothing names them until a record does).
    fn put_all(&self, objects: Vec<(String, Vec<u8>)>) -> Result<usize, OffsiteError> {
        self.rt.block_on(async {
            let mut uploads =
                futures::stream::iter(objects.into_iter().map(|(n, b)| self.put_async(n, b)))
                    .buffer_unordered(PARALLEL);
            let mut new = 0;
            while let Some(r) = uploads.next().await {
                new += usize::from(r?);
            }
            Ok(new)
        })
    }

    /// The object, or `None` when there is none.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, OffsiteError> {
        self.rt.block_on(async {
            match self.store.get(&self.path(name)).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map(|b| Some(b.to_vec()))
                    .map_err(|e| self.err("download", name, e)),
                Err(e @ object_store::Error::NotFound { .. })
                    if s3_error_code(&e.to_string()) != Some("NoSuchBucket") =>
                {
                    Ok(None)
                }
                Err(e) => Err(self.err("download", name, e)),
            }
        })
    }

    /// Downloads every named object, [`PARALLEL`] at a time, in the order given.
    fn get_all(&self, names: &[String]) -> Result<Vec<Vec<u8>>, OffsiteError> {
        self.rt.block_on(async {
            let gets = names.iter().map(|n| async move {
                let r = self
                    .store
                    .get(&self.path(n))
                    .await
                    .map_err(|e| self.err("download", n, e))?;
                r.bytes()
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| self.err("download", n, e))
            });
            let mut out = Vec::with_capacity(names.len());
            let mut s = futures::stream::iter(gets).buffered(PARALLEL);
            while let Some(r) = s.next().await {
                out.push(r?);
            }
            Ok(out)
        })
    }

    /// Every object under `dir/`, at any depth (names relative to `dir/`:
    /// a planted `dir/sub/x` is listed as `sub/x`, so that it is seen as
    /// what it is and not mistaken for `dir/x`).
    fn list(&self, dir: &str) -> Result<Vec<Listed>, OffsiteError> {
        self.rt.block_on(async {
            let base = self.path(dir);
            let strip = format!("{base}/");
            let mut out = Vec::new();
            let mut s = self.store.list(Some(&base));
            while let Some(m) = s.next().await {
                let m = m.map_err(|e| self.err("list", dir, e))?;
                let full = m.location.to_string();
                let name = full.strip_prefix(&strip).unwrap_or(&full).to_string();
                out.push(Listed {
                    name,
                    size: m.size,
                    modified: m.last_modified,
                });
            }
            Ok(out)
        })
    }

    fn delete(&self, name: &str) -> Result<(), OffsiteError> {
        self.rt.block_on(async {
            match self.store.delete(&self.path(name)).await {
                Ok(()) => Ok(()),
                Err(e @ object_store::Error::NotFound { .. })
                    if s3_error_code(&e.to_string()) != Some("NoSuchBucket") =>
                {
                    Ok(())
                }
                Err(e) => Err(self.err("delete", name, e)),
            }
        })
    }
}

/// The `<Code>` of an S3 error document inside `text`, if there is one.
fn s3_error_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

/// An error for one line: an S3 error document becomes its code and
/// message (`NoSuchKey: The specified key does not exist.`), not XML.
fn one_line(text: &str) -> String {
    let Some(xml) = text.find("<?xml").or_else(|| text.find("<Error>")) else {
        return text.replace('\n', " ");
    };
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let len = text[start..].find(&format!("</{name}>"))?;
        Some(text[start..start + len].to_string())
    };
    let head = text[..xml].trim_end().trim_end_matches(':');
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{head}: {c}: {m}"),
        (Some(c), None) => format!("{head}: {c}"),
        _ => head.replace('\n', " "),
    }
}
