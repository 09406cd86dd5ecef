//! The component manifests against the FIDL library, BUILD.gn and the
//! configuration code.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::fidl::{Fidl, discoverable_name};
use super::gn::Gn;
use super::*;

pub(crate) fn cml(rel: &str) -> Value {
    json5::from_str::<Value>(&read(rel)).unwrap_or_else(|e| panic!("{rel}: not JSON5: {e}"))
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        v => v.as_str().into_iter().collect(),
    }
}

/// Protocols of the `key` entries (`use`, `expose`, `capabilities`) matching `filter`.
fn protocols<'a>(m: &'a Value, key: &str, filter: impl Fn(&Value) -> bool) -> BTreeSet<&'a str> {
    m[key].as_array().into_iter().flatten().filter(|e| filter(e)).flat_map(|e| strings(&e["protocol"])).collect()
}

/// A structured-config type as the `FIELDS` lists spell it.
pub(crate) fn config_type(field: &str, spec: &Value) -> String {
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

#[test]
fn cml_serves_the_launcher_and_the_fidl_protocol() {
    let m = cml(CML);
    let program = &m["program"];
    assert_eq!(program["runner"], "elf", "{CML}: program.runner");
    assert_eq!(
        program["job_policy_create_raw_processes"], "true",
        "{CML}: zx_process_create checks the caller's job policy, so the zygote's job must allow raw processes"
    );
    let gn = Gn::parse(&read(BUILD_GN));
    assert_eq!(program["binary"], format!("bin/{}", gn.target("rustc_binary", "bin").string("name")));
    let includes = strings(&m["include"]);
    for shard in ["syslog/client.shard.cml", "inspect/client.shard.cml"] {
        assert!(includes.contains(&shard), "{CML}: needs {shard}");
    }

    let cache = discoverable_name(&Fidl::parse(&read(FIDL)), PROTOCOL);
    let served: BTreeSet<&str> = [LAUNCHER, cache.as_str()].into();
    assert_eq!(protocols(&m, "capabilities", |_| true), served, "{CML}: capabilities");
    assert_eq!(protocols(&m, "expose", |e| e["from"] == "self"), served, "{CML}: exposed from self");

    let used = protocols(&m, "use", |_| true);
    assert!(
        used.contains("fuchsia.kernel.VmexResource"),
        "{CML}: relocated text is mapped executable through zx_vmo_replace_as_executable, which needs the VMEX resource"
    );
    // The job comes with each launch (LaunchInfo.job, the caller's): the
    // zygote must not take a job from the kernel, nor launch into its own.
    let jobs: Vec<&&str> = used.iter().filter(|p| p.contains("Job")).collect();
    assert!(jobs.is_empty(), "{CML}: processes go in the caller's job, not in one from {jobs:?}");
}

/// Linux daemon fields with no meaning on Fuchsia.
const LINUX_ONLY: [&str; 9] = [
    "socket_path",
    "allowed_uids",
    "metrics_port",
    "max_connections",
    "max_connections_per_uid",
    "idle_timeout_ms",
    "frame_timeout_ms",
    "max_buffered_bytes",
    "prestarted_launchers",
];

#[test]
fn cml_config_schema_is_the_fuchsia_config() {
    let m = cml(CML);
    let schema = m["config"].as_object().unwrap_or_else(|| panic!("{CML}: no config block"));
    let keys: BTreeSet<&str> = schema.keys().map(String::as_str).collect();
    let fuchsia: BTreeSet<&str> = zygote_fuchsia::config::FIELDS.iter().map(|(f, _)| *f).collect();
    assert_eq!(keys, fuchsia, "{CML} config keys and zygote_fuchsia::config::FIELDS differ");
    for linux_only in LINUX_ONLY {
        assert!(!keys.contains(linux_only), "{CML}: config.{linux_only} means nothing on Fuchsia");
    }
    for (field, ty) in zygote_fuchsia::config::FIELDS {
        assert_eq!(config_type(field, &schema[field]), ty, "{CML}: type of config.{field}");
        // The same name means the same setting on both platforms.
        let linux = zygote::config::FIELDS.iter().find(|(f, _)| *f == field);
        assert_eq!(linux.map(|(_, t)| *t), Some(ty), "config.{field}: not a Linux field of the same type");
    }
}

fn fuchsia_config(values: &Value) -> zygote_fuchsia::config::Config {
    let u = |k: &str| values[k].as_u64().unwrap_or_else(|| panic!("{CONFIG_VALUES}: {k} is not a uint64"));
    let s = |k: &str| values[k].as_str().unwrap_or_else(|| panic!("{CONFIG_VALUES}: {k} is not a string")).to_string();
    let preload = values["preload"].as_array().unwrap_or_else(|| panic!("{CONFIG_VALUES}: preload"));
    zygote_fuchsia::config::Config {
        cache_max_entries: u("cache_max_entries"),
        cache_max_bytes: u("cache_max_bytes"),
        log_filter: s("log_filter"),
        preload: preload.iter().map(|p| p.as_str().expect("a path").to_string()).collect(),
    }
}

#[test]
fn config_values_match_the_schema_and_the_linux_defaults() {
    let values = cml(CONFIG_VALUES);
    let keys: BTreeSet<&str> = values.as_object().expect("an object").keys().map(String::as_str).collect();
    let schema: BTreeSet<&str> = zygote_fuchsia::config::FIELDS.iter().map(|(f, _)| *f).collect();
    assert_eq!(keys, schema, "{CONFIG_VALUES}: keys");
    fuchsia_config(&values).validate().expect("valid values");
    let linux: Value = serde_json::from_str(&read(LINUX_CONFIG_JSON)).expect("JSON");
    for key in keys {
        assert_eq!(values[key], linux[key], "{CONFIG_VALUES}: {key} differs from the Linux default");
    }
}

/// The CML's bounds against `Config::validate`: past a bound is refused
/// naming the field, and at the bound is accepted (for `log_filter`, whose
/// values are severity names, every name fits).
#[test]
fn cml_config_bounds_are_validate_bounds() {
    let m = cml(CML);
    let base = cml(CONFIG_VALUES);
    let check = |field: &str, v: Value| {
        let mut values = base.clone();
        values[field] = v;
        fuchsia_config(&values).validate().map_err(|e| e.to_string())
    };
    let spec = |path: &[&str]| {
        let mut v = &m["config"];
        for p in path {
            v = &v[*p];
        }
        v.as_u64().unwrap_or_else(|| panic!("{CML}: config.{}", path.join("."))) as usize
    };
    let refused = |field: &str, v: Value| match check(field, v) {
        Ok(()) => panic!("config.{field}: Config::validate accepts more than {CML} allows"),
        Err(e) => assert!(e.contains(field), "config.{field}: the error does not name it: {e}"),
    };

    let log = spec(&["log_filter", "max_size"]);
    let longest = zygote_fuchsia::config::SEVERITIES.iter().map(|s| s.len()).max().unwrap_or(0);
    assert!(longest <= log, "{CML}: log_filter max_size {log} is shorter than a severity name");
    refused("log_filter", json!("e".repeat(log + 1)));

    let count = spec(&["preload", "max_count"]);
    let size = spec(&["preload", "element", "max_size"]);
    assert_eq!(check("preload", json!(vec!["/p"; count])), Ok(()), "{count} preload entries");
    refused("preload", json!(vec!["/p"; count + 1]));
    let path = |n: usize| format!("/{}", "a".repeat(n - 1));
    assert_eq!(check("preload", json!([path(size)])), Ok(()), "a preload path of {size} bytes");
    refused("preload", json!([path(size + 1)]));
}

#[test]
fn test_manifests_run_rust_tests_under_the_rust_runner() {
    let gn = Gn::parse(&read(BUILD_GN));
    let components: Vec<_> = gn.calls.iter().filter(|c| c.func == "fuchsia_unittest_component").collect();
    let mut tested = BTreeSet::new();
    for c in &components {
        let manifest = c.body.string("manifest");
        let m = cml(manifest);
        let includes = strings(&m["include"]);
        assert!(
            includes.contains(&"//src/sys/test_runners/rust/default.shard.cml"),
            "{manifest}: a Rust libtest binary runs under the Rust test runner shard"
        );
        assert!(!includes.iter().any(|i| i.contains("test_runners/elf")), "{manifest}: not the ELF test runner");
        let [dep] = c.body.strings("deps") else { panic!("{BUILD_GN}: {:?} needs one test dep", c.args) };
        let lib = dep.strip_prefix(':').and_then(|d| d.strip_suffix("_test")).expect("a :<lib>_test dep");
        let name = gn.target("rustc_library", lib).string("name");
        assert_eq!(m["program"]["binary"], format!("bin/{name}_lib_test"), "{manifest}: program.binary");
        tested.insert(lib.to_string());
    }
    for c in gn.calls.iter().filter(|c| c.func == "rustc_library" && c.body.word("with_unit_tests") == Some("true")) {
        let lib = &c.args[0];
        assert!(tested.contains(lib), "{BUILD_GN}: {lib}'s unit tests are in no fuchsia_unittest_component");
    }
}
