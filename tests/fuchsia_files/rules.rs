//! The FIDL API rules a Fuchsia reviewer applies (fidlc, fidl-lint, the API
//! rubric), each a function listing its violations, run on the library and on
//! a small library that breaks it.

use zygote_fuchsia::processargs::{CALLER_HANDLE_BUDGET, LAUNCHER_HANDLES, MAX_MSG_HANDLES};

use super::fidl::{Fidl, LAYOUTS, members, methods};
use super::*;

/// Every rule: its name and checker.
type Rule = fn(&str) -> Vec<String>;
const RULES: [(&str, Rule); 12] = [
    ("platform copyright header", header),
    ("versioned library", versioned),
    ("open protocols", open_protocols),
    ("flexible methods", flexible_methods),
    ("flexible enums, unions and bits", flexible_layouts),
    ("tables, not structs", no_structs),
    ("rights on every handle", handle_rights),
    ("handle budget per message", handle_budget),
    ("bounded strings and vectors", bounded),
    ("koids are uint64", koids),
    ("doc comments on declarations", docs),
    ("no claim that static PIEs are refused", static_pies),
];

fn header(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().take(3).collect();
    let first = lines.first().copied().unwrap_or("");
    let year = first.strip_prefix("// Copyright ").and_then(|r| r.get(..4)).unwrap_or("");
    let mut bad = Vec::new();
    if !year.chars().all(|c| c.is_ascii_digit())
        || year.len() != 4
        || !first.ends_with(" The Fuchsia Authors. All rights reserved.")
    {
        bad.push(format!("line 1 is not the platform copyright line: {first:?}"));
    }
    let license =
        ["// Use of this source code is governed by a BSD-style license that can be", "// found in the LICENSE file."];
    if lines.get(1..3) != Some(&license[..]) {
        bad.push("lines 2-3 are not the BSD-style license lines".into());
    }
    bad
}

fn versioned(text: &str) -> Vec<String> {
    let fidl = Fidl::parse(text);
    let (name, attrs) = fidl.library();
    let added = attrs.iter().filter(|(a, _)| *a == "available").any(|(_, args)| {
        args.windows(3).any(|w| {
            word(w.first()) == Some("added")
                && is_punct(w.get(1), '=')
                && word(w.get(2)).is_some_and(|v| v == "HEAD" || v.chars().all(|c| c.is_ascii_digit()))
        })
    });
    if added { vec![] } else { vec![format!("library {name} has no @available(added=...)")] }
}

fn open_protocols(text: &str) -> Vec<String> {
    let fidl = Fidl::parse(text);
    let protocols = fidl.protocols();
    protocols
        .iter()
        .filter(|p| !p.modifiers.contains(&"open"))
        .map(|p| format!("protocol {} is not open", p.name))
        .collect()
}

fn flexible_methods(text: &str) -> Vec<String> {
    let fidl = Fidl::parse(text);
    let mut bad = Vec::new();
    for p in fidl.protocols() {
        for m in methods(p.body) {
            if !m.modifiers.contains(&"flexible") {
                bad.push(format!("{}.{} is not flexible", p.name, m.name));
            }
        }
    }
    bad
}

fn flexible_layouts(text: &str) -> Vec<String> {
    let fidl = Fidl::parse(text);
    let types = fidl.types();
    types
        .iter()
        .filter(|t| matches!(t.kind, "enum" | "union" | "bits") && !t.modifiers.contains(&"flexible"))
        .map(|t| format!("{} {} is not flexible", t.kind, t.name))
        .collect()
}

fn no_structs(text: &str) -> Vec<String> {
    let fidl = Fidl::parse(text);
    let mut bad: Vec<String> =
        fidl.types().iter().filter(|t| t.kind == "struct").map(|t| format!("type {} is a struct", t.name)).collect();
    for p in fidl.protocols() {
        for m in methods(p.body) {
            let payloads = [Some(m.request), m.response].into_iter().flatten();
            if payloads.flatten().any(|t| t == &Tok::Word("struct".into())) {
                bad.push(format!("{}.{} has a struct payload", p.name, m.name));
            }
        }
    }
    bad
}

fn is_handle(t: Option<&Tok>) -> bool {
    matches!(word(t), Some("zx.Handle" | "zx.handle"))
}

fn handle_rights(text: &str) -> Vec<String> {
    let toks = Fidl::parse(text).toks;
    let mut bad = Vec::new();
    for i in (0..toks.len()).filter(|&i| is_handle(toks.get(i))) {
        let ok = is_punct(toks.get(i + 1), ':')
            && is_punct(toks.get(i + 2), '<')
            && word(toks.get(i + 3)).is_some()
            && is_punct(toks.get(i + 4), ',')
            && {
                let end = toks[i..].iter().position(|t| t == &Tok::Punct('>')).map_or(toks.len(), |e| i + e);
                let rights: Vec<&Tok> = toks[i + 5..end].iter().filter(|t| !matches!(t, Tok::Punct('|'))).collect();
                let right = |t: &&Tok| {
                    word(Some(t)).is_some_and(|w| w.starts_with("zx.Rights.") || w.starts_with("zx.RIGHTS_"))
                };
                !rights.is_empty() && rights.iter().all(|t| right(t) || word(Some(t)) == Some("optional"))
            };
        if !ok {
            let shown: Vec<&Tok> = toks[i..(i + 6).min(toks.len())].iter().collect();
            bad.push(format!("a handle without rights: {shown:?}"));
        }
    }
    bad
}

/// Handles one value of the type `ty` can carry; `Err` when unbounded or
/// unknown.
fn handles(fidl: &Fidl, ty: &[Tok]) -> Result<u64, String> {
    let close = |open: usize| {
        let mut depth = 0;
        for (i, t) in ty.iter().enumerate().skip(open) {
            match t {
                Tok::Punct('<') => depth += 1,
                Tok::Punct('>') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                _ => {}
            }
        }
        Err(format!("unbalanced <> in {ty:?}"))
    };
    let bound = |w: &str| w.parse::<u64>().ok().or_else(|| fidl.const_u64(w));
    let words: Vec<&str> = ty.iter().take_while(|t| t != &&Tok::Punct('{')).filter_map(|t| word(Some(t))).collect();
    if let Some(layout) = words.iter().find(|w| LAYOUTS.contains(w)) {
        let open = ty.iter().position(|t| t == &Tok::Punct('{')).ok_or("inline layout without a body")?;
        return layout_handles(fidl, layout, group(ty, open).0);
    }
    match word(ty.first()) {
        Some("zx.Handle" | "zx.handle" | "client_end" | "server_end") => Ok(1),
        Some("box") => handles(fidl, &ty[2..close(1)?]),
        Some("vector") => {
            let end = close(1)?;
            let inner = handles(fidl, &ty[2..end])?;
            let n = match (is_punct(ty.get(end + 1), ':'), ty.get(end + 2)) {
                (true, Some(Tok::Punct('<'))) => word(ty.get(end + 3)).and_then(bound),
                (true, t) => word(t).and_then(bound),
                _ => None,
            };
            match n {
                _ if inner == 0 => Ok(0),
                Some(n) => Ok(n * inner),
                None => Err(format!("an unbounded vector of handles: {ty:?}")),
            }
        }
        Some("array") => {
            let end = close(1)?;
            let comma = ty[..end].iter().rposition(|t| t == &Tok::Punct(',')).ok_or("array without a size")?;
            let n = word(ty.get(comma + 1)).and_then(bound).ok_or("array size")?;
            Ok(n * handles(fidl, &ty[2..comma])?)
        }
        Some(w)
            if w == "string"
                || w == "bool"
                || w.starts_with("uint")
                || w.starts_with("int")
                || w.starts_with("float") =>
        {
            Ok(0)
        }
        Some(name) => match fidl.type_decl(name) {
            Some(t) => layout_handles(fidl, t.kind, t.body),
            None => Err(format!("cannot count the handles of {name}")),
        },
        None => Err(format!("not a type: {ty:?}")),
    }
}

fn layout_handles(fidl: &Fidl, kind: &str, body: &[Tok]) -> Result<u64, String> {
    if matches!(kind, "enum" | "bits") {
        return Ok(0);
    }
    let counts = members(body).into_iter().map(|(_, ty)| handles(fidl, ty)).collect::<Result<Vec<u64>, _>>()?;
    Ok(if kind == "union" { counts.into_iter().max().unwrap_or(0) } else { counts.into_iter().sum() })
}

fn handle_budget(text: &str) -> Vec<String> {
    let fidl = Fidl::parse(text);
    let mut bad = Vec::new();
    for p in fidl.protocols() {
        for m in methods(p.body) {
            for (what, payload) in [("request", Some(m.request)), ("response", m.response)] {
                let Some(payload) = payload.filter(|p| !p.is_empty()) else { continue };
                match handles(&fidl, payload) {
                    Ok(n) if n <= MAX_MSG_HANDLES as u64 => {}
                    Ok(n) => bad.push(format!(
                        "{}.{} {what} may carry {n} handles, more than {MAX_MSG_HANDLES}",
                        p.name, m.name
                    )),
                    Err(e) => bad.push(format!("{}.{} {what}: {e}", p.name, m.name)),
                }
            }
        }
    }
    bad
}

/// Every `string` and `vector` names a bound other than `MAX`, so every
/// message has a size known from the library (the old `Stats` reply did not).
fn bounded(text: &str) -> Vec<String> {
    let toks = Fidl::parse(text).toks;
    let mut bad = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let kind = match word(Some(t)) {
            Some(k @ ("string" | "vector")) => k,
            _ => continue,
        };
        let mut at = i + 1;
        if kind == "vector" {
            let mut depth = 0;
            for (j, t) in toks.iter().enumerate().skip(i + 1) {
                match t {
                    Tok::Punct('<') => depth += 1,
                    Tok::Punct('>') => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    at = j + 1;
                    break;
                }
            }
        }
        let bound = match (is_punct(toks.get(at), ':'), toks.get(at + 1)) {
            (true, Some(Tok::Punct('<'))) => word(toks.get(at + 2)),
            (true, t) => word(t),
            _ => None,
        };
        if bound.is_none_or(|b| b == "MAX" || b == "optional") {
            bad.push(format!("an unbounded {kind} (token {i})"));
        }
    }
    bad
}

fn koids(text: &str) -> Vec<String> {
    let fidl = Fidl::parse(text);
    let mut bad = Vec::new();
    for t in fidl.types() {
        for (name, ty) in members(t.body) {
            if name == "pid" {
                bad.push(format!("{}.pid: Fuchsia has koids, not pids", t.name));
            }
            if (name == "koid" || name.ends_with("_koid")) && ty != [Tok::Word("uint64".into())] {
                bad.push(format!("{}.{name} is not uint64", t.name));
            }
        }
    }
    bad
}

fn docs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let code = |l: &str| !l.is_empty() && !l.starts_with("//");
    let mut starts = vec![false; lines.len()];
    let mut at_start = true;
    for (i, l) in lines.iter().enumerate().filter(|(_, l)| code(l)) {
        starts[i] = at_start && !l.starts_with('}') && !l.starts_with("using ");
        at_start = l.ends_with(';') || l.ends_with('{');
    }
    let mut bad = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if starts[i] && !i.checked_sub(1).is_some_and(|p| lines[p].starts_with("///")) {
            bad.push(format!("line {}: {l:?} has no doc comment directly above it", i + 1));
        }
        let block_end = l.starts_with("///") && !lines.get(i + 1).is_some_and(|n| n.starts_with("///"));
        if block_end && !starts.get(i + 1).copied().unwrap_or(false) {
            bad.push(format!("line {}: a doc comment not directly on a declaration or member", i + 1));
        }
    }
    bad
}

fn static_pies(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let blocks = lower.split("\n\n");
    blocks
        .filter(|b| {
            b.contains("static pie") && ["refus", "reject", "cannot", "not supported"].iter().any(|w| b.contains(w))
        })
        .map(|b| format!("claims static PIEs are refused: {:?}", b.trim()))
        .collect()
}

#[test]
fn the_library_follows_every_rule() {
    let text = read(FIDL);
    let bad: Vec<String> =
        RULES.iter().flat_map(|(name, rule)| rule(&text).into_iter().map(move |v| format!("{name}: {v}"))).collect();
    assert!(bad.is_empty(), "{FIDL} breaks the FIDL rules:\n{}", bad.join("\n"));
}

#[test]
fn the_launch_handle_budget_leaves_room_for_the_launchers_handles() {
    let fidl = Fidl::parse(&read(FIDL));
    assert_eq!(fidl.const_u64("LAUNCH_HANDLE_BUDGET"), Some(CALLER_HANDLE_BUDGET as u64));
    assert_eq!(CALLER_HANDLE_BUDGET + LAUNCHER_HANDLES.len(), MAX_MSG_HANDLES);
}

/// A library that follows every rule; the test below breaks one at a time.
const GOOD: &str = "// Copyright 2026 The Fuchsia Authors. All rights reserved.
// Use of this source code is governed by a BSD-style license that can be
// found in the LICENSE file.

/// A library.
@available(added=HEAD)
library fuchsia.example;

using zx;

/// Most things.
const MAX_THINGS uint32 = 8;

/// A kind.
type Kind = flexible enum : uint32 {
    /// One.
    ONE = 1;
};

/// A thing.
type Thing = resource table {
    /// Its VMO.
    1: vmo zx.Handle:<VMO, zx.RIGHTS_BASIC | zx.Rights.READ>;
    /// Its process's koid.
    2: process_koid uint64;
};

/// Things.
type Things = resource table {
    /// Several.
    1: things vector<Thing>:MAX_THINGS;
};

/// A protocol.
@discoverable
open protocol Example {
    /// Takes things.
    flexible Take(Things) -> (Thing) error Kind;
};
";

#[test]
fn each_rule_fails_on_a_library_that_breaks_it() {
    for (name, rule) in RULES {
        assert!(rule(GOOD).is_empty(), "{name} refuses the good library: {:?}", rule(GOOD));
    }
    let broken = [
        ("platform copyright header", GOOD.replace("The Fuchsia Authors", "The zygote Authors")),
        ("versioned library", GOOD.replace("@available(added=HEAD)\n", "")),
        ("open protocols", GOOD.replace("open protocol", "closed protocol")),
        ("flexible methods", GOOD.replace("flexible Take", "strict Take")),
        ("flexible enums, unions and bits", GOOD.replace("flexible enum", "strict enum")),
        ("tables, not structs", GOOD.replace("type Things = resource table", "type Things = resource struct")),
        ("tables, not structs", GOOD.replace("Take(Things)", "Take(resource struct { t Thing; })")),
        ("rights on every handle", GOOD.replace("zx.Handle:<VMO, zx.RIGHTS_BASIC | zx.Rights.READ>", "zx.Handle:VMO")),
        ("rights on every handle", GOOD.replace("zx.Handle:<VMO, zx.RIGHTS_BASIC | zx.Rights.READ>", "zx.Handle")),
        ("handle budget per message", GOOD.replace("MAX_THINGS uint32 = 8", "MAX_THINGS uint32 = 65")),
        ("handle budget per message", GOOD.replace("vector<Thing>:MAX_THINGS", "vector<Thing>")),
        ("handle budget per message", GOOD.replace("vector<Thing>:MAX_THINGS", "vector<Thing>:MAX")),
        ("bounded strings and vectors", GOOD.replace("vector<Thing>:MAX_THINGS", "vector<Thing>:MAX")),
        (
            "bounded strings and vectors",
            GOOD.replace("/// Its process's koid.", "/// A label.\n    3: label string;\n    /// Its process's koid."),
        ),
        ("koids are uint64", GOOD.replace("process_koid uint64", "process_koid int32")),
        ("koids are uint64", GOOD.replace("process_koid uint64", "pid uint64")),
        ("doc comments on declarations", GOOD.replace("    /// Its VMO.\n", "")),
        ("doc comments on declarations", GOOD.replace("/// Things.\n", "/// Things.\n\n")),
        ("no claim that static PIEs are refused", GOOD.replace("/// A kind.", "/// A kind (static PIEs are refused).")),
    ];
    for (name, text) in &broken {
        assert_ne!(text, GOOD, "the mutation for {name} changed nothing");
        let (_, rule) = RULES.iter().find(|(n, _)| n == name).expect("a rule");
        assert!(!rule(text).is_empty(), "rule {name:?} accepts a library that breaks it:\n{text}");
    }
}
