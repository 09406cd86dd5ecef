//! The component manifests against the configuration and the FIDL protocol.

use serde_json::{Value, json};
use zygote::config::{Config, FIELDS};

use std::collections::BTreeSet;

use super::fidl::{Fidl, discoverable_name};
use super::gn::Gn;
use super::*;

pub(crate) fn cml(rel: &str) -> Value {
    json5::from_str::<Value>(&read(rel)).unwrap_or_else(|e| panic!("{rel}: not JSON5: {e}"))
}

/// A structured-config type as `zygote::config::FIELDS` spells it.
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

pub(crate) fn exposes(manifest: &Value, protocol: &str) -> bool {
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
pub(crate) fn config_bound_disagreements() -> (Vec<String>, Vec<String>) {
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
