//! zygote: start processes from cached, fully relocated, sealed images.
//!
//! Layers (see docs/ARCHITECTURE.md):
//! - [`elf`]: decoding, validation, the segment model, relocation per machine;
//! - [`image`]: identity and keys, the `Image` model, the relocating preparer;
//! - [`cache`]: LRU of images, bounded by entries and sealed bytes;
//! - [`spawn`]: exec semantics, plans, launching and waiting;
//! - [`metrics`]: shared-page accounting from smaps, spawn latency, OpenMetrics;
//! - [`sys`]: the kernel layer (Linux: memfds, clone+exec of the stub, pidfds).

pub mod bench;
pub mod bench_daemon;
pub mod cache;
pub mod config;
pub mod elf;
pub mod experiment;
pub mod image;
pub mod metrics;
pub mod remote;
pub mod service;
pub mod spawn;
pub mod stress;
pub mod sys;

pub use cache::{CacheConfig, CacheStats};
pub use spawn::{Child, ExitStatus, SpawnError, SpawnError as Error, SpawnRequest, Zygote};
