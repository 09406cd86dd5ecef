//! zygote's Fuchsia service layer, kernel-neutral so that it builds and is
//! unit-tested on Linux over core's in-memory kernel.
//!
//! The component serves two protocols (docs/FUCHSIA.md):
//! - `fuchsia.process.Launcher`, the platform's own, so that `fdio_spawn` and
//!   runners can be routed to the zygote unchanged: [`launcher`] is its
//!   feed-forward state (AddArgs, AddEnvirons, AddNames, AddHandles,
//!   SetOptions, then Launch or CreateWithoutStarting) with the limits of a
//!   processargs bootstrap message, and [`service`] runs a launch through the
//!   image cache and a [`service::Backend`] (the Zircon backend);
//! - `fuchsia.process.zygote.Cache` (fidl/fuchsia.process.zygote.fidl):
//!   Preload and Evict over core's cache, in [`images`] and [`protocol`].
//!
//! Statistics are published through Inspect: [`inspect`] builds the tree as
//! plain data that the glue (glue/inspect.rs) copies into `fuchsia_inspect`.
//! The glue files hold only what needs the in-tree crates (FIDL bindings,
//! fuchsia-async, fuchsia-component, fuchsia-inspect).

#![forbid(unsafe_code)]

pub mod config;
pub mod images;
pub mod inspect;
pub mod interp;
pub mod launcher;
pub mod processargs;
pub mod protocol;
pub mod service;
pub mod status;

pub use status::Status;
