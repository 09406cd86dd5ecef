//! `fuchsia.process.Launcher`'s state: what AddArgs, AddEnvirons, AddNames,
//! AddHandles and SetOptions accumulate until Launch or CreateWithoutStarting
//! takes it, after which the state is empty again (as in the platform's
//! launcher, whatever the outcome).
//!
//! The one-way Add methods have no reply, so a violated limit is remembered
//! and reported by the next Launch (`ZX_ERR_INVALID_ARGS`, as process_builder
//! reports a message that cannot be built). What is checked: no NUL inside a
//! string (they become C strings), absolute namespace paths, no handle types
//! the launcher adds itself, at most [`CALLER_HANDLE_BUDGET`] handles, and a
//! bootstrap message within [`MAX_MSG_BYTES`]. Once a limit is crossed the
//! state stops growing (further handles are dropped, i.e. closed), so a
//! client cannot make the zygote hold unbounded memory between launches.
//!
//! Generic over the handle types (`H` for handles and directories, `F` for
//! the executable, `J` for the job): on Fuchsia they are `zx` types; the tests
//! use plain values.

use crate::processargs::{
    CALLER_HANDLE_BUDGET, MAX_MSG_BYTES, PA_LDSVC_LOADER, PA_VMO_VDSO, message_bytes, pa_arg, pa_type, reserved,
};

/// Longest process name, `zx.MAX_NAME_LEN` less the NUL.
pub const MAX_NAME_BYTES: usize = 31;
/// Longest namespace path (`fuchsia.io.MAX_PATH_LENGTH`).
pub const MAX_PATH_BYTES: usize = 4095;

/// A namespace entry (`fuchsia.process.NameInfo`).
#[derive(Debug)]
pub struct NameEntry<H> {
    pub path: Vec<u8>,
    pub directory: H,
}

/// A startup handle (`fuchsia.process.HandleInfo`): the handle and its
/// processargs id, `PA_HND(type, arg)`.
#[derive(Debug)]
pub struct HandleEntry<H> {
    pub handle: H,
    pub id: u32,
}

/// `fuchsia.process.LaunchInfo`.
#[derive(Debug)]
pub struct LaunchInfo<F, J> {
    pub executable: F,
    pub job: J,
    pub name: String,
}

/// Why a launch's request is refused before anything is created.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("{what} {index} contains a NUL byte")]
    Nul { what: &'static str, index: usize },
    #[error("namespace path {path:?} is not absolute")]
    RelativePath { path: String },
    #[error("namespace path of {len} bytes is longer than {MAX_PATH_BYTES}")]
    LongPath { len: usize },
    #[error("process name {name:?} is longer than {MAX_NAME_BYTES} bytes or contains a NUL")]
    BadName { name: String },
    #[error("handle {index} has type {kind:#04x}, which the launcher adds itself")]
    ReservedHandle { index: usize, kind: u8 },
    #[error("{count} handles (AddHandles and AddNames) exceed the {CALLER_HANDLE_BUDGET} a bootstrap message leaves")]
    TooManyHandles { count: usize },
    #[error("the bootstrap message would be {bytes} bytes, more than {MAX_MSG_BYTES}")]
    TooLarge { bytes: usize },
}

/// What one launch asks for, checked: the state taken by Launch or
/// CreateWithoutStarting together with its `LaunchInfo`.
#[derive(Debug)]
pub struct LaunchSpec<F, H, J> {
    pub executable: F,
    pub job: J,
    pub name: String,
    pub args: Vec<Vec<u8>>,
    pub environ: Vec<Vec<u8>>,
    pub names: Vec<NameEntry<H>>,
    /// Handles for the bootstrap message, in the order they were added.
    pub handles: Vec<HandleEntry<H>>,
    /// A `PA_LDSVC_LOADER` handle: used to load a PT_INTERP program's
    /// interpreter, as process_builder does, not passed on as such.
    pub loader: Option<H>,
    /// A `PA_VMO_VDSO` handle with argument 0: the vDSO to map instead of
    /// the system's.
    pub vdso: Option<H>,
    /// `zx_process_create` options from SetOptions.
    pub options: u32,
}

impl<F, H, J> LaunchSpec<F, H, J> {
    /// Handles the bootstrap message carries for the caller.
    pub fn caller_handles(&self) -> usize {
        self.handles.len() + self.names.len()
    }
}

/// The accumulated state of one `fuchsia.process.Launcher` connection.
#[derive(Debug)]
pub struct LaunchState<H> {
    args: Vec<Vec<u8>>,
    environ: Vec<Vec<u8>>,
    names: Vec<NameEntry<H>>,
    handles: Vec<HandleEntry<H>>,
    loader: Option<H>,
    vdso: Option<H>,
    options: u32,
    /// The first limit crossed since the last launch.
    refused: Option<LaunchError>,
}

impl<H> Default for LaunchState<H> {
    fn default() -> Self {
        LaunchState {
            args: Vec::new(),
            environ: Vec::new(),
            names: Vec::new(),
            handles: Vec::new(),
            loader: None,
            vdso: None,
            options: 0,
            refused: None,
        }
    }
}

impl<H> LaunchState<H> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Is anything accumulated (a launch pending)?
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
            && self.environ.is_empty()
            && self.names.is_empty()
            && self.handles.is_empty()
            && self.loader.is_none()
            && self.vdso.is_none()
            && self.options == 0
            && self.refused.is_none()
    }

    /// AddArgs: appends.
    pub fn add_args(&mut self, args: Vec<Vec<u8>>) {
        self.add_strings(args, "argument", |s| &mut s.args);
    }

    /// AddEnvirons: appends.
    pub fn add_environs(&mut self, environ: Vec<Vec<u8>>) {
        self.add_strings(environ, "environment entry", |s| &mut s.environ);
    }

    /// AddNames: appends (each is a `PA_NS_DIR` handle and a path).
    pub fn add_names(&mut self, names: Vec<NameEntry<H>>) {
        for n in names {
            let path = String::from_utf8_lossy(&n.path);
            let bad = if !n.path.starts_with(b"/") {
                Some(LaunchError::RelativePath { path: path.into_owned() })
            } else if n.path.len() > MAX_PATH_BYTES {
                Some(LaunchError::LongPath { len: n.path.len() })
            } else if n.path.contains(&0) {
                Some(LaunchError::Nul { what: "namespace path", index: self.names.len() })
            } else {
                None
            };
            if let Some(e) = bad {
                self.refuse(e);
            }
            if self.refused.is_some() {
                continue; // dropped: the launch will fail
            }
            self.names.push(n);
            self.check_size();
        }
    }

    /// AddHandles: appends. A loader (`PA_LDSVC_LOADER`) and a vDSO with
    /// argument 0 (`PA_VMO_VDSO`) are kept aside; a later one replaces an
    /// earlier one.
    pub fn add_handles(&mut self, handles: Vec<HandleEntry<H>>) {
        for h in handles {
            let kind = pa_type(h.id);
            if reserved(kind) {
                let index = self.handles.len();
                self.refuse(LaunchError::ReservedHandle { index, kind });
            }
            if self.refused.is_some() {
                continue;
            }
            match kind {
                PA_LDSVC_LOADER => self.loader = Some(h.handle),
                PA_VMO_VDSO if pa_arg(h.id) == 0 => self.vdso = Some(h.handle),
                _ => {
                    self.handles.push(h);
                    self.check_size();
                }
            }
        }
    }

    /// SetOptions: replaces. `zx_process_create` checks them at launch.
    pub fn set_options(&mut self, options: u32) {
        self.options = options;
    }

    /// Launch or CreateWithoutStarting: the checked request, and the state
    /// is empty again whatever the outcome.
    pub fn take<F, J>(&mut self, info: LaunchInfo<F, J>) -> Result<LaunchSpec<F, H, J>, LaunchError> {
        let state = std::mem::take(self);
        if let Some(e) = state.refused {
            return Err(e);
        }
        if info.name.len() > MAX_NAME_BYTES || info.name.contains('\0') {
            return Err(LaunchError::BadName { name: info.name });
        }
        Ok(LaunchSpec {
            executable: info.executable,
            job: info.job,
            name: info.name,
            args: state.args,
            environ: state.environ,
            names: state.names,
            handles: state.handles,
            loader: state.loader,
            vdso: state.vdso,
            options: state.options,
        })
    }

    fn add_strings(&mut self, strings: Vec<Vec<u8>>, what: &'static str, list: fn(&mut Self) -> &mut Vec<Vec<u8>>) {
        for s in strings {
            if s.contains(&0) {
                let index = list(self).len();
                self.refuse(LaunchError::Nul { what, index });
            }
            if self.refused.is_some() {
                return;
            }
            list(self).push(s);
            self.check_size();
        }
    }

    fn refuse(&mut self, e: LaunchError) {
        self.refused.get_or_insert(e);
    }

    /// Refuse once the bootstrap message would not fit.
    fn check_size(&mut self) {
        let count = self.handles.len() + self.names.len();
        if count > CALLER_HANDLE_BUDGET {
            return self.refuse(LaunchError::TooManyHandles { count });
        }
        let launcher = crate::processargs::LAUNCHER_HANDLES.len();
        let strings = self.args.iter().chain(&self.environ).chain(self.names.iter().map(|n| &n.path));
        let bytes = message_bytes(count + launcher, strings.map(Vec::as_slice));
        if bytes > MAX_MSG_BYTES {
            self.refuse(LaunchError::TooLarge { bytes });
        }
    }
}

#[cfg(test)]
mod tests;
