//! `zygote stats` against a real daemon: `--json` has the schema documented in
//! docs/PROTOCOL.md (the example there is the schema: the same keys, each with
//! the same JSON type, and no others), `--prometheus` is well-formed
//! OpenMetrics, the loopback `GET /metrics` serves the same families, and the
//! numbers follow the spawns: a long-lived process is listed under its image
//! (also once the image is evicted) and leaves the list once it is reaped.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// A daemon on a temp socket with its own config; killed on drop.
struct TestDaemon {
    child: Option<std::process::Child>,
    socket: PathBuf,
    port: u16,
    log: PathBuf,
}

impl TestDaemon {
    fn start() -> TestDaemon {
        let dir = short_dir();
        let socket = dir.join("z.sock");
        let log = dir.join("daemon.log");
        let port = free_port();
        // The shipped defaults with these changes.
        let changes = serde_json::json!({
            "cache_max_entries": 64,
            "cache_max_bytes": 1u64 << 30,
            "socket_path": socket,
            "log_filter": "warn",
            "metrics_port": port,
            "prestarted_launchers": 4,
        });
        let config = write_config(&dir.join("zygote.json"), changes);
        let child = Command::new(zygote_bin())
            .args(["daemon", "--grace-secs", "1", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("create log"))
            .spawn()
            .expect("start the daemon");
        let d = TestDaemon { child: Some(child), socket, port, log };
        let start = Instant::now();
        while zygote::service::client::Client::connect(&d.socket).is_err() || TcpStream::connect(d.addr()).is_err() {
            assert!(start.elapsed() < SETTLE_LIMIT, "the daemon never answered; log:\n{}", d.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn addr(&self) -> (std::net::Ipv4Addr, u16) {
        (std::net::Ipv4Addr::LOCALHOST, self.port)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn cli(&self, args: &[&str]) -> Outcome {
        let mut cmd = Command::new(zygote_bin());
        cmd.arg(args[0]).arg("--socket").arg(&self.socket).args(&args[1..]);
        let out = run_command(&mut cmd);
        assert_eq!(out.code, 0, "zygote {args:?}: {out}\ndaemon log:\n{}", self.log_text());
        out
    }

    fn json(&self) -> Value {
        let out = self.cli(&["stats", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stats --json is not JSON: {e}\n{out}"))
    }

    /// `GET target` over TCP: (status line, headers, body).
    fn get(&self, target: &str) -> (String, String, String) {
        let mut s = TcpStream::connect(self.addr()).expect("connect to the metrics port");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        write!(s, "GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send request");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("read reply");
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end: {reply:?}"));
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (status.to_string(), headers.to_string(), body.to_string())
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A directory with a path short enough for a socket.
fn short_dir() -> PathBuf {
    let d = unique_dir("md");
    if d.join("z.sock").as_os_str().len() < 100 {
        return d;
    }
    let d = std::env::temp_dir().join(format!("zt-metrics-{}", std::process::id()));
    fs::create_dir_all(&d).expect("mkdir");
    d
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// The example under "## `zygote stats --json`" in docs/PROTOCOL.md.
fn documented_schema() -> Value {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PROTOCOL.md")).expect("PROTOCOL.md");
    let section = doc.split("## `zygote stats --json`").nth(1).expect("a `zygote stats --json` section");
    let block = section.split("```json").nth(1).and_then(|b| b.split("```").next()).expect("a json block");
    serde_json::from_str(block).unwrap_or_else(|e| panic!("the documented example is not JSON: {e}\n{block}"))
}

/// Differences between `actual` and the documented example `doc`: keys
/// missing or undocumented, values of another JSON type. Array elements are
/// checked against the example's first element. Numbers must be unsigned
/// integers, as the document says.
fn schema_diff(doc: &Value, actual: &Value, at: &str, out: &mut Vec<String>) {
    match (doc, actual) {
        (Value::Object(d), Value::Object(a)) => {
            for k in d.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{at}.{k}: documented, missing"));
            }
            for k in a.keys().filter(|k| !d.contains_key(*k)) {
                out.push(format!("{at}.{k}: present, not documented"));
            }
            for (k, dv) in d {
                if let Some(av) = a.get(k) {
                    schema_diff(dv, av, &format!("{at}.{k}"), out);
                }
            }
        }
        (Value::Array(d), Value::Array(a)) => {
            if let Some(first) = d.first() {
                for (i, av) in a.iter().enumerate() {
                    schema_diff(first, av, &format!("{at}[{i}]"), out);
                }
            }
        }
        (Value::Number(_), Value::Number(n)) if n.is_u64() => {}
        (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) => {}
        (d, a) => out.push(format!("{at}: documented as {d}, got {a}")),
    }
}

/// A parsed OpenMetrics sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `name{label="value",...} value`, escapes in values (`\\`, `\"`, `\n`).
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut end = None;
        loop {
            let start = match chars.peek() {
                Some(&(_, '}')) => {
                    end = chars.next().map(|(i, _)| i);
                    break;
                }
                Some(&(i, _)) => i,
                None => break,
            };
            let eq = r[start..].find('=').ok_or("label without =")? + start;
            let lname = &r[start..eq];
            if !is_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {lname} value is not quoted"));
            }
            let mut v = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => v.push('\\'),
                        '"' => v.push('"'),
                        'n' => v.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    '"' => break,
                    '\n' => return Err("raw newline in a label value".into()),
                    c => v.push(c),
                }
            }
            if labels.insert(lname.to_string(), v).is_some() {
                return Err(format!("label {lname} twice"));
            }
            if chars.peek().is_some_and(|&(_, c)| c == ',') {
                chars.next();
            }
        }
        let end = end.ok_or("labels not closed")?;
        rest = &r[end + 1..];
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v if v.contains(' ') => return Err(format!("trailing text after the value: {v:?}")),
        v => v.parse().map_err(|e| format!("bad value {v:?}: {e}"))?,
    };
    Ok(Sample { name: name.to_string(), labels, value })
}

/// Check OpenMetrics text; returns family name -> type, and the samples.
fn check_openmetrics(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut wrong = Vec::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the text must end with # EOF:\n{text}");
    assert!(text.ends_with("# EOF\n"), "nothing after # EOF");
    for (n, line) in lines.iter().enumerate() {
        let n = n + 1;
        if let Some(meta) = line.strip_prefix("# ") {
            let mut it = meta.splitn(3, ' ');
            match (it.next(), it.next(), it.next()) {
                (Some("EOF"), None, None) if n == lines.len() => {}
                (Some("TYPE"), Some(name), Some(ty)) => {
                    let known = ["counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset"];
                    if !known.contains(&ty) {
                        wrong.push(format!("line {n}: unknown type {ty}"));
                    }
                    if types.insert(name.to_string(), ty.to_string()).is_some() {
                        wrong.push(format!("line {n}: {name} typed twice"));
                    }
                }
                (Some("HELP" | "UNIT"), Some(name), Some(_)) if types.contains_key(name) => {
                    if meta.starts_with("UNIT") && !name.ends_with(&format!("_{}", meta.rsplit(' ').next().unwrap())) {
                        wrong.push(format!("line {n}: the family name must end with its unit"));
                    }
                }
                _ => wrong.push(format!("line {n}: bad metadata {line:?}")),
            }
            continue;
        }
        match parse_sample(line) {
            Ok(s) => {
                let family =
                    [("_total", "counter"), ("_bucket", "histogram"), ("_count", "histogram"), ("_sum", "histogram")]
                        .iter()
                        .find_map(|(suffix, ty)| {
                            let f = s.name.strip_suffix(suffix)?;
                            (types.get(f).map(String::as_str) == Some(*ty)).then(|| f.to_string())
                        })
                        .or_else(|| (types.get(&s.name).map(String::as_str) == Some("gauge")).then(|| s.name.clone()));
                if family.is_none() {
                    wrong.push(format!("line {n}: sample {} has no TYPE line of its kind before it", s.name));
                }
                samples.push(s);
            }
            Err(e) => wrong.push(format!("line {n}: {e}: {line:?}")),
        }
    }
    assert!(wrong.is_empty(), "malformed OpenMetrics:\n{}\n---\n{text}", wrong.join("\n"));
    (types, samples)
}

fn sample<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v)))
}

fn image_of<'a>(stats: &'a Value, path: &Path) -> &'a Value {
    let path = path.to_str().expect("utf-8 path");
    stats["images"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["path"] == path))
        .unwrap_or_else(|| panic!("no image for {path} in {stats:#}"))
}

#[test]
fn stats_json_prometheus_and_http() {
    let prog = static_pie("metrics_dirty.c");
    sync();
    let d = TestDaemon::start();
    let long_pid = spawn_long_lived(&d, &prog);
    let mut long = KillOnDrop(Some(long_pid));
    // Three short ones, waited for.
    for _ in 0..3 {
        let p = prog.to_str().unwrap();
        d.cli(&["spawn", "--daemon-side", p, "x"]);
    }

    let (key, saved) = check_json(&d, &prog, long_pid);
    check_prometheus_and_http(&d, &key, saved);

    // Evicted while the process runs: still listed, not cached.
    d.cli(&["evict", &key]);
    let stats = d.json();
    let img = image_of(&stats, &prog);
    assert_eq!((&img["cached"], &img["live_processes"]), (&false.into(), &1.into()), "{img:#}");
    assert_eq!(stats["cache"]["entries"], 0);

    // Reaped: gone from the registry, and the evicted image with it.
    long.kill();
    let start = Instant::now();
    loop {
        let stats = d.json();
        let images = stats["images"].as_array().expect("images");
        if images.is_empty() && stats["live_children"] == 0 {
            assert_eq!(stats["memory"]["rss"], 0);
            break;
        }
        assert!(start.elapsed() < SETTLE_LIMIT, "the reaped process is still reported: {stats:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A long-lived process: `zygote spawn --no-wait` prints its pid; the
/// process shares that stdout (a file, so nobody waits for its EOF).
fn spawn_long_lived(d: &TestDaemon, prog: &Path) -> i32 {
    let out_path = unique_path("long.out");
    let status = Command::new(zygote_bin())
        .args(["spawn", "--daemon-side", "--no-wait", "--socket"])
        .arg(&d.socket)
        .arg(prog)
        .arg("5")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("create"))
        .stderr(Stdio::inherit())
        .status()
        .expect("zygote spawn --no-wait");
    assert!(status.success(), "zygote spawn --no-wait: {status:?}");
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(&out_path).unwrap_or_default();
        let pid = text.lines().find_map(|l| l.trim().parse().ok());
        if let Some(pid) = pid.filter(|_| text.lines().any(|l| l == "ready")) {
            return pid;
        }
        assert!(start.elapsed() < SETTLE_LIMIT, "no pid and ready line: {text:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `stats --json` against the documented schema and the numbers after one
/// long-lived and three short spawns; then the table. Returns the image key
/// and the long-lived process's saved bytes.
fn check_json(d: &TestDaemon, prog: &Path, long_pid: i32) -> (String, u64) {
    let stats = d.json();
    let mut diff = Vec::new();
    schema_diff(&documented_schema(), &stats, "", &mut diff);
    assert!(diff.is_empty(), "stats --json and docs/PROTOCOL.md differ:\n{}\n{stats:#}", diff.join("\n"));
    assert_eq!(stats["spawns"], 4, "{stats:#}");
    assert_eq!(stats["spawn_errors"], 0);
    assert_eq!((&stats["cache"]["misses"], &stats["cache"]["hits"]), (&1.into(), &3.into()), "{stats:#}");
    let lat = &stats["spawn_latency"];
    assert_eq!(lat["count"], 4);
    let buckets = lat["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 25);
    let in_buckets: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(in_buckets, 4, "no spawn takes 16 s: {lat}");
    for (i, b) in buckets.iter().enumerate() {
        assert_eq!(b["le_us"], 1u64 << i);
    }
    assert!(lat["sum_us"].as_u64().unwrap() > 0);
    let img = image_of(&stats, prog);
    let key = img["key"].as_str().expect("key").to_string();
    assert_eq!(img["cached"], true);
    assert_eq!(img["live_processes"], 1, "{img:#}");
    let procs = img["processes"].as_array().expect("processes");
    assert_eq!(procs.len(), 1);
    let p = &procs[0];
    assert_eq!(p["pid"], long_pid);
    let m = &p["memory"];
    let (rss, pss) = (m["rss"].as_u64().unwrap(), m["pss"].as_u64().unwrap());
    assert!(rss > 0 && pss > 0 && pss <= rss, "{p:#}");
    assert_eq!(p["saved_bytes"].as_u64().unwrap(), rss - pss);
    assert!(m["anonymous"].as_u64().unwrap() >= 5 * 4096, "5 pages written: {p:#}");
    assert_eq!(img["memory"], *m, "one process: the image totals are its numbers");
    assert_eq!(stats["memory"], *m);
    assert!(img["resident_bytes"].as_u64().unwrap() > 0);

    // The table.
    let table = d.cli(&["stats"]).stdout_str();
    for want in ["cache", "spawns     4 served", "latency", &key[..16], &long_pid.to_string()] {
        assert!(table.contains(want), "the table lacks {want:?}:\n{table}");
    }

    (key, rss - pss)
}

/// `stats --prometheus`, then the same families over HTTP.
fn check_prometheus_and_http(d: &TestDaemon, key: &str, saved: u64) {
    let text = d.cli(&["stats", "--prometheus"]).stdout_str();
    let (types, samples) = check_openmetrics(&text);
    for (name, ty) in [
        ("zygote_cache_hits", "counter"),
        ("zygote_cache_misses", "counter"),
        ("zygote_cache_evictions", "counter"),
        ("zygote_spawn_latency_seconds", "histogram"),
        ("zygote_image_live_processes", "gauge"),
        ("zygote_image_saved_bytes", "gauge"),
    ] {
        assert_eq!(types.get(name).map(String::as_str), Some(ty), "{name}");
    }
    let v = |name: &str, labels: &[(&str, &str)]| {
        sample(&samples, name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?}:\n{text}")).value
    };
    assert_eq!(v("zygote_cache_hits_total", &[]), 3.0);
    assert_eq!(v("zygote_spawns_total", &[]), 4.0);
    assert_eq!(v("zygote_spawn_latency_seconds_bucket", &[("le", "+Inf")]), 4.0);
    assert_eq!(v("zygote_spawn_latency_seconds_count", &[]), 4.0);
    let les: Vec<f64> =
        samples.iter().filter(|s| s.name == "zygote_spawn_latency_seconds_bucket").map(|s| s.value).collect();
    assert!(les.windows(2).all(|w| w[0] <= w[1]), "buckets are cumulative: {les:?}");
    assert_eq!(v("zygote_image_live_processes", &[("key", key)]), 1.0);
    assert_eq!(v("zygote_image_saved_bytes", &[("key", key)]), saved as f64);

    let (status, headers, body) = d.get("/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers}\n{body}");
    assert!(headers.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{headers}");
    let (http_types, _) = check_openmetrics(&body);
    assert_eq!(http_types, types, "GET /metrics and stats --prometheus have the same families");
    let (status, _, _) = d.get("/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = d.get("/metrics/x");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

/// SIGKILLs a process the test started through the daemon, once: after that
/// the daemon reaps it and its pid may be reused.
struct KillOnDrop(Option<i32>);

impl KillOnDrop {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            let pid = rustix::process::Pid::from_raw(pid).expect("pid");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}
