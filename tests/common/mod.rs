//! Shared helpers for the zygote integration tests, one module per topic.
//!
//! Every test binary includes this module with `mod common;` and uses a
//! subset of it through `use common::*;`, hence the `dead_code` allowance.
#![allow(dead_code)]

mod build;
mod caller;
mod caps;
mod daemon;
mod dynamic;
mod elf;
mod fds;
mod library;
mod lines;
mod process;
mod procfs;
mod raw;
mod remote;
mod smaps;

// A test binary that uses nothing of a topic would warn about its re-export.
#[allow(unused_imports)]
pub use {
    build::*, caller::*, caps::*, daemon::*, dynamic::*, elf::*, fds::*, library::*, lines::*, process::*, procfs::*,
    raw::*, remote::*, smaps::*,
};
