//! zygote's Zircon backend: images as sealed VMOs, processes started by
//! mapping them (the file's VMO, the sealed VMO read-only, a
//! `SNAPSHOT_AT_LEAST_ON_WRITE` child per process, fresh VMOs for bss) into
//! a fresh process's VMAR, and memory accounting from the kernel's maps.
//!
//! What is pure is compiled and tested on every host: the processargs
//! encoder ([`processargs`]), the memory accounting ([`account`]) and the key
//! of an image started through an interpreter ([`interp`]). The mapping
//! policy itself is `zygote_core::vmar`. Everything that makes system calls
//! is `cfg(target_os = "fuchsia")`: the thin wrappers in [`zx`] (named and
//! shaped like the in-tree `zx` crate, the only `unsafe` code), the
//! [`Zircon`] kernel and the [`Launcher`] that starts processes.

#![deny(unsafe_code)]

pub mod account;
pub mod interp;
pub mod processargs;

#[cfg(target_os = "fuchsia")]
#[allow(unsafe_code)]
pub mod zx;

#[cfg(target_os = "fuchsia")]
mod kernel;
#[cfg(target_os = "fuchsia")]
mod launch;
#[cfg(target_os = "fuchsia")]
mod process;

#[cfg(target_os = "fuchsia")]
pub use kernel::{
    FileVmo, PrepareError, SEALED_RIGHTS, SealedVmo, Zircon, ZirconImage, name_objects, prepare_interp, prepare_static,
};
#[cfg(target_os = "fuchsia")]
pub use launch::{DEFAULT_STACK_SIZE, LaunchError, LaunchOptions, Launcher};
#[cfg(target_os = "fuchsia")]
pub use process::ZirconProcess;
