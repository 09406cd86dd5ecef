//! zygote's kernel-neutral core: everything between a program file's bytes and
//! a plan a kernel backend maps into a fresh process.
//!
//! - [`elf`]: decoding, validation, the segment model, relocation per machine;
//! - [`image`]: identity and keys, the `Image` model, the relocating preparer;
//! - [`cache`]: LRU of images, bounded by entries and sealed bytes;
//! - [`exec`]: execve's rules (PATH search, `#!` interpreters) over [`exec::ExecFs`];
//! - [`plan`]: what each phase of a launch maps and restores (backends encode it);
//! - [`metrics`]: stats types, accounting arithmetic, latency, OpenMetrics;
//! - [`vmar`]: the region-to-mapping policy of a VMO/VMAR kernel (Zircon);
//! - [`kernel`]: what a kernel backend provides (Linux: `zygote-linux`).
//!
//! No OS crate is a dependency and no code here is `unsafe`; CI checks both
//! and builds this crate for Fuchsia.

#![forbid(unsafe_code)]

pub mod cache;
pub mod elf;
pub mod exec;
pub mod image;
pub mod kernel;
pub mod metrics;
pub mod plan;
/// A kernel made of memory, for unit tests here and, with the `test-kernel`
/// feature, in crates built on the core (`zygote-fuchsia`).
#[cfg(any(test, feature = "test-kernel"))]
pub mod test_kernel;
pub mod vmar;

pub use cache::{CacheConfig, CacheStats};
pub use kernel::{Credentials, ExitStatus, Kernel};
