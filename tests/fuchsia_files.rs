//! Keeps the Fuchsia deliverables honest against the Rust sources.
//!
//! - `fidl/fuchsia.process.zygote.fidl`: the methods of protocol `Spawner` are
//!   `Request::METHODS`, the `SpawnError` members are `ErrorCode::fidl_name()`
//!   of `ErrorCode::ALL` (numbered from 1), and the statistics and request
//!   fields are those of the Rust message structs;
//! - `meta/zygote.cml`: parses as JSON5, may create processes, exposes the
//!   protocol the FIDL file declares, and its structured-config schema has
//!   exactly the fields, types and bounds of `zygote::config` and
//!   `config/zygote.json`;
//! - `meta/zygote_tests.cml`: parses, runs the library's unit tests under the
//!   runner that may create processes;
//! - `BUILD.gn`: every file it names exists, every `.rs` file it names belongs
//!   to a crate, every file of a crate is named (as a Fuchsia source or as a
//!   Linux-only one), and the names agree with the manifests.
//!
//! The parsers are small and only as clever as these files need: comments are
//! stripped first, then the text is split into words, strings and punctuation.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};
use zygote::config::{Config, FIELDS};
use zygote::service::message::{CacheStatsWire, DaemonStats, ErrorCode, ImageStats, Request, Response, SpawnArgs};

const FIDL: &str = "fidl/fuchsia.process.zygote.fidl";
const CML: &str = "meta/zygote.cml";
const TESTS_CML: &str = "meta/zygote_tests.cml";
const BUILD_GN: &str = "BUILD.gn";
const CONFIG_JSON: &str = "config/zygote.json";
const PROTOCOL: &str = "Spawner";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------
// Tokens, shared by the FIDL and GN parsers.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// Identifiers, keywords, numbers, dotted names (`fuchsia.process.zygote`).
    Word(String),
    /// A string literal, unescaped.
    Str(String),
    Punct(char),
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

/// Removes comments that start with `marker` and run to the end of the line,
/// outside string literals.
fn strip_comments(text: &str, marker: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut escaped = false;
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if in_str {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_str = false,
                    _ => {}
                }
            } else if c == '"' {
                in_str = true;
            } else if line[i..].starts_with(marker) {
                cut = i;
                break;
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '"' {
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => s.extend(chars.next()),
                    '"' => break,
                    _ => s.push(c),
                }
            }
            toks.push(Tok::Str(s));
        } else if is_word_char(c) {
            let mut w = String::from(c);
            while let Some(&c) = chars.peek().filter(|&&c| is_word_char(c)) {
                w.push(c);
                chars.next();
            }
            toks.push(Tok::Word(w));
        } else {
            toks.push(Tok::Punct(c));
        }
    }
    toks
}

fn word(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Word(w)) => Some(w),
        _ => None,
    }
}

fn is_punct(t: Option<&Tok>, p: char) -> bool {
    t == Some(&Tok::Punct(p))
}

/// Index of the token closing the group opened at `open` (`(`, `[` or `{`).
fn group_end(toks: &[Tok], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced group opened at token {open}: {:?}", &toks[open..(open + 8).min(toks.len())])
}

/// The tokens inside the group opened at `open`, and the index after it.
fn group(toks: &[Tok], open: usize) -> (&[Tok], usize) {
    let end = group_end(toks, open);
    (&toks[open + 1..end], end + 1)
}

/// Splits at `;` outside any group.
fn statements(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < toks.len() {
        match toks[i] {
            Tok::Punct('(' | '[' | '{') => i = group_end(toks, i) + 1,
            Tok::Punct(';') => {
                out.push(&toks[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < toks.len() {
        out.push(&toks[start..]);
    }
    out
}

// ---------------------------------------------------------------------------
// FIDL.

/// One declaration or member: its `@attributes` (name, argument tokens) and the rest.
struct Decl<'a> {
    attrs: Vec<(&'a str, &'a [Tok])>,
    rest: &'a [Tok],
}

fn decl(stmt: &[Tok]) -> Decl<'_> {
    let mut attrs = Vec::new();
    let mut i = 0;
    while is_punct(stmt.get(i), '@') {
        let name = word(stmt.get(i + 1)).unwrap_or_else(|| panic!("attribute without a name: {stmt:?}"));
        i += 2;
        let mut args: &[Tok] = &[];
        if is_punct(stmt.get(i), '(') {
            (args, i) = group(stmt, i);
        }
        attrs.push((name, args));
    }
    Decl { attrs, rest: &stmt[i..] }
}

struct Fidl {
    toks: Vec<Tok>,
}

struct Method<'a> {
    name: &'a str,
    request: &'a [Tok],
    response: Option<&'a [Tok]>,
}

impl Fidl {
    fn parse(text: &str) -> Self {
        Fidl { toks: tokenize(&strip_comments(text, "//")) }
    }

    fn decls(&self) -> impl Iterator<Item = Decl<'_>> {
        statements(&self.toks).into_iter().map(decl)
    }

    fn library(&self) -> String {
        let names: Vec<String> = self
            .decls()
            .filter(|d| word(d.rest.first()) == Some("library"))
            .map(|d| word(d.rest.get(1)).expect("library name").to_string())
            .collect();
        assert_eq!(names.len(), 1, "{FIDL}: expected one `library` declaration, found {names:?}");
        names.into_iter().next().unwrap()
    }

    /// The protocol declaration `name`: its attributes and body.
    fn protocol(&self, name: &str) -> (Vec<(&str, &[Tok])>, &[Tok]) {
        for d in self.decls() {
            let Some(at) = d.rest.iter().position(|t| t == &Tok::Word("protocol".into())) else { continue };
            if word(d.rest.get(at + 1)) == Some(name) {
                assert!(is_punct(d.rest.get(at + 2), '{'), "{FIDL}: protocol {name} has no body");
                return (d.attrs, group(d.rest, at + 2).0);
            }
        }
        panic!("{FIDL}: no protocol {name}");
    }

    /// The body of `type name = ... { body }`.
    fn type_body(&self, name: &str) -> &[Tok] {
        for d in self.decls() {
            if word(d.rest.first()) == Some("type") && word(d.rest.get(1)) == Some(name) {
                let open = d.rest.iter().position(|t| t == &Tok::Punct('{')).expect("type body");
                return group(d.rest, open).0;
            }
        }
        panic!("{FIDL}: no type {name}");
    }
}

fn methods(body: &[Tok]) -> Vec<Method<'_>> {
    let mut out = Vec::new();
    for stmt in statements(body) {
        let mut rest = decl(stmt).rest;
        while matches!(word(rest.first()), Some("strict" | "flexible")) {
            rest = &rest[1..];
        }
        if rest.is_empty() || is_punct(rest.first(), '-') {
            continue; // an event (`-> OnSomething(...)`) is not a request
        }
        assert_ne!(word(rest.first()), Some("compose"), "{FIDL}: compose is not supported by this check");
        let name = word(rest.first()).unwrap_or_else(|| panic!("{FIDL}: not a method: {stmt:?}"));
        assert!(is_punct(rest.get(1), '('), "{FIDL}: method {name} has no request list");
        let (request, next) = group(rest, 1);
        let response =
            (is_punct(rest.get(next), '-') && is_punct(rest.get(next + 1), '>')).then(|| group(rest, next + 2).0);
        out.push(Method { name, request, response });
    }
    out
}

/// Member names of a struct, table or union body (`name type;` or `N: name type;`).
fn members(body: &[Tok]) -> Vec<String> {
    statements(body)
        .into_iter()
        .filter_map(|stmt| {
            let mut rest = decl(stmt).rest;
            if word(rest.first()).is_some_and(|w| w.chars().all(|c| c.is_ascii_digit())) && is_punct(rest.get(1), ':') {
                rest = &rest[2..];
            }
            word(rest.first()).map(str::to_string)
        })
        .collect()
}

/// Fields of an anonymous payload: `(struct { ... })` or `(resource struct { ... })`.
fn payload_fields(payload: &[Tok]) -> Vec<String> {
    if payload.is_empty() {
        return Vec::new();
    }
    let open = payload.iter().position(|t| t == &Tok::Punct('{')).expect("payload struct body");
    members(group(payload, open).0)
}

fn enum_members(body: &[Tok]) -> Vec<(String, u64)> {
    statements(body)
        .into_iter()
        .map(|stmt| match decl(stmt).rest {
            [Tok::Word(name), Tok::Punct('='), Tok::Word(value)] => {
                (name.clone(), value.parse().unwrap_or_else(|_| panic!("{FIDL}: {name} = {value}")))
            }
            other => panic!("{FIDL}: not an enum member: {other:?}"),
        })
        .collect()
}

/// The name a `@discoverable` protocol is served under.
fn discoverable_name(fidl: &Fidl) -> String {
    let (attrs, _) = fidl.protocol(PROTOCOL);
    let (_, args) = attrs
        .iter()
        .find(|(name, _)| *name == "discoverable")
        .unwrap_or_else(|| panic!("{FIDL}: protocol {PROTOCOL} is not @discoverable"));
    for i in 0..args.len() {
        if word(args.get(i)) == Some("name")
            && is_punct(args.get(i + 1), '=')
            && let Some(Tok::Str(name)) = args.get(i + 2)
        {
            return name.clone();
        }
    }
    format!("{}.{PROTOCOL}", fidl.library())
}

/// Field names as the Linux protocol puts them on the wire (serde).
fn serde_keys(v: impl serde::Serialize) -> Vec<String> {
    match serde_json::to_value(v).expect("serialize") {
        Value::Object(m) => m.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

fn sorted(v: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    let mut v: Vec<String> = v.into_iter().map(Into::into).collect();
    v.sort();
    v
}

#[test]
fn fidl_methods_are_the_linux_requests() {
    let fidl = Fidl::parse(&read(FIDL));
    let (_, body) = fidl.protocol(PROTOCOL);
    let names: Vec<&str> = methods(body).iter().map(|m| m.name).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "{FIDL}: a method is declared twice: {names:?}");
    let linux: BTreeSet<&str> = Request::METHODS.into_iter().collect();
    assert_eq!(
        unique, linux,
        "the methods of protocol {PROTOCOL} in {FIDL} and Request::METHODS in crates/protocol/src/message.rs differ"
    );
}

#[test]
fn fidl_spawn_error_is_error_code() {
    let fidl = Fidl::parse(&read(FIDL));
    let members = enum_members(fidl.type_body("SpawnError"));
    let expected: Vec<(String, u64)> =
        ErrorCode::ALL.iter().zip(1..).map(|(c, n)| (c.fidl_name().to_string(), n)).collect();
    assert_eq!(
        members, expected,
        "{FIDL}: SpawnError must have exactly ErrorCode::ALL's fidl_name()s, in order, numbered from 1"
    );
    // Every method that can fail reports SpawnError.
    for stmt in statements(fidl.protocol(PROTOCOL).1) {
        if let Some(at) = stmt.iter().position(|t| t == &Tok::Word("error".into())) {
            assert_eq!(word(stmt.get(at + 1)), Some("SpawnError"), "{FIDL}: {stmt:?}");
        }
    }
}

#[test]
fn fidl_fields_are_the_linux_fields() {
    let fidl = Fidl::parse(&read(FIDL));
    // Statistics: the same structs, field for field.
    for (fidl_type, rust) in [
        ("DaemonStats", serde_keys(DaemonStats::default())),
        ("CacheStats", serde_keys(CacheStatsWire::default())),
        ("ImageStats", serde_keys(ImageStats::default())),
    ] {
        assert_eq!(
            sorted(members(fidl.type_body(fidl_type))),
            sorted(rust),
            "{FIDL}: the fields of {fidl_type} differ from the Rust struct in crates/protocol/src/message.rs"
        );
    }

    let (_, body) = fidl.protocol(PROTOCOL);
    let methods: BTreeMap<&str, Method> = methods(body).into_iter().map(|m| (m.name, m)).collect();
    let fields = |name: &str, response: bool| {
        let m = &methods[name];
        payload_fields(if response { m.response.unwrap_or(&[]) } else { m.request })
    };
    let without_tag = |v: Value| {
        let mut keys = serde_keys(v);
        keys.retain(|k| k != "method" && k != "reply");
        keys
    };

    // Spawn: SpawnArgs, where the executable is a VMO instead of the first fd
    // and the fd list is a list of handles with processargs ids.
    let mut spawn: Vec<String> = serde_keys(SpawnArgs::default());
    spawn.retain(|k| k != "fds");
    spawn.extend(["executable".into(), "handles".into()]);
    assert_eq!(sorted(fields("Spawn", false)), sorted(spawn), "{FIDL}: Spawn's request fields");

    // Preload: its name and its answer.
    let preload = Request::Preload { name: String::new() };
    let mut preload = without_tag(serde_json::to_value(preload).unwrap());
    preload.push("executable".into());
    assert_eq!(sorted(fields("Preload", false)), sorted(preload), "{FIDL}: Preload's request fields");
    let preloaded = Response::Preloaded { key: String::new(), sealed_bytes: 0 };
    assert_eq!(
        sorted(fields("Preload", true)),
        sorted(without_tag(serde_json::to_value(preloaded).unwrap())),
        "{FIDL}: Preload's response fields"
    );

    // Evict answers with a count; Stats with the DaemonStats above.
    let evicted = Response::Evicted { count: 0 };
    assert_eq!(
        sorted(fields("Evict", true)),
        sorted(without_tag(serde_json::to_value(evicted).unwrap())),
        "{FIDL}: Evict's response fields"
    );
    let stats = &methods["Stats"];
    let open = stats.response.and_then(|r| r.iter().position(|t| t == &Tok::Punct('{'))).expect("Stats response");
    let response = group(stats.response.unwrap(), open).0;
    assert_eq!(
        response,
        &[Tok::Word("stats".into()), Tok::Word("DaemonStats".into()), Tok::Punct(';')][..],
        "{FIDL}: Stats answers with `stats DaemonStats`"
    );
}

// ---------------------------------------------------------------------------
// CML.

fn cml(rel: &str) -> Value {
    json5::from_str::<Value>(&read(rel)).unwrap_or_else(|e| panic!("{rel}: not JSON5: {e}"))
}

/// A structured-config type as `zygote::config::FIELDS` spells it.
fn config_type(field: &str, spec: &Value) -> String {
    let ty = spec["type"].as_str().unwrap_or_else(|| panic!("{CML}: config.{field} has no type"));
    match ty {
        "vector" => {
            assert!(spec["max_count"].is_u64(), "{CML}: config.{field} needs max_count");
            format!("vector<{}>", config_type(&format!("{field}.element"), &spec["element"]))
        }
        "string" => {
            assert!(spec["max_size"].is_u64(), "{CML}: config.{field} needs max_size");
            ty.to_string()
        }
        _ => ty.to_string(),
    }
}

fn exposes(manifest: &Value, protocol: &str) -> bool {
    manifest["expose"].as_array().into_iter().flatten().any(|e| {
        let names = match &e["protocol"] {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            v => v.as_str().into_iter().collect::<Vec<_>>(),
        };
        names.contains(&protocol) && e["from"] == "self"
    })
}

#[test]
fn cml_serves_the_fidl_protocol() {
    let m = cml(CML);
    let program = &m["program"];
    assert_eq!(program["runner"], "elf", "{CML}: program.runner");
    assert_eq!(
        program["job_policy_create_raw_processes"], "true",
        "{CML}: the zygote creates processes, so program.job_policy_create_raw_processes must be \"true\""
    );
    let includes: Vec<&str> = m["include"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(includes.contains(&"syslog/client.shard.cml"), "{CML}: needs the syslog client shard (LogSink)");

    let name = discoverable_name(&Fidl::parse(&read(FIDL)));
    let capabilities: Vec<&str> =
        m["capabilities"].as_array().into_iter().flatten().filter_map(|c| c["protocol"].as_str()).collect();
    assert_eq!(capabilities, [name.as_str()], "{CML}: the capability must be the protocol {FIDL} declares");
    assert!(exposes(&m, &name), "{CML}: must expose {name} from self");

    let gn = Gn::parse(&read(BUILD_GN));
    let bin = gn.target("rustc_binary", "bin");
    assert_eq!(program["binary"], format!("bin/{}", bin.string("name")), "{CML}: program.binary and {BUILD_GN}");
}

#[test]
fn cml_config_schema_is_zygote_config() {
    let m = cml(CML);
    let schema = m["config"].as_object().unwrap_or_else(|| panic!("{CML}: no config block"));
    let values: Value = serde_json::from_str(&read(CONFIG_JSON)).expect("config/zygote.json is JSON");
    let values = values.as_object().expect("config/zygote.json is an object");

    let cml_keys: BTreeSet<&str> = schema.keys().map(String::as_str).collect();
    let json_keys: BTreeSet<&str> = values.keys().map(String::as_str).collect();
    let rust_keys: BTreeSet<&str> = FIELDS.iter().map(|(f, _)| *f).collect();
    assert_eq!(cml_keys, rust_keys, "{CML} config keys and zygote::config::FIELDS differ");
    assert_eq!(json_keys, rust_keys, "{CONFIG_JSON} keys and zygote::config::FIELDS differ");

    for (field, ty) in FIELDS {
        assert_eq!(config_type(field, &schema[field]), ty, "{CML}: type of config.{field}");
    }
    Config::parse(Path::new(CONFIG_JSON), &read(CONFIG_JSON)).expect("config/zygote.json is a valid Config");
}

/// Where the CML's bounds and those `Config::parse` enforces differ: a value
/// at the bound must be accepted and one past it refused (naming the field),
/// so that no values file is valid on one platform and not on the other.
/// Returns the disagreements on strings and entry counts, then those on the
/// size of vector elements.
fn config_bound_disagreements() -> (Vec<String>, Vec<String>) {
    let m = cml(CML);
    let base: Value = serde_json::from_str(&read(CONFIG_JSON)).unwrap();
    // Ok(()) if Config::parse accepts `field: v`, else its error message.
    let parse_with = |field: &str, v: Value| {
        let mut cfg = base.clone();
        cfg[field] = v;
        Config::parse(Path::new("bounds.json"), &cfg.to_string()).map(drop).map_err(|e| e.to_string())
    };
    // `at` must be accepted and `past` refused with an error naming `field`.
    let check = |field: &str, what: String, at: Value, past: Value| {
        let mut wrong = Vec::new();
        if let Err(e) = parse_with(field, at) {
            wrong.push(format!("config.{field}: the CML allows {what}, Config::parse refuses it: {e}"));
        }
        match parse_with(field, past) {
            Ok(()) => wrong.push(format!("config.{field}: Config::parse accepts more than the CML's {what}")),
            Err(e) if !e.contains(field) => wrong.push(format!("config.{field}: the error does not name it: {e}")),
            Err(_) => {}
        }
        wrong
    };
    let bound = |spec: &Value, key: &str| spec[key].as_u64().unwrap() as usize;
    // Strings of exactly `len` bytes; the zygote's string fields are paths or
    // filters, so try one of each shape.
    let strings = |len: usize| [format!("/{}", "a".repeat(len - 1)), "a".repeat(len)];

    let (mut sizes, mut elements) = (Vec::new(), Vec::new());
    for (field, _) in FIELDS {
        let spec = &m["config"][field];
        match spec["type"].as_str().unwrap() {
            "string" => {
                let n = bound(spec, "max_size");
                let shape = (0..2).find(|&shape| parse_with(field, json!(strings(n)[shape])).is_ok()).unwrap_or(0);
                sizes.extend(check(
                    field,
                    format!("{n} bytes"),
                    json!(strings(n)[shape]),
                    json!(strings(n + 1)[shape]),
                ));
            }
            "vector" => {
                let n = bound(spec, "max_count");
                let element = &spec["element"];
                let item = if element["type"] == "string" {
                    let size = bound(element, "max_size");
                    let [at, past] = [strings(size), strings(size + 1)].map(|[path, _]| json!([path]));
                    elements.extend(check(field, format!("elements of {size} bytes"), at, past));
                    json!("/x")
                } else {
                    json!(0)
                };
                sizes.extend(check(
                    field,
                    format!("{n} entries"),
                    json!(vec![item.clone(); n]),
                    json!(vec![item; n + 1]),
                ));
            }
            _ => {}
        }
    }
    (sizes, elements)
}

#[test]
fn cml_config_bounds_are_config_parse_bounds() {
    let (wrong, _) = config_bound_disagreements();
    assert!(wrong.is_empty(), "{CML} and src/config.rs disagree on bounds:\n{}", wrong.join("\n"));
}

#[test]
fn cml_config_element_bounds_are_config_parse_bounds() {
    let (_, wrong) = config_bound_disagreements();
    assert!(wrong.is_empty(), "{CML} and src/config.rs disagree on element bounds:\n{}", wrong.join("\n"));
}

#[test]
fn test_cml_runs_the_unit_tests() {
    let m = cml(TESTS_CML);
    let includes: Vec<&str> = m["include"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(
        includes.contains(&"//src/sys/test_runners/elf/create_raw_processes.shard.cml"),
        "{TESTS_CML}: the tests create processes; include the create_raw_processes shard"
    );
    // rustc_library(...) { with_unit_tests = true } builds `<name>_lib_test`.
    let gn = Gn::parse(&read(BUILD_GN));
    let lib = gn.target("rustc_library", "lib");
    assert_eq!(lib.word("with_unit_tests"), Some("true"), "{BUILD_GN}: lib needs with_unit_tests");
    assert_eq!(m["program"]["binary"], format!("bin/{}_lib_test", lib.string("name")), "{TESTS_CML}: program.binary");
}

// ---------------------------------------------------------------------------
// BUILD.gn.

#[derive(Debug)]
enum GnValue {
    Strings(Vec<String>),
    Word(String),
}

#[derive(Debug, Default)]
struct GnScope {
    assigns: BTreeMap<String, GnValue>,
}

#[derive(Debug)]
struct GnCall {
    func: String,
    args: Vec<String>,
    body: GnScope,
}

struct Gn {
    toks: Vec<Tok>,
    top: GnScope,
    calls: Vec<GnCall>,
}

impl GnScope {
    fn strings(&self, key: &str) -> &[String] {
        match self.assigns.get(key) {
            Some(GnValue::Strings(v)) => v,
            _ => &[],
        }
    }

    fn string(&self, key: &str) -> &str {
        match self.strings(key) {
            [s] => s,
            other => panic!("{BUILD_GN}: `{key}` should be one string, is {other:?}"),
        }
    }

    fn word(&self, key: &str) -> Option<&str> {
        match self.assigns.get(key) {
            Some(GnValue::Word(w)) => Some(w),
            _ => None,
        }
    }
}

/// Assignments (`x = ...`, `x += ...`) and calls (`f(args) { body }`) of one scope.
fn gn_scope(toks: &[Tok], calls: &mut Vec<GnCall>) -> GnScope {
    let mut scope = GnScope::default();
    let mut i = 0;
    while i < toks.len() {
        let Some(name) = word(toks.get(i)) else {
            i += 1;
            continue;
        };
        let op = if is_punct(toks.get(i + 1), '=') {
            Some(i + 2)
        } else if is_punct(toks.get(i + 1), '+') && is_punct(toks.get(i + 2), '=') {
            Some(i + 3)
        } else {
            None
        };
        if let Some(v) = op {
            let (value, next) = match toks.get(v) {
                Some(Tok::Str(s)) => (GnValue::Strings(vec![s.clone()]), v + 1),
                Some(Tok::Punct('[')) => {
                    let (inner, next) = group(toks, v);
                    let strs = inner.iter().filter_map(|t| if let Tok::Str(s) = t { Some(s.clone()) } else { None });
                    (GnValue::Strings(strs.collect()), next)
                }
                Some(Tok::Word(w)) => (GnValue::Word(w.clone()), v + 1),
                other => panic!("{BUILD_GN}: unexpected value for {name}: {other:?}"),
            };
            match (scope.assigns.get_mut(name), value) {
                (Some(GnValue::Strings(old)), GnValue::Strings(new)) => old.extend(new),
                (_, value) => {
                    scope.assigns.insert(name.to_string(), value);
                }
            }
            i = next;
        } else if is_punct(toks.get(i + 1), '(') {
            let (args, mut next) = group(toks, i + 1);
            let args = args.iter().filter_map(|t| if let Tok::Str(s) = t { Some(s.clone()) } else { None }).collect();
            let mut body = GnScope::default();
            if is_punct(toks.get(next), '{') {
                let inner;
                (inner, next) = group(toks, next);
                body = gn_scope(inner, calls);
            }
            calls.push(GnCall { func: name.to_string(), args, body });
            i = next;
        } else {
            i += 1;
        }
    }
    scope
}

impl Gn {
    fn parse(text: &str) -> Self {
        let toks = tokenize(&strip_comments(text, "#"));
        let mut calls = Vec::new();
        let top = gn_scope(&toks, &mut calls);
        Gn { toks, top, calls }
    }

    fn target(&self, func: &str, name: &str) -> &GnScope {
        let found: Vec<&GnCall> =
            self.calls.iter().filter(|c| c.func == func && c.args.first().map(String::as_str) == Some(name)).collect();
        assert_eq!(found.len(), 1, "{BUILD_GN}: expected one {func}(\"{name}\")");
        &found[0].body
    }

    /// Every string literal naming a file of ours (not a label, not an SDK path).
    fn file_strings(&self) -> BTreeSet<String> {
        const EXTENSIONS: [&str; 5] = [".rs", ".fidl", ".cml", ".json", ".json5"];
        self.toks
            .iter()
            .filter_map(|t| if let Tok::Str(s) = t { Some(s) } else { None })
            .filter(|s| EXTENSIONS.iter().any(|e| s.ends_with(e)))
            .filter(|s| !s.starts_with("//") && !s.starts_with(':') && !s.contains('$'))
            .cloned()
            .collect()
    }
}

/// Joins `rel` to `dir`, resolving `..`, as a repo-relative path with `/`.
fn normalize(dir: &Path, rel: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in dir.join(rel).components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

/// Every file of the crate rooted at `root_file` (repo-relative): follows
/// `mod name;` declarations (any visibility, any `#[cfg]`, `#[path]`
/// honoured), whatever the target.
fn crate_files(root_file: &str) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut todo = vec![root_file.to_string()];
    while let Some(file) = todo.pop() {
        if !files.insert(file.clone()) {
            continue;
        }
        let path = PathBuf::from(&file);
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        // The crate root and mod.rs files own their directory; `a/b.rs` owns `a/b/`.
        let module_dir = if file == root_file || stem == "mod" { parent.clone() } else { parent.join(&stem) };
        let text = read(&file);
        let mut pending_path: Option<String> = None;
        for line in text.lines() {
            let mut line = line.trim();
            if line.starts_with("//") || line.is_empty() {
                continue;
            }
            // Attributes, alone on their line or in front of the item.
            while let Some(attr) = line.strip_prefix("#[") {
                let Some(end) = attr.find(']') else { break };
                if let Some(p) = attr[..end].trim().strip_prefix("path") {
                    let p = p.trim().trim_start_matches('=').trim().trim_matches('"');
                    pending_path = Some(p.to_string());
                }
                line = attr[end + 1..].trim();
            }
            if line.is_empty() {
                continue;
            }
            let path_attr = pending_path.take();
            let mut item = line;
            if let Some(rest) = item.strip_prefix("pub") {
                item = rest.trim_start();
                if item.starts_with('(') {
                    item = item[item.find(')').map_or(0, |i| i + 1)..].trim_start();
                }
            }
            let Some(rest) = item.strip_prefix("mod ") else { continue };
            let Some(name) = rest.trim().strip_suffix(';') else { continue }; // inline `mod x { .. }`
            let name = name.trim();
            let child = match path_attr {
                Some(p) => normalize(&parent, &p),
                None => {
                    let flat = normalize(&module_dir, &format!("{name}.rs"));
                    let nested = normalize(&module_dir, &format!("{name}/mod.rs"));
                    if root().join(&flat).is_file() { flat } else { nested }
                }
            };
            assert!(root().join(&child).is_file(), "{file}: `mod {name};` but {child} does not exist");
            todo.push(child);
        }
    }
    files
}

fn package_crate_name(cargo_toml: &str) -> String {
    let text = read(cargo_toml);
    let package = text.split("[package]").nth(1).unwrap_or_else(|| panic!("{cargo_toml}: no [package]"));
    let line = package
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("name") && l[4..].trim_start().starts_with('='))
        .unwrap_or_else(|| panic!("{cargo_toml}: no package name"));
    line.split('"').nth(1).expect("quoted package name").replace('-', "_")
}

#[test]
fn build_gn_names_only_existing_files() {
    let gn = Gn::parse(&read(BUILD_GN));
    let files = gn.file_strings();
    for f in [FIDL, CML, TESTS_CML, CONFIG_JSON, "src/lib.rs", "src/main.rs"] {
        assert!(files.contains(f), "{BUILD_GN} should name {f}");
    }
    let missing: Vec<&String> = files.iter().filter(|f| !root().join(f).is_file()).collect();
    assert!(missing.is_empty(), "{BUILD_GN} names files that do not exist: {missing:?}");

    // The positions that matter.
    let fidl = Fidl::parse(&read(FIDL));
    let fidl_target = gn.target("fidl", &fidl.library());
    assert_eq!(fidl_target.strings("sources"), [FIDL], "{BUILD_GN}: fidl(\"{}\") sources", fidl.library());
    assert_eq!(gn.target("fuchsia_component_manifest", "manifest").string("manifest"), CML);
    assert_eq!(
        gn.target("fuchsia_structured_config_values", "zygote_config_values").string("values_source"),
        CONFIG_JSON
    );
    let tests =
        gn.calls.iter().find(|c| c.func == "fuchsia_unittest_component" && c.body.strings("manifest") == [TESTS_CML]);
    let tests = tests.unwrap_or_else(|| panic!("{BUILD_GN}: no fuchsia_unittest_component with manifest {TESTS_CML}"));
    assert_eq!(tests.body.string("test_type"), "system", "{BUILD_GN}: the unit tests create processes");
}

#[test]
fn build_gn_rust_sources_are_the_crates() {
    let gn = Gn::parse(&read(BUILD_GN));
    let linux_only: BTreeSet<String> = gn.top.strings("linux_only_sources").iter().cloned().collect();
    let package = package_crate_name("Cargo.toml");
    let targets = [
        ("rustc_library", "lib", "src/lib.rs", package.clone()),
        ("rustc_binary", "bin", "src/main.rs", package.clone()),
        ("rustc_library", "plan", "crates/plan/src/lib.rs", package_crate_name("crates/plan/Cargo.toml")),
        ("rustc_library", "core", "crates/core/src/lib.rs", package_crate_name("crates/core/Cargo.toml")),
    ];

    let mut all_crate_files = BTreeSet::new();
    let mut listed = BTreeSet::new();
    for (func, name, root_file, crate_name) in &targets {
        let t = gn.target(func, name);
        assert_eq!(t.string("name"), crate_name, "{BUILD_GN}: {func}(\"{name}\") name");
        assert_eq!(t.string("edition"), "2024", "{BUILD_GN}: {func}(\"{name}\") edition");
        assert_eq!(t.string("source_root"), *root_file, "{BUILD_GN}: {func}(\"{name}\") source_root");
        let sources: BTreeSet<String> = t.strings("sources").iter().cloned().collect();
        assert!(sources.contains(*root_file), "{BUILD_GN}: {func}(\"{name}\") sources lack {root_file}");

        let files = crate_files(root_file);
        let foreign: Vec<&String> = sources.difference(&files).collect();
        assert!(
            foreign.is_empty(),
            "{BUILD_GN}: {func}(\"{name}\") lists files that are not in its crate: {foreign:?}"
        );
        let unlisted: Vec<&String> =
            files.iter().filter(|f| !sources.contains(*f) && !linux_only.contains(*f)).collect();
        assert!(
            unlisted.is_empty(),
            "{BUILD_GN}: files of {root_file}'s crate in neither {func}(\"{name}\") sources nor linux_only_sources: \
             {unlisted:?}"
        );
        let overlap: Vec<&String> = sources.intersection(&linux_only).collect();
        assert!(overlap.is_empty(), "{BUILD_GN}: both a Fuchsia source and Linux-only: {overlap:?}");

        // include_str!/include_bytes! files are inputs.
        let inputs: BTreeSet<&str> = t.strings("inputs").iter().map(String::as_str).collect();
        for file in &sources {
            let text = read(file);
            for (at, _) in text.match_indices("include_") {
                let rest = &text[at..];
                let Some(arg) = rest
                    .strip_prefix("include_str!(\"")
                    .or_else(|| rest.strip_prefix("include_bytes!(\""))
                    .and_then(|a| a.split('"').next())
                else {
                    continue;
                };
                let included = normalize(Path::new(file).parent().unwrap(), arg);
                assert!(inputs.contains(included.as_str()), "{BUILD_GN}: {file} includes {included}; add it to inputs");
            }
        }
        all_crate_files.extend(files);
        listed.extend(sources);
    }

    let stray: Vec<&String> = linux_only.difference(&all_crate_files).collect();
    assert!(stray.is_empty(), "{BUILD_GN}: linux_only_sources names files that are in no crate: {stray:?}");
    listed.extend(linux_only);
    let rs: Vec<String> = gn.file_strings().into_iter().filter(|f| f.ends_with(".rs")).collect();
    let elsewhere: Vec<&String> = rs.iter().filter(|f| !listed.contains(*f)).collect();
    assert!(elsewhere.is_empty(), "{BUILD_GN}: .rs files named outside any target's sources: {elsewhere:?}");
}
