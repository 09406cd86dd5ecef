//! zygote's measurement tools, outside the product: `zygote bench`,
//! `bench-daemon`, `experiment` and `stress`, plus the baselines they compare
//! against (`zygote_linux::baseline`: posix_spawn, fork+exec, vfork+exec).

#![deny(unsafe_code)]

pub mod bench;
pub mod bench_daemon;
pub mod experiment;
pub mod stress;
