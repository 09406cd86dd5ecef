//! BUILD.gn against the crates: existing files, every crate file named,
//! every workspace member accounted for, third-party deps vendored or listed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, PathBuf};

use super::fidl::Fidl;
use super::*;

#[derive(Debug)]
pub(crate) enum GnValue {
    Strings(Vec<String>),
    Word(String),
}

#[derive(Debug, Default)]
pub(crate) struct GnScope {
    pub(crate) assigns: BTreeMap<String, GnValue>,
}

#[derive(Debug)]
pub(crate) struct GnCall {
    pub(crate) func: String,
    pub(crate) args: Vec<String>,
    pub(crate) body: GnScope,
}

pub(crate) struct Gn {
    pub(crate) toks: Vec<Tok>,
    pub(crate) top: GnScope,
    pub(crate) calls: Vec<GnCall>,
}

impl GnScope {
    pub(crate) fn strings(&self, key: &str) -> &[String] {
        match self.assigns.get(key) {
            Some(GnValue::Strings(v)) => v,
            _ => &[],
        }
    }

    pub(crate) fn string(&self, key: &str) -> &str {
        match self.strings(key) {
            [s] => s,
            other => panic!("{BUILD_GN}: `{key}` should be one string, is {other:?}"),
        }
    }

    pub(crate) fn word(&self, key: &str) -> Option<&str> {
        match self.assigns.get(key) {
            Some(GnValue::Word(w)) => Some(w),
            _ => None,
        }
    }
}

/// Assignments (`x = ...`, `x += ...`) and calls (`f(args) { body }`) of one scope.
pub(crate) fn gn_scope(toks: &[Tok], calls: &mut Vec<GnCall>) -> GnScope {
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
    pub(crate) fn parse(text: &str) -> Self {
        let toks = tokenize(&strip_comments(text, "#"));
        let mut calls = Vec::new();
        let top = gn_scope(&toks, &mut calls);
        Gn { toks, top, calls }
    }

    pub(crate) fn target(&self, func: &str, name: &str) -> &GnScope {
        let found: Vec<&GnCall> =
            self.calls.iter().filter(|c| c.func == func && c.args.first().map(String::as_str) == Some(name)).collect();
        assert_eq!(found.len(), 1, "{BUILD_GN}: expected one {func}(\"{name}\")");
        &found[0].body
    }

    /// A target's `sources`: a list, or a top-level list variable.
    pub(crate) fn sources(&self, target: &GnScope) -> Vec<String> {
        match target.assigns.get("sources") {
            Some(GnValue::Word(var)) => self.top.strings(var).to_vec(),
            _ => target.strings("sources").to_vec(),
        }
    }

    /// Every string literal naming a file of ours (not a label, not an SDK path).
    pub(crate) fn file_strings(&self) -> BTreeSet<String> {
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
pub(crate) fn normalize(dir: &Path, rel: &str) -> String {
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
pub(crate) fn crate_files(root_file: &str) -> BTreeSet<String> {
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

pub(crate) fn package_crate_name(cargo_toml: &str) -> String {
    let text = read(cargo_toml);
    let package = text.split("[package]").nth(1).unwrap_or_else(|| panic!("{cargo_toml}: no [package]"));
    let line = package
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("name") && l[4..].trim_start().starts_with('='))
        .unwrap_or_else(|| panic!("{cargo_toml}: no package name"));
    line.split('"').nth(1).expect("quoted package name").replace('-', "_")
}

/// Third-party crates the pinned tree's //third_party/rust_crates vendors
/// (artem/fuchsia-mirror third_party/rust_crates/Cargo.toml @041dfffa, and
/// misttech/fuchsia @00f88364) that the Fuchsia targets use.
const VENDORED: [&str; 8] = ["anyhow", "futures", "log", "lru-cache", "serde", "serde_json", "thiserror", "tracing"];
/// Crates no Fuchsia target may use: the Linux backend's and the daemon's.
const LINUX_ONLY_CRATES: [&str; 6] = ["libc", "rustix", "tokio", "tracing-subscriber", "nix", "plotters"];

/// The Rust targets and their crates: (kind, target, crate root, package manifest).
fn rust_targets() -> Vec<(&'static str, &'static str, &'static str, Option<&'static str>)> {
    let mut t = vec![
        ("rustc_library", "plan", "crates/plan/src/lib.rs", Some("crates/plan/Cargo.toml")),
        ("rustc_library", "core", "crates/core/src/lib.rs", Some("crates/core/Cargo.toml")),
        ("rustc_library", "fuchsia", "crates/fuchsia/src/lib.rs", Some("crates/fuchsia/Cargo.toml")),
        ("rustc_binary", "bin", "crates/fuchsia/glue/main.rs", None),
    ];
    if zircon_landed() {
        t.push(("rustc_library", "zircon", "crates/zircon/src/lib.rs", Some("crates/zircon/Cargo.toml")));
    }
    t
}

/// The Zircon backend is written in parallel: until its crate exists,
/// BUILD.gn holds a placeholder source list for it.
fn zircon_landed() -> bool {
    root().join("crates/zircon/Cargo.toml").is_file()
}

#[test]
fn build_gn_names_only_existing_files() {
    let gn = Gn::parse(&read(BUILD_GN));
    let placeholder = ["crates/zircon/src/lib.rs".to_string()];
    let zircon = gn.top.strings("zircon_sources");
    if !zircon_landed() {
        assert_eq!(zircon, placeholder, "{BUILD_GN}: zircon_sources is the placeholder until crates/zircon lands");
    }
    let files = gn.file_strings();
    for f in [FIDL, CML, CONFIG_VALUES, "crates/fuchsia/glue/main.rs"] {
        assert!(files.contains(f), "{BUILD_GN} should name {f}");
    }
    let missing: Vec<&String> =
        files.iter().filter(|f| !root().join(f).is_file() && (zircon_landed() || !placeholder.contains(f))).collect();
    assert!(missing.is_empty(), "{BUILD_GN} names files that do not exist: {missing:?}");

    let fidl = Fidl::parse(&read(FIDL));
    let library = fidl.library().0;
    assert_eq!(gn.target("fidl", &library).strings("sources"), [FIDL], "{BUILD_GN}: fidl(\"{library}\") sources");
    assert_eq!(gn.target("fuchsia_component_manifest", "manifest").string("manifest"), CML);
    let values = gn.target("fuchsia_structured_config_values", "zygote_config_values");
    assert_eq!(values.string("values_source"), CONFIG_VALUES);
}

#[test]
fn build_gn_rust_sources_are_the_crates() {
    let gn = Gn::parse(&read(BUILD_GN));
    for (func, name, root_file, manifest) in rust_targets() {
        let t = gn.target(func, name);
        if let Some(manifest) = manifest {
            assert_eq!(t.string("name"), package_crate_name(manifest), "{BUILD_GN}: {func}(\"{name}\") name");
        }
        assert_eq!(t.string("edition"), "2024", "{BUILD_GN}: {func}(\"{name}\") edition");
        assert_eq!(t.string("source_root"), root_file, "{BUILD_GN}: {func}(\"{name}\") source_root");
        let sources: BTreeSet<String> = gn.sources(t).into_iter().collect();
        let files = crate_files(root_file);
        let foreign: Vec<&String> = sources.difference(&files).collect();
        assert!(foreign.is_empty(), "{BUILD_GN}: {func}(\"{name}\") lists files not in its crate: {foreign:?}");
        let unlisted: Vec<&String> = files.difference(&sources).collect();
        assert!(
            unlisted.is_empty(),
            "{BUILD_GN}: files of {root_file}'s crate not in {func}(\"{name}\"): {unlisted:?}"
        );

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
                let included = normalize(Path::new(file).parent().unwrap_or(Path::new("")), arg);
                assert!(inputs.contains(included.as_str()), "{BUILD_GN}: {file} includes {included}; add it to inputs");
            }
        }
    }
    // No glue file outside the binary: each is named, and reached from main.rs.
    let bin: BTreeSet<String> = gn.sources(gn.target("rustc_binary", "bin")).into_iter().collect();
    for entry in std::fs::read_dir(root().join("crates/fuchsia/glue")).expect("crates/fuchsia/glue") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        let file = format!("crates/fuchsia/glue/{name}");
        assert!(bin.contains(&file), "{BUILD_GN}: {file} is not in rustc_binary(\"bin\")");
    }
}

/// `members = [...]` of the workspace.
fn workspace_members() -> Vec<String> {
    let text = read("Cargo.toml");
    let line = text.lines().find(|l| l.trim_start().starts_with("members")).expect("workspace members");
    line.split('"').skip(1).step_by(2).map(str::to_string).collect()
}

#[test]
fn build_gn_accounts_for_every_workspace_member() {
    let gn = Gn::parse(&read(BUILD_GN));
    let cargo_only: BTreeSet<&str> = gn.top.strings("cargo_only_crates").iter().map(String::as_str).collect();
    let targets: Vec<String> = rust_targets().iter().filter_map(|t| t.3).map(str::to_string).collect();
    for member in workspace_members() {
        let manifest = if member == "." { "Cargo.toml".to_string() } else { format!("{member}/Cargo.toml") };
        let built = targets.contains(&manifest);
        assert!(
            built != cargo_only.contains(manifest.as_str()),
            "{BUILD_GN}: workspace member {member} must be a Fuchsia target or in cargo_only_crates, not both or neither"
        );
    }
    for m in &cargo_only {
        assert!(root().join(m).is_file(), "{BUILD_GN}: cargo_only_crates names {m}, which does not exist");
    }
}

/// Crates docs/FUCHSIA.md says must be vendored: rows "| `name` | ..." of
/// its "Third-party crates" section.
fn vendoring_list() -> BTreeSet<String> {
    let doc = read(FUCHSIA_DOC);
    let section = doc.split("\n## Third-party crates").nth(1).unwrap_or_else(|| panic!("{FUCHSIA_DOC}: no section"));
    let section = section.split("\n## ").next().unwrap_or("");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

/// Normal dependencies of a Cargo manifest.
fn cargo_deps(manifest: &str) -> BTreeSet<String> {
    let text = read(manifest);
    let deps = text.split("\n[dependencies]").nth(1).unwrap_or("");
    let deps = deps.split("\n[").next().unwrap_or("");
    deps.lines()
        .filter_map(|l| l.split(['=', '.']).next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn build_gn_third_party_deps_are_vendored_or_listed() {
    let gn = Gn::parse(&read(BUILD_GN));
    let third_party: BTreeSet<String> = gn
        .calls
        .iter()
        .flat_map(|c| c.body.strings("deps").iter().chain(c.body.strings("test_deps")))
        .filter_map(|d| d.strip_prefix("//third_party/rust_crates:"))
        .map(str::to_string)
        .collect();
    for linux in LINUX_ONLY_CRATES {
        assert!(!third_party.contains(linux), "{BUILD_GN}: {linux} is a Linux-only crate");
    }
    let unvendored: BTreeSet<String> =
        third_party.iter().filter(|d| !VENDORED.contains(&d.as_str())).cloned().collect();
    assert_eq!(
        unvendored,
        vendoring_list(),
        "{BUILD_GN}: the deps the tree does not vendor must be exactly {FUCHSIA_DOC}'s vendoring list"
    );

    // Each library's GN deps are its Cargo dependencies.
    let workspace = [("zygote-plan", ":plan"), ("zygote-core", ":core")];
    for (func, name, _, manifest) in rust_targets() {
        let Some(manifest) = manifest.filter(|_| func == "rustc_library" && name != "zircon") else { continue };
        let expected: BTreeSet<String> = cargo_deps(manifest)
            .into_iter()
            .map(|d| match workspace.iter().find(|(w, _)| *w == d) {
                Some((_, label)) => label.to_string(),
                None => format!("//third_party/rust_crates:{d}"),
            })
            .collect();
        let deps: BTreeSet<String> = gn.target(func, name).strings("deps").iter().cloned().collect();
        assert_eq!(deps, expected, "{BUILD_GN}: {func}(\"{name}\") deps and {manifest}'s [dependencies]");
    }
}
