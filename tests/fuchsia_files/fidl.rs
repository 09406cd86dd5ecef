//! A small FIDL reader, and the library against the Rust code that serves it.

use std::collections::BTreeSet;

use zygote::service::message::Request;
use zygote_fuchsia::protocol::{ErrorCode, EvictReply, MAX_NAME_LENGTH, PreloadReply};

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

/// `type Name = modifiers kind { body }`.
pub(crate) struct TypeDecl<'a> {
    pub(crate) name: &'a str,
    pub(crate) modifiers: Vec<&'a str>,
    pub(crate) kind: &'a str,
    pub(crate) body: &'a [Tok],
}

/// `modifiers protocol Name { body }` with its attributes.
pub(crate) struct Protocol<'a> {
    pub(crate) attrs: Vec<(&'a str, &'a [Tok])>,
    pub(crate) modifiers: Vec<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) body: &'a [Tok],
}

/// A method: modifiers, name, request payload, response payload, error type.
pub(crate) struct Method<'a> {
    pub(crate) modifiers: Vec<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) request: &'a [Tok],
    pub(crate) response: Option<&'a [Tok]>,
    pub(crate) error: Option<&'a [Tok]>,
}

pub(crate) const LAYOUTS: [&str; 5] = ["struct", "table", "union", "enum", "bits"];

pub(crate) struct Fidl {
    pub(crate) toks: Vec<Tok>,
}

impl Fidl {
    pub(crate) fn parse(text: &str) -> Self {
        Fidl { toks: tokenize(&strip_comments(text, "//")) }
    }

    pub(crate) fn decls(&self) -> impl Iterator<Item = Decl<'_>> {
        statements(&self.toks).into_iter().map(decl)
    }

    /// The `library` declaration: its name and attributes.
    pub(crate) fn library(&self) -> (String, Vec<(&str, &[Tok])>) {
        let found: Vec<Decl> = self.decls().filter(|d| word(d.rest.first()) == Some("library")).collect();
        assert_eq!(found.len(), 1, "{FIDL}: expected one `library` declaration");
        let d = found.into_iter().next().expect("one");
        (word(d.rest.get(1)).expect("library name").to_string(), d.attrs)
    }

    pub(crate) fn types(&self) -> Vec<TypeDecl<'_>> {
        let mut out = Vec::new();
        for d in self.decls() {
            if word(d.rest.first()) != Some("type") {
                continue;
            }
            let name = word(d.rest.get(1)).expect("type name");
            let open = d.rest.iter().position(|t| t == &Tok::Punct('{')).expect("type body");
            let words: Vec<&str> = d.rest[3..open].iter().filter_map(|t| word(Some(t))).collect();
            let at = words.iter().position(|w| LAYOUTS.contains(w)).unwrap_or_else(|| panic!("{name}: no layout"));
            let body = group(d.rest, open).0;
            out.push(TypeDecl { name, modifiers: words[..at].to_vec(), kind: words[at], body });
        }
        out
    }

    pub(crate) fn type_decl(&self, name: &str) -> Option<TypeDecl<'_>> {
        self.types().into_iter().find(|t| t.name == name)
    }

    pub(crate) fn protocols(&self) -> Vec<Protocol<'_>> {
        let mut out = Vec::new();
        for d in self.decls() {
            let Some(at) = d.rest.iter().position(|t| t == &Tok::Word("protocol".into())) else { continue };
            let name = word(d.rest.get(at + 1)).expect("protocol name");
            assert!(is_punct(d.rest.get(at + 2), '{'), "{FIDL}: protocol {name} has no body");
            let modifiers = d.rest[..at].iter().filter_map(|t| word(Some(t))).collect();
            out.push(Protocol { attrs: d.attrs, modifiers, name, body: group(d.rest, at + 2).0 });
        }
        out
    }

    pub(crate) fn protocol(&self, name: &str) -> Protocol<'_> {
        self.protocols().into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{FIDL}: no protocol {name}"))
    }

    /// `const NAME TYPE = VALUE;` values, by name.
    pub(crate) fn consts(&self) -> Vec<(String, String)> {
        self.decls()
            .filter_map(|d| match d.rest {
                [Tok::Word(c), Tok::Word(name), Tok::Word(_), Tok::Punct('='), Tok::Word(v)] if c == "const" => {
                    Some((name.clone(), v.clone()))
                }
                _ => None,
            })
            .collect()
    }

    pub(crate) fn const_u64(&self, name: &str) -> Option<u64> {
        self.consts().into_iter().find(|(n, _)| n == name).and_then(|(_, v)| v.parse().ok())
    }
}

pub(crate) fn methods(body: &[Tok]) -> Vec<Method<'_>> {
    let mut out = Vec::new();
    for stmt in statements(body) {
        let rest = decl(stmt).rest;
        let Some(at) = rest.iter().position(|t| t == &Tok::Punct('(')) else {
            assert!(rest.is_empty(), "{FIDL}: not a method: {rest:?}");
            continue;
        };
        if rest[..at].iter().any(|t| t == &Tok::Punct('-')) {
            continue; // an event (`-> OnSomething(...)`) is not a request
        }
        let words: Vec<&str> = rest[..at].iter().filter_map(|t| word(Some(t))).collect();
        assert_ne!(words.first(), Some(&"compose"), "{FIDL}: compose is not supported by this check");
        let (name, modifiers) = words.split_last().unwrap_or_else(|| panic!("{FIDL}: no method name: {rest:?}"));
        let (request, next) = group(rest, at);
        let (mut response, mut error) = (None, None);
        if is_punct(rest.get(next), '-') && is_punct(rest.get(next + 1), '>') {
            let (r, after) = group(rest, next + 2);
            response = Some(r);
            if word(rest.get(after)) == Some("error") {
                error = Some(&rest[after + 1..]);
            }
        }
        out.push(Method { modifiers: modifiers.to_vec(), name, request, response, error });
    }
    out
}

/// Member names of a struct, table or union body (`name type;` or `N: name type;`).
pub(crate) fn members(body: &[Tok]) -> Vec<(String, &[Tok])> {
    statements(body)
        .into_iter()
        .filter_map(|stmt| {
            let mut rest = decl(stmt).rest;
            if word(rest.first()).is_some_and(|w| w.chars().all(|c| c.is_ascii_digit())) && is_punct(rest.get(1), ':') {
                rest = &rest[2..];
            }
            word(rest.first()).map(|n| (n.to_string(), &rest[1..]))
        })
        .collect()
}

pub(crate) fn member_names(body: &[Tok]) -> Vec<String> {
    members(body).into_iter().map(|(n, _)| n).collect()
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
pub(crate) fn discoverable_name(fidl: &Fidl, protocol: &str) -> String {
    let p = fidl.protocol(protocol);
    let (_, args) = p
        .attrs
        .iter()
        .find(|(name, _)| *name == "discoverable")
        .unwrap_or_else(|| panic!("{FIDL}: protocol {protocol} is not @discoverable"));
    for i in 0..args.len() {
        if word(args.get(i)) == Some("name")
            && is_punct(args.get(i + 1), '=')
            && let Some(Tok::Str(name)) = args.get(i + 2)
        {
            return name.clone();
        }
    }
    format!("{}.{protocol}", fidl.library().0)
}

pub(crate) fn sorted(v: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    let mut v: Vec<String> = v.into_iter().map(Into::into).collect();
    v.sort();
    v
}

/// The named type a payload `(Name)` refers to.
fn payload_type(payload: &[Tok]) -> &str {
    match payload {
        [Tok::Word(name)] => name,
        other => panic!("{FIDL}: payloads are named tables here, not {other:?}"),
    }
}

#[test]
fn cache_methods_are_the_linux_requests_fuchsia_does_not_serve_otherwise() {
    let fidl = Fidl::parse(&read(FIDL));
    let body = fidl.protocol(PROTOCOL).body;
    let names: Vec<&str> = methods(body).iter().map(|m| m.name).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "{FIDL}: a method is declared twice: {names:?}");
    // Spawn is fuchsia.process.Launcher, Stats is Inspect, and a caller
    // waits on the process handle it holds instead of Wait(koid).
    let elsewhere = ["Spawn", "Stats", "Wait"];
    let linux: BTreeSet<&str> = Request::METHODS.into_iter().filter(|m| !elsewhere.contains(m)).collect();
    assert_eq!(unique, linux, "{FIDL}: {PROTOCOL}'s methods and Request::METHODS less {elsewhere:?} differ");
}

#[test]
fn fidl_error_is_error_code() {
    let fidl = Fidl::parse(&read(FIDL));
    let error = fidl.type_decl("Error").unwrap_or_else(|| panic!("{FIDL}: no type Error"));
    assert_eq!(error.kind, "enum");
    let expected: Vec<(String, u64)> =
        ErrorCode::ALL.iter().map(|c| (c.fidl_name().to_string(), u64::from(c.into_raw()))).collect();
    assert_eq!(
        enum_members(error.body),
        expected,
        "{FIDL}: Error must have exactly zygote_fuchsia::protocol::ErrorCode::ALL, in order, numbered from 1"
    );
    for m in methods(fidl.protocol(PROTOCOL).body) {
        let e = m.error.unwrap_or_else(|| panic!("{FIDL}: {} reports no error", m.name));
        assert_eq!(e, &[Tok::Word("Error".into())][..], "{FIDL}: {} reports {e:?}", m.name);
    }
}

#[test]
fn fidl_payloads_are_the_rust_replies() {
    let fidl = Fidl::parse(&read(FIDL));
    let methods = methods(fidl.protocol(PROTOCOL).body);
    let method = |name: &str| methods.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no {name}"));
    let fields = |payload: &[Tok]| {
        let ty = payload_type(payload);
        sorted(member_names(fidl.type_decl(ty).unwrap_or_else(|| panic!("{FIDL}: no type {ty}")).body))
    };
    let preload = method("Preload");
    assert_eq!(fields(preload.response.expect("reply")), sorted(PreloadReply::FIELDS), "Preload's reply");
    // Preload's request: the Linux request's fields, with the executable
    // as a VMO instead of an fd.
    let Request::Preload { name: _ } = (Request::Preload { name: String::new() }) else { unreachable!() };
    assert_eq!(fields(preload.request), sorted(["executable", "name"]), "Preload's request");
    assert_eq!(fields(method("Evict").response.expect("reply")), sorted(EvictReply::FIELDS), "Evict's reply");

    assert_eq!(fidl.const_u64("KEY_LENGTH"), Some(zygote_fuchsia::images::KEY_HEX_LEN as u64));
    assert_eq!(fidl.const_u64("MAX_NAME_LENGTH"), Some(MAX_NAME_LENGTH as u64));
}
