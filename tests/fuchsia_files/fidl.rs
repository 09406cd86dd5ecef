//! The FIDL library against the Linux protocol: methods, error codes, fields.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use zygote::service::message::{DaemonStats, ErrorCode, ImageStats, Request, Response, SpawnArgs};
use zygote_core::CacheStats;

use super::*;

/// One declaration or member: its `@attributes` (name, argument tokens) and the rest.
pub(crate) struct Decl<'a> {
    pub(crate) attrs: Vec<(&'a str, &'a [Tok])>,
    pub(crate) rest: &'a [Tok],
}

pub(crate) fn decl(stmt: &[Tok]) -> Decl<'_> {
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

pub(crate) struct Fidl {
    pub(crate) toks: Vec<Tok>,
}

pub(crate) struct Method<'a> {
    pub(crate) name: &'a str,
    pub(crate) request: &'a [Tok],
    pub(crate) response: Option<&'a [Tok]>,
}

impl Fidl {
    pub(crate) fn parse(text: &str) -> Self {
        Fidl { toks: tokenize(&strip_comments(text, "//")) }
    }

    pub(crate) fn decls(&self) -> impl Iterator<Item = Decl<'_>> {
        statements(&self.toks).into_iter().map(decl)
    }

    pub(crate) fn library(&self) -> String {
        let names: Vec<String> = self
            .decls()
            .filter(|d| word(d.rest.first()) == Some("library"))
            .map(|d| word(d.rest.get(1)).expect("library name").to_string())
            .collect();
        assert_eq!(names.len(), 1, "{FIDL}: expected one `library` declaration, found {names:?}");
        names.into_iter().next().unwrap()
    }

    /// The protocol declaration `name`: its attributes and body.
    pub(crate) fn protocol(&self, name: &str) -> (Vec<(&str, &[Tok])>, &[Tok]) {
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
    pub(crate) fn type_body(&self, name: &str) -> &[Tok] {
        for d in self.decls() {
            if word(d.rest.first()) == Some("type") && word(d.rest.get(1)) == Some(name) {
                let open = d.rest.iter().position(|t| t == &Tok::Punct('{')).expect("type body");
                return group(d.rest, open).0;
            }
        }
        panic!("{FIDL}: no type {name}");
    }
}

pub(crate) fn methods(body: &[Tok]) -> Vec<Method<'_>> {
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
pub(crate) fn members(body: &[Tok]) -> Vec<String> {
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
pub(crate) fn payload_fields(payload: &[Tok]) -> Vec<String> {
    if payload.is_empty() {
        return Vec::new();
    }
    let open = payload.iter().position(|t| t == &Tok::Punct('{')).expect("payload struct body");
    members(group(payload, open).0)
}

pub(crate) fn enum_members(body: &[Tok]) -> Vec<(String, u64)> {
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
pub(crate) fn discoverable_name(fidl: &Fidl) -> String {
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
pub(crate) fn serde_keys(v: impl serde::Serialize) -> Vec<String> {
    match serde_json::to_value(v).expect("serialize") {
        Value::Object(m) => m.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

pub(crate) fn sorted(v: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
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
        ("CacheStats", serde_keys(CacheStats::default())),
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
