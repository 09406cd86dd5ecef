//! zygote's Zircon backend: images as sealed VMOs, processes started by
//! mapping them (the file's VMO, the sealed VMO read-only, a
//! `SNAPSHOT_AT_LEAST_ON_WRITE` child per process, fresh VMOs for bss) into
//! a fresh process's VMAR, and memory accounting from the kernel's maps.
//!
//! What is pure is compiled and tested on every host: the processargs
//! encoder ([`processargs`]) and the memory accounting ([`account`]); images
//! loaded as they are, interpreters included, and their keys are the service
//! layer's ([`interp`], `zygote_fuchsia::interp`). The mapping
//! policy itself is `zygote_core::vmar`. Everything that makes system calls
//! is `cfg(target_os = "fuchsia")`: the thin wrappers in [`zx`] (named and
//! shaped like the in-tree `zx` crate, the only `unsafe` code), the
//! [`Zircon`] kernel and the [`Launcher`] that creates and starts processes,
//! which is the `zygote_fuchsia::service::Backend` the component serves
//! `fuchsia.process.Launcher` with.

#![deny(unsafe_code)]

pub mod account;
pub mod processargs;

/// Images loaded as they are (interpreters, plain programs) and their keys:
/// kernel-neutral, in the service layer.
pub mod interp {
    pub use zygote_fuchsia::interp::*;
}

#[cfg(target_os = "fuchsia")]
#[allow(unsafe_code)]
pub mod zx;

#[cfg(target_os = "fuchsia")]
mod backend;
#[cfg(target_os = "fuchsia")]
mod kernel;
#[cfg(target_os = "fuchsia")]
pub mod launch;
#[cfg(target_os = "fuchsia")]
mod process;

#[cfg(target_os = "fuchsia")]
pub use backend::{adopt, status};
#[cfg(target_os = "fuchsia")]
pub use kernel::{
    FileVmo, PrepareError, SEALED_RIGHTS, SealedVmo, Zircon, ZirconImage, name_objects, prepare_interp, prepare_static,
};
#[cfg(target_os = "fuchsia")]
pub use launch::{Created, DEFAULT_STACK_SIZE, LaunchError, LaunchOptions, Launcher, StartOptions};
#[cfg(target_os = "fuchsia")]
pub use process::ZirconProcess;

/// The fields of `fuchsia.process.ProcessStartData` (CreateWithoutStarting's
/// reply), in FIDL order: they are those of `launch::Created`, and the glue
/// (crates/fuchsia/glue/backend.rs) copies one into the other field by field.
pub const START_DATA_FIELDS: [&str; 8] =
    ["process", "root_vmar", "thread", "entry", "stack", "bootstrap", "vdso_base", "base"];

#[cfg(test)]
mod tests {
    use super::START_DATA_FIELDS;

    fn read(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The names before `sep` of the lines of the `{ ... }` block after the
    /// last `open`.
    fn block_fields<'a>(text: &'a str, open: &str, sep: char) -> Vec<&'a str> {
        let at = text.rfind(open).unwrap_or_else(|| panic!("no {open}"));
        let body = &text[at + open.len()..];
        let body = body.split("\n}").next().unwrap_or("").split("\n    }").next().unwrap_or("");
        body.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("//") && l.contains(sep))
            .filter_map(|l| l.strip_prefix("pub ").unwrap_or(l).split(sep).next())
            .collect()
    }

    #[test]
    fn created_is_process_start_data() {
        let launch = read("src/launch.rs");
        let created = block_fields(&launch, "pub struct Created {", ':');
        assert_eq!(created, START_DATA_FIELDS, "launch::Created's fields");
        let glue = read("../fuchsia/glue/backend.rs");
        let reply = block_fields(&glue, "fproc::ProcessStartData {", ':');
        assert_eq!(reply, START_DATA_FIELDS, "glue/backend.rs fills every ProcessStartData field");
        for f in START_DATA_FIELDS {
            assert!(glue.contains(&format!("c.{f}")), "glue/backend.rs copies Created::{f}");
        }
    }
}
