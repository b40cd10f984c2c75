//! Where `[offsite]` keeps its copy, read from `offsite.url`: a bucket and
//! prefix of S3-compatible object storage (`s3://bucket/prefix`), or a
//! directory — a NAS mount, an external disk (`file:///mnt/nas/ducksnap`).

use std::path::{Component, Path, PathBuf};

/// The parsed `offsite.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsiteTarget {
    /// The bucket and the prefix (no leading or trailing `/`).
    S3 { bucket: String, prefix: String },
    /// An absolute directory, written as a plain path (no `%` escapes).
    Directory { path: PathBuf },
}

impl OffsiteTarget {
    /// The target `url` names; the reason when it names none.
    pub fn parse(url: &str) -> Result<OffsiteTarget, String> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return s3(url, rest);
        }
        if let Some(rest) = url.strip_prefix("file://") {
            return directory(url, rest);
        }
        Err(format!(
            "{url:?} is neither an s3:// nor a file:// URL (e.g. \"s3://bucket/prefix\" or \"file:///mnt/nas/ducksnap\")"
        ))
    }
}

fn s3(url: &str, rest: &str) -> Result<OffsiteTarget, String> {
    let bad = |reason: &str| format!("{url:?}: {reason} (expected s3://bucket/prefix)");
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
        return Err(bad(
            "the bucket name must be 3 to 63 lower-case letters, digits, '-' or '.'",
        ));
    }
    let prefix = prefix.trim_matches('/').to_string();
    if prefix.split('/').any(|p| p == ".." || p == ".") || prefix.contains("//") {
        return Err(bad("the prefix must not contain '.', '..' or empty parts"));
    }
    Ok(OffsiteTarget::S3 {
        bucket: bucket.to_string(),
        prefix,
    })
}

fn directory(url: &str, rest: &str) -> Result<OffsiteTarget, String> {
    let bad = |reason: &str| format!("{url:?}: {reason} (expected file:///absolute/path)");
    // `file://localhost/x` is the same as `file:///x` (RFC 8089).
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return Err(bad(
            "the path must be absolute: three slashes, then the directory",
        ));
    }
    let trimmed = rest.trim_end_matches('/');
    let path = Path::new(if trimmed.is_empty() { "/" } else { trimmed });
    if path == Path::new("/") {
        return Err(bad("the root directory is not a place for backups"));
    }
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain || trimmed.contains("//") {
        return Err(bad("the path must not contain '.', '..' or empty parts"));
    }
    Ok(OffsiteTarget::Directory {
        path: path.to_path_buf(),
    })
}
