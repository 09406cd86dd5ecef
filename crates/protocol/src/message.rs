//! Protocol messages of the Linux daemon (docs/PROTOCOL.md).
//!
//! Fuchsia's interface is docs/FUCHSIA.md: `fuchsia.process.Launcher` for
//! Spawn, Inspect for Stats, and `fuchsia.process.zygote.Cache`, whose
//! methods are the rest of [`Request::METHODS`] (Preload, Evict); a test
//! checks the two lists against each other. Byte strings (argv, environ) travel as arrays of bytes so that
//! non-UTF-8 arguments survive.

use serde::{Deserialize, Serialize};

pub use zygote_core::metrics::stats::{
    DaemonStats, ImageStats, KindUsage, LatencyBucket, LatencyStats, LauncherStats, MAX_PROCESS_STATS,
    MAX_PROCESS_STATS_TOTAL, MemoryUsage, ProcessStats,
};

/// Protocol version exchanged in the handshake.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first frame on a connection, from the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
}

/// The server's answer to [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u32,
    /// The server's limits, so a client can refuse early.
    pub limits: Limits,
}

/// Explicit protocol limits; exceeding one gets its own error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame body in bytes.
    pub max_message_bytes: u32,
    /// Most fds attached to one frame.
    pub max_fds: u32,
    /// Most bytes of argv plus environ (strings and their NULs), as ARG_MAX.
    pub max_args_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        // Byte strings travel as JSON arrays of numbers (up to 4 bytes per
        // byte), so a frame must hold 4x max_args_bytes plus the rest.
        Limits { max_message_bytes: 16 << 20, max_fds: 64, max_args_bytes: 2 << 20 }
    }
}

/// Requests. Fds travel with the frame (SCM_RIGHTS), in the order each
/// request documents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Request {
    /// Start a process. Fds: the executable (opened by the client, proving
    /// read access), then one fd per entry of `fds`, in order.
    Spawn(SpawnArgs),
    /// Prepare an executable into the cache. Fds: the executable.
    Preload { name: String },
    /// Drop cache entries: by content hash (hex), or by executable (fd
    /// attached, `key` empty).
    Evict { key: String },
    /// Cache and daemon statistics.
    Stats,
    /// Wait for a process this connection spawned; answered with `Exited`.
    Wait { pid: i32 },
}

impl Request {
    /// Method names, as in the FIDL protocol.
    pub const METHODS: [&'static str; 5] = ["Spawn", "Preload", "Evict", "Stats", "Wait"];

    pub fn method(&self) -> &'static str {
        match self {
            Request::Spawn(_) => "Spawn",
            Request::Preload { .. } => "Preload",
            Request::Evict { .. } => "Evict",
            Request::Stats => "Stats",
            Request::Wait { .. } => "Wait",
        }
    }

    /// How many fds must come with this request (Spawn: 1 + its fd list).
    pub fn expected_fds(&self) -> std::ops::RangeInclusive<usize> {
        match self {
            Request::Spawn(a) => 1 + a.fds.len()..=1 + a.fds.len(),
            Request::Preload { .. } => 1..=1,
            Request::Evict { key } if key.is_empty() => 1..=1,
            _ => 0..=0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnArgs {
    /// Full argv, argv[0] included (after `#!` rewriting by the client).
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries.
    pub environ: Vec<Vec<u8>>,
    /// Process name (comm); empty: the executable's file name.
    pub name: Vec<u8>,
    /// Working directory (absolute); empty: the daemon's.
    pub cwd: Vec<u8>,
    /// Child fd number of each attached fd after the executable.
    pub fds: Vec<i32>,
    /// The path the client resolved, for messages and the process name.
    pub path: Vec<u8>,
    /// The process outlives the connection (`zygote spawn --no-wait`).
    /// Otherwise it is killed (SIGKILL) when the client disconnects before it
    /// ends, so a crashed client leaves nothing behind.
    pub detach: bool,
}

impl SpawnArgs {
    /// Bytes argv and environ take on the new stack (strings plus NULs).
    pub fn args_bytes(&self) -> usize {
        self.argv.iter().chain(&self.environ).map(|s| s.len() + 1).sum()
    }
}

/// Error codes of the Linux protocol. (On Fuchsia a launch fails with a
/// `zx_status_t` and the Cache protocol has its own `Error`, docs/FUCHSIA.md.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame could not be decoded.
    BadRequest,
    /// Protocol version mismatch.
    BadVersion,
    /// A frame body above `max_message_bytes`.
    MessageTooLarge,
    /// More fds than `max_fds`, or not the number the request needs.
    TooManyFds,
    /// argv plus environ above `max_args_bytes`.
    ArgsTooLarge,
    /// The peer's uid is not allowed.
    PeerRefused,
    /// The peer may not execute the file.
    PermissionDenied,
    /// Not an executable this zygote supports (bad or unsupported ELF).
    BadExecutable,
    /// No such process (Wait) or cache key (Evict).
    NotFound,
    /// The daemon failed (memfd, clone, ...).
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::BadVersion,
        ErrorCode::MessageTooLarge,
        ErrorCode::TooManyFds,
        ErrorCode::ArgsTooLarge,
        ErrorCode::PeerRefused,
        ErrorCode::PermissionDenied,
        ErrorCode::BadExecutable,
        ErrorCode::NotFound,
        ErrorCode::Internal,
    ];

    /// The FIDL enum member name.
    pub fn fidl_name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::BadVersion => "BAD_VERSION",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::TooManyFds => "TOO_MANY_HANDLES",
            ErrorCode::ArgsTooLarge => "ARGS_TOO_LARGE",
            ErrorCode::PeerRefused => "PEER_REFUSED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::BadExecutable => "BAD_EXECUTABLE",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The exit status a client command gives for this error.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::NotFound => 127,
            ErrorCode::PermissionDenied | ErrorCode::BadExecutable => 126,
            _ => 125,
        }
    }
}

/// Responses and events from the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// Answer to Spawn; a pidfd for the process is attached.
    Spawned {
        pid: i32,
        key: String,
    },
    /// Answer to Preload.
    Preloaded {
        key: String,
        sealed_bytes: u64,
    },
    /// Answer to Evict.
    Evicted {
        count: u64,
    },
    /// Answer to Stats.
    Stats(Box<DaemonStats>),
    /// Answer to Wait: how the process ended (`code`, or `signal`).
    Exited {
        pid: i32,
        code: Option<i32>,
        signal: Option<i32>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: &T) -> serde_json::Value {
        let json = serde_json::to_value(v).expect("serialize");
        let back: T = serde_json::from_value(json.clone()).expect("deserialize");
        assert_eq!(&back, v);
        json
    }

    #[test]
    fn requests_name_their_method_and_fds() {
        let spawn = Request::Spawn(SpawnArgs {
            argv: vec![b"prog".to_vec(), vec![0xff, 0xfe, b'x']],
            environ: vec![b"A=1".to_vec()],
            fds: vec![0, 1, 2, 9],
            ..SpawnArgs::default()
        });
        let json = round_trip(&spawn);
        assert_eq!(json["method"], "spawn", "{json}");
        assert_eq!(json["argv"][1], serde_json::json!([0xff, 0xfe, b'x']), "non-UTF-8 bytes survive: {json}");
        assert_eq!(spawn.expected_fds(), 5..=5, "the program, then one per target");
        let all = [
            spawn,
            Request::Preload { name: "p".into() },
            Request::Evict { key: String::new() },
            Request::Evict { key: "ab".into() },
            Request::Stats,
            Request::Wait { pid: 7 },
        ];
        let fds: Vec<_> = all.iter().map(|r| r.expected_fds()).collect();
        assert_eq!(fds, [5..=5, 1..=1, 1..=1, 0..=0, 0..=0, 0..=0]);
        for r in &all {
            round_trip(r);
            assert!(Request::METHODS.contains(&r.method()), "{}", r.method());
        }
    }

    #[test]
    fn args_bytes_counts_strings_and_their_nuls() {
        let a = SpawnArgs {
            argv: vec![b"ab".to_vec(), b"".to_vec()],
            environ: vec![b"K=V".to_vec()],
            ..SpawnArgs::default()
        };
        assert_eq!(a.args_bytes(), 3 + 1 + 4);
    }

    #[test]
    fn responses_and_unknown_input() {
        let r = Response::Exited { pid: 3, code: None, signal: Some(9) };
        assert_eq!(round_trip(&r)["reply"], "exited");
        let e = Response::Error { code: ErrorCode::NotFound, message: "x".into() };
        assert_eq!(round_trip(&e)["code"], "NOT_FOUND");
        assert!(serde_json::from_str::<Request>(r#"{"method":"format_disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"method":"wait"}"#).is_err(), "a missing field is an error");
    }

    #[test]
    fn the_protocol_document_states_the_default_limits() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PROTOCOL.md")).unwrap();
        let flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        let l = Limits::default();
        for want in [
            format!("`max_message_bytes` {} MiB", l.max_message_bytes >> 20),
            format!("`max_fds` {}", l.max_fds),
            format!("`max_args_bytes` {} MiB", l.max_args_bytes >> 20),
        ] {
            assert!(flat.contains(&want), "docs/PROTOCOL.md should say {want:?}");
        }
    }
}
