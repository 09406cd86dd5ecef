//! zygote's measurement tools, outside the product: `zygote bench`, `bench-daemon`,
//! `bench-exec`, `experiment` and `stress` (a module directory each; their manual is docs/TOOLS.md),
//! over what they share: `report`, `launch` and `client`.

#![deny(unsafe_code)]

pub mod bench;
pub mod bench_daemon;
pub mod bench_exec;
mod client;
pub mod experiment;
mod launch;
pub mod report;
pub mod stress;
