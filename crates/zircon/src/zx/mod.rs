//! Thin safe wrappers over the Zircon system calls the backend makes, named
//! and shaped like the in-tree `zx` crate (`//sdk/rust/zx`: `Handle`, `Vmo`,
//! `Vmar`, `Process`, `Thread`, `Job`, `Resource`, `Channel`, `Status`,
//! `Rights`, `VmarFlags`, ...), so that moving this backend in-tree is a
//! change of `use` lines. The only `unsafe` code of the crate is here, one
//! block per system call, each with the reason it is sound.

mod foreign;
mod handle;
mod object;
mod task;
mod vm;

pub use foreign::Foreign;
pub use handle::{AsHandleRef, Channel, Handle, HandleBased, Resource, Status, cprng_draw};
pub use object::{Koid, MapsEntry, Rights, VmoInfo, page_size};
pub use task::{Job, JobPolicy, Process, ProcessInfo, Thread};
pub use vm::{Vmar, VmarFlags, Vmo, VmoChildOptions};

/// The raw system-call bindings (declared for `target_os = "fuchsia"`).
pub(crate) use fuchsia_zircon_sys as sys;
