//! Daemon configuration, the defaults in `config/zygote.json`. Fuchsia's
//! configuration is the structured config of `meta/zygote.cml`
//! (docs/FUCHSIA.md, `zygote_fuchsia::config`): the fields that mean
//! something there, with the same names, types and defaults as here (a test
//! keeps them so).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

/// The default configuration, as shipped (and embedded, so no install path matters).
pub const DEFAULT_CONFIG: &str = include_str!("../config/zygote.json");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid JSON: {source}")]
    Syntax { path: PathBuf, source: serde_json::Error },
    #[error("{path}: the configuration must be a JSON object")]
    NotObject { path: PathBuf },
    #[error("{path}: field `{field}`: {why}")]
    Field { path: PathBuf, field: String, why: String },
}

/// Field names and their structured-config types, in schema order.
pub const FIELDS: [(&str, &str); 13] = [
    ("cache_max_entries", "uint64"),
    ("cache_max_bytes", "uint64"),
    ("socket_path", "string"),
    ("allowed_uids", "vector<uint32>"),
    ("log_filter", "string"),
    ("preload", "vector<string>"),
    ("metrics_port", "uint16"),
    ("prestarted_launchers", "uint32"),
    ("max_connections", "uint32"),
    ("max_connections_per_uid", "uint32"),
    ("idle_timeout_ms", "uint32"),
    ("frame_timeout_ms", "uint32"),
    ("max_buffered_bytes", "uint64"),
];

/// Most open connections `max_connections` may allow.
pub const MAX_CONNECTIONS: u32 = 65536;
/// Least global receive-buffer budget (`max_buffered_bytes`).
pub const MIN_BUFFERED_BYTES: u64 = 1 << 20;

/// Most pre-started launchers the daemon may keep.
pub const MAX_PRESTARTED: u32 = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Most images in the cache.
    pub cache_max_entries: u64,
    /// Most sealed bytes in the cache.
    pub cache_max_bytes: u64,
    /// Socket path; empty means `$XDG_RUNTIME_DIR/zygote/zygote.sock`, or
    /// `/tmp/zygote-$UID/zygote.sock` when XDG_RUNTIME_DIR is unset.
    pub socket_path: String,
    /// Uids besides the daemon's own that may connect.
    pub allowed_uids: Vec<u32>,
    /// tracing-subscriber filter (RUST_LOG overrides it when set).
    pub log_filter: String,
    /// Programs prepared at start-up.
    pub preload: Vec<String>,
    /// TCP port on 127.0.0.1 serving OpenMetrics at `GET /metrics`; 0: off.
    pub metrics_port: u16,
    /// Idle pre-started launchers kept, each with a recently spawned image
    /// mapped, so the next spawn of it skips the exec (0: off).
    pub prestarted_launchers: u32,
    /// Most connections open at once (1..=65536); more are answered with an
    /// error and closed.
    pub max_connections: u32,
    /// Most connections open at once from one uid (1..=max_connections).
    pub max_connections_per_uid: u32,
    /// A connection with no request in flight and no running child is closed
    /// after this many milliseconds without a request (0: never).
    pub idle_timeout_ms: u32,
    /// A frame (or the handshake) must be complete this many milliseconds
    /// after its first byte (after the connect, for the handshake; 0: never).
    pub frame_timeout_ms: u32,
    /// Most bytes buffered for incomplete frames across all connections
    /// (at least 1 MiB); a connection that would exceed it is closed.
    pub max_buffered_bytes: u64,
}

const MAX_STRING: usize = 4096;
const MAX_VECTOR: usize = 256;

fn field_err(path: &Path, field: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Field { path: path.to_path_buf(), field: field.to_string(), why: why.into() }
}

fn take_u64(path: &Path, m: &Map<String, Value>, f: &str) -> Result<u64, ConfigError> {
    match m.get(f) {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| field_err(path, f, "must be a non-negative integer")),
        Some(other) => Err(field_err(path, f, format!("must be a non-negative integer, not {other}"))),
        None => Err(field_err(path, f, "is missing")),
    }
}

fn take_u32_in(path: &Path, m: &Map<String, Value>, f: &str, min: u32, max: u32) -> Result<u32, ConfigError> {
    u32::try_from(take_u64(path, m, f)?)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| field_err(path, f, format!("must be {min}..={max}")))
}

fn take_string(path: &Path, m: &Map<String, Value>, f: &str) -> Result<String, ConfigError> {
    match m.get(f) {
        Some(Value::String(s)) if s.len() <= MAX_STRING => Ok(s.clone()),
        Some(Value::String(_)) => Err(field_err(path, f, format!("longer than {MAX_STRING} bytes"))),
        Some(other) => Err(field_err(path, f, format!("must be a string, not {other}"))),
        None => Err(field_err(path, f, "is missing")),
    }
}

fn take_vec<T>(
    path: &Path,
    m: &Map<String, Value>,
    f: &str,
    each: impl Fn(&Value) -> Option<T>,
    what: &str,
) -> Result<Vec<T>, ConfigError> {
    let Some(v) = m.get(f) else { return Err(field_err(path, f, "is missing")) };
    let Value::Array(items) = v else { return Err(field_err(path, f, format!("must be an array of {what}"))) };
    if items.len() > MAX_VECTOR {
        return Err(field_err(path, f, format!("more than {MAX_VECTOR} entries")));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, x)| each(x).ok_or_else(|| field_err(path, &format!("{f}[{i}]"), format!("must be {what}, not {x}"))))
        .collect()
}

impl Config {
    /// The shipped defaults.
    pub fn defaults() -> Self {
        Self::parse(Path::new("config/zygote.json (built in)"), DEFAULT_CONFIG)
            .unwrap_or_else(|e| unreachable!("the built-in config is checked by a test: {e}"))
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(path, &text)
    }

    /// Parse and validate; every field is required and unknown fields are
    /// refused, each error naming the field.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let v: Value =
            serde_json::from_str(text).map_err(|source| ConfigError::Syntax { path: path.into(), source })?;
        let Value::Object(m) = v else { return Err(ConfigError::NotObject { path: path.into() }) };
        if let Some(unknown) = m.keys().find(|k| !FIELDS.iter().any(|(f, _)| f == k)) {
            return Err(field_err(path, unknown, "is not a configuration field"));
        }
        let cfg = Config {
            cache_max_entries: take_u64(path, &m, "cache_max_entries")?,
            cache_max_bytes: take_u64(path, &m, "cache_max_bytes")?,
            socket_path: take_string(path, &m, "socket_path")?,
            allowed_uids: take_vec(
                path,
                &m,
                "allowed_uids",
                |x| x.as_u64().and_then(|n| u32::try_from(n).ok()),
                "a uid (0..=4294967295)",
            )?,
            log_filter: take_string(path, &m, "log_filter")?,
            preload: take_vec(
                path,
                &m,
                "preload",
                |x| x.as_str().filter(|s| s.len() <= MAX_STRING).map(str::to_string),
                "a path string of at most 4096 bytes",
            )?,
            metrics_port: u16::try_from(take_u64(path, &m, "metrics_port")?)
                .map_err(|_| field_err(path, "metrics_port", "must be a port number (0..=65535)"))?,
            prestarted_launchers: u32::try_from(take_u64(path, &m, "prestarted_launchers")?)
                .ok()
                .filter(|&n| n <= MAX_PRESTARTED)
                .ok_or_else(|| field_err(path, "prestarted_launchers", format!("must be 0..={MAX_PRESTARTED}")))?,
            max_connections: take_u32_in(path, &m, "max_connections", 1, MAX_CONNECTIONS)?,
            max_connections_per_uid: take_u32_in(path, &m, "max_connections_per_uid", 1, MAX_CONNECTIONS)?,
            idle_timeout_ms: take_u32_in(path, &m, "idle_timeout_ms", 0, u32::MAX)?,
            frame_timeout_ms: take_u32_in(path, &m, "frame_timeout_ms", 0, u32::MAX)?,
            max_buffered_bytes: take_u64(path, &m, "max_buffered_bytes")?,
        };
        if cfg.max_connections_per_uid > cfg.max_connections {
            return Err(field_err(path, "max_connections_per_uid", "must not exceed max_connections"));
        }
        if cfg.max_buffered_bytes < MIN_BUFFERED_BYTES {
            return Err(field_err(path, "max_buffered_bytes", format!("must be at least {MIN_BUFFERED_BYTES}")));
        }
        if cfg.cache_max_entries > usize::MAX as u64 {
            return Err(field_err(path, "cache_max_entries", "too large"));
        }
        if !cfg.socket_path.is_empty() && !cfg.socket_path.starts_with('/') {
            return Err(field_err(path, "socket_path", "must be an absolute path or empty"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&cfg.log_filter) {
            return Err(field_err(path, "log_filter", format!("not a valid filter: {e}")));
        }
        Ok(cfg)
    }

    /// The socket path to use: the configured one, or the default.
    pub fn socket(&self) -> PathBuf {
        if !self.socket_path.is_empty() {
            return PathBuf::from(&self.socket_path);
        }
        default_socket_path()
    }
}

/// `$ZYGOTE_SOCKET`, else `$XDG_RUNTIME_DIR/zygote/zygote.sock`, else
/// `/tmp/zygote-$UID/zygote.sock` (the thin exec client looks in the same
/// places: crates/stub/src/client/daemon.rs).
pub fn default_socket_path() -> PathBuf {
    zygote_linux::client::default_socket()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_defaults_parse() {
        let c = Config::defaults();
        assert!(c.cache_max_entries > 0 && c.cache_max_bytes > 0);
    }

    #[test]
    fn errors_name_the_field() {
        let p = Path::new("t.json");
        let base: Value = serde_json::from_str(DEFAULT_CONFIG).unwrap();
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            Config::parse(p, &b.to_string()).unwrap_err().to_string()
        };
        assert!(with("cache_max_entries", Value::from(-1)).contains("`cache_max_entries`"));
        assert!(with("cache_max_bytes", Value::from("big")).contains("`cache_max_bytes`"));
        assert!(with("socket_path", Value::from("relative")).contains("`socket_path`"));
        assert!(with("allowed_uids", serde_json::json!([1, "x"])).contains("`allowed_uids[1]`"));
        assert!(with("preload", Value::from(3)).contains("`preload`"));
        assert!(with("log_filter", Value::from("=[")).contains("`log_filter`"));
        assert!(with("bogus", Value::from(1)).contains("`bogus`"));
        assert!(with("metrics_port", Value::from(65536)).contains("`metrics_port`"));
        assert!(with("metrics_port", Value::from(-1)).contains("`metrics_port`"));
        assert!(with("max_connections", Value::from(0)).contains("`max_connections`"));
        assert!(with("max_connections_per_uid", Value::from(100_000)).contains("`max_connections_per_uid`"));
        assert!(with("idle_timeout_ms", Value::from(1u64 << 32)).contains("`idle_timeout_ms`"));
        assert!(with("frame_timeout_ms", Value::from("x")).contains("`frame_timeout_ms`"));
        assert!(with("max_buffered_bytes", Value::from(1)).contains("`max_buffered_bytes`"));
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove("preload");
        assert!(Config::parse(p, &missing.to_string()).unwrap_err().to_string().contains("`preload`: is missing"));
        assert!(matches!(Config::parse(p, "{"), Err(ConfigError::Syntax { .. })));
    }
}
