//! The kernel layer. Everything kernel-specific lives below here; the rest of
//! the crate (ELF, relocation, images, cache, plans) is shared.
//!
//! A Zircon layer (`zircon/`) would provide the same names: `SealedObject`
//! (a VMO whose handles lack WRITE), `Stub`-less process creation, `random_u64`.

pub mod linux;

pub use linux::{SealedObject, random_u64};
