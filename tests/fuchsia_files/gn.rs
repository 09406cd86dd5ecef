//! BUILD.gn against the crates: existing files, every crate file named once.

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
