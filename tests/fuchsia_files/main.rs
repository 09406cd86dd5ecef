//! Keeps the Fuchsia deliverables honest: the rules a Fuchsia reviewer would
//! apply, and their agreement with the Rust code that implements them.
//!
//! - `fidl/fuchsia.process.zygote.fidl` (rules.rs): the platform copyright
//!   header; a versioned library (`@available(added=...)`); `open`
//!   protocols; `flexible` methods, enums, unions and bits; no structs
//!   (tables for types that grow, payloads included); rights on every
//!   handle (`zx.Handle:<TYPE, rights>`); bounded strings and vectors; every
//!   message within the 64-handle budget, and `LAUNCH_HANDLE_BUDGET` leaving
//!   room for the launcher's own bootstrap handles; koids as `uint64`; a doc comment directly on every
//!   declaration and member; no claim that static PIEs are refused. Each
//!   rule is also run against a file that breaks it (so the rule can fail).
//! - the same file against the Rust code (fidl.rs): the `Cache` methods are
//!   the Linux requests less those Fuchsia serves otherwise, the `Error`
//!   members are `ErrorCode::ALL`, the reply tables and constants are those
//!   of crates/fuchsia;
//! - `meta/*.cml` (cml.rs): JSON5; the component may create processes, uses
//!   the VMEX resource, serves and exposes fuchsia.process.Launcher and the
//!   FIDL file's protocol; its config schema is exactly
//!   `zygote_fuchsia::config::FIELDS` (a subset of the Linux fields, same
//!   types), with the bounds `Config::validate` enforces, and the values file
//!   matches it and the Linux defaults; every test manifest runs its Rust
//!   libtest binary under the Rust test runner;
//! - `BUILD.gn` (gn.rs): every file it names exists; each Rust target's
//!   sources are exactly its crate's files; every workspace member is a
//!   target or named Cargo-only; third-party deps are vendored or listed in
//!   docs/FUCHSIA.md; the names agree with the manifests.
//!
//! The parsers are small and only as clever as these files need: comments are
//! stripped first, then the text is split into words, strings and punctuation.

mod cml;
mod fidl;
mod gn;
mod rules;
mod tokens;

use std::fs;
use std::path::Path;

use tokens::*;

const FIDL: &str = "fidl/fuchsia.process.zygote.fidl";
const CML: &str = "meta/zygote.cml";
const CONFIG_VALUES: &str = "meta/zygote_config_values.json5";
const BUILD_GN: &str = "BUILD.gn";
const LINUX_CONFIG_JSON: &str = "config/zygote.json";
const FUCHSIA_DOC: &str = "docs/FUCHSIA.md";
/// The zygote's own protocol in the FIDL library.
const PROTOCOL: &str = "Cache";
/// The platform protocol the component serves for launches.
const LAUNCHER: &str = "fuchsia.process.Launcher";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}
