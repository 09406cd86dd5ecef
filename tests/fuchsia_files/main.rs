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

mod cml;
mod fidl;
mod gn;
mod tokens;

use std::fs;
use std::path::Path;

use tokens::*;

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
