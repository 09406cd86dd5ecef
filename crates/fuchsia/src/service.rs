//! The service: one [`Images`] cache, a [`Backend`] that creates processes
//! (the Zircon backend on Fuchsia), the counters Inspect publishes, and per
//! `fuchsia.process.Launcher` connection a [`Connection`] holding its
//! [`LaunchState`].
//!
//! A launch looks the executable up in the cache (building its image on a
//! miss) and has the backend map the image into a process in the caller's
//! job. A program with PT_INTERP (every ordinary Fuchsia executable) is the
//! image of its interpreter, which the launch's `PA_LDSVC_LOADER` loader
//! gives (`LoadObject`, as process_builder asks; [`crate::interp`]); another
//! program the relocating preparer refuses is loaded as it is. What is left
//! is a [`Source::Plain`] launch: an executable that is no loadable ELF file
//! or cannot be read, a PT_INTERP program without a loader, a launch with
//! process options (`SetOptions`, e.g. a shared process).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use zygote_core::image::Image;
use zygote_core::kernel::Kernel;

use crate::config::{Config, ConfigError};
use crate::images::{Images, ImagesError, Preparer};
use crate::inspect::{ExponentialHistogram, Node, histogram::LATENCY_US};
use crate::interp::OpenLoader;
use crate::launcher::{HandleEntry, LaunchInfo, LaunchSpec, LaunchState, NameEntry};
use crate::status::Status;

/// What a launch maps: an image, or the executable as it is.
#[derive(Debug)]
pub enum Source<'a, K: Kernel> {
    /// Map this image's plan (its sealed VMOs' copy-on-write children, the
    /// executable's constant segments, bss). An image of kind `Dynamic` is
    /// the program's interpreter: the backend hands it `spec.loader` and
    /// `spec.executable` in a first bootstrap message.
    Image(&'a Arc<Image<K>>),
    /// Load `spec.executable` as process_builder does, for this reason.
    Plain { reason: Cow<'a, str> },
}

/// What the service needs from the kernel backend.
pub trait Backend<K: Kernel>: Send + Sync + 'static {
    /// A handle passed through to the new process (`zx::Handle`).
    type Handle: Send;
    /// The job a launch names (`zx::Job`).
    type Job: Send;
    /// A created, not yet started process (`fuchsia.process.ProcessStartData`).
    type Created: Send;
    /// A started process (`zx::Process`).
    type Process: Send;
    type Error: std::error::Error + Send + Sync + 'static;

    /// A second handle to an executable (the cache keeps its own).
    fn duplicate(&self, file: &K::File) -> std::io::Result<K::File>;
    /// Create the process `spec` describes in `spec.job`, from `source`.
    fn create(&self, source: Source<'_, K>, spec: Spec<K, Self>) -> Result<Self::Created, Self::Error>;
    /// Start a created process (`zx_process_start`).
    fn start(&self, created: Self::Created) -> Result<Self::Process, Self::Error>;
    /// The status the client gets for `e`.
    fn status(&self, e: &Self::Error) -> Status;
}

/// A launch request with the backend's handle types.
pub type Spec<K, B> = LaunchSpec<<K as Kernel>::File, <B as Backend<K>>::Handle, <B as Backend<K>>::Job>;

/// A failed launch: the status the client gets and what is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct LaunchFailure {
    pub status: Status,
    pub message: String,
}

#[derive(Debug)]
struct Counters {
    launched: AtomicU64,
    created: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    plain: AtomicU64,
    connections: AtomicU64,
    open: AtomicU64,
    latency_us: ExponentialHistogram,
}

/// The zygote's Fuchsia service.
pub struct Service<K: Kernel, P, B: Backend<K>> {
    images: Images<K, P>,
    backend: Arc<B>,
    loaders: Option<Box<OpenLoader<K, B::Handle>>>,
    counters: Counters,
}

impl<K: Kernel, P: Preparer<K>, B: Backend<K>> Service<K, P, B> {
    pub fn new(config: &Config, preparer: P, backend: B) -> Result<Self, ConfigError> {
        config.validate()?;
        let backend = Arc::new(backend);
        let dup = backend.clone();
        let images = Images::new(config.cache(), preparer, Box::new(move |f| dup.duplicate(f)));
        let counters = Counters {
            launched: AtomicU64::new(0),
            created: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            plain: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
            latency_us: ExponentialHistogram::new(LATENCY_US),
        };
        Ok(Service { images, backend, loaders: None, counters })
    }

    /// Load the interpreters of PT_INTERP programs through `open`'s
    /// `fuchsia.ldsvc.Loader` clients (without, such a program is launched
    /// plainly).
    pub fn with_loaders(self, open: Box<OpenLoader<K, B::Handle>>) -> Self {
        Service { loaders: Some(open), ..self }
    }

    pub fn images(&self) -> &Images<K, P> {
        &self.images
    }

    /// A new `fuchsia.process.Launcher` connection.
    pub fn connect(&self) -> Connection<'_, K, P, B> {
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        Connection { service: self, state: LaunchState::new() }
    }

    /// Create the process `spec` describes; start it when `start`.
    fn run<T>(
        &self,
        spec: Spec<K, B>,
        then: impl FnOnce(&B, B::Created) -> Result<T, B::Error>,
    ) -> Result<T, LaunchFailure> {
        let began = Instant::now();
        let mut spec = spec;
        let found = self.source(&mut spec)?;
        let source = match &found {
            Ok(img) => Source::Image(img),
            Err(reason) => Source::Plain { reason: reason.as_str().into() },
        };
        if matches!(source, Source::Plain { .. }) {
            self.counters.plain.fetch_add(1, Ordering::Relaxed);
        }
        let fail = |e: B::Error| {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            LaunchFailure { status: self.backend.status(&e), message: e.to_string() }
        };
        let created = self.backend.create(source, spec).map_err(fail)?;
        let done = then(&self.backend, created).map_err(fail)?;
        let us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counters.latency_us.insert(us);
        Ok(done)
    }

    /// The image a launch maps, or why it is launched plainly; a failure
    /// when the loader does not give the interpreter (process_builder fails
    /// then too).
    fn source(&self, spec: &mut Spec<K, B>) -> Result<Result<Arc<Image<K>>, String>, LaunchFailure> {
        if spec.options != 0 {
            return Ok(Err(format!("process options {:#x}", spec.options)));
        }
        let path = Path::new(&spec.name);
        let img = match self.images.image(path, &spec.executable) {
            Ok(img) => img,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let Some(reason) = img.fallback() else { return Ok(Ok(img)) };
        let got = match (&self.loaders, spec.loader.take()) {
            (Some(open), Some(handle)) => {
                let mut loader = open(handle);
                let got = self.images.loaded(path, &spec.executable, Some(&mut *loader));
                spec.loader = loader.into_handle();
                got
            }
            (_, handle) => {
                spec.loader = handle;
                self.images.loaded::<B::Handle>(path, &spec.executable, None)
            }
        };
        match got {
            Ok(img) => match img.fallback() {
                Some(why) => Ok(Err(format!("{reason}; loading it as it is: {why}"))),
                None => Ok(Ok(img)),
            },
            Err(ImagesError::Loader { path, name, status }) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                let message = format!("{}: the interpreter {name:?}: LoadObject answered {status}", path.display());
                Err(LaunchFailure { status, message })
            }
            Err(e) => Ok(Err(format!("{reason}; loading it as it is: {e}"))),
        }
    }

    /// The Inspect tree, but for the lazy per-image node.
    pub fn inspect(&self) -> Node {
        let c = &self.counters;
        let s = self.images.stats();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let cache = Node::new("cache")
            .uint("entries", s.entries)
            .uint("bytes", s.bytes)
            .uint("max_entries", s.max_entries)
            .uint("max_bytes", s.max_bytes)
            .uint("hits", s.hits)
            .uint("misses", s.misses)
            .uint("evictions", s.evictions)
            .uint("builds", s.builds)
            .uint("build_nanos", s.build_nanos)
            .uint("pinned_bytes", s.pinned_bytes);
        let spawns = Node::new("spawns")
            .uint("launched", load(&c.launched))
            .uint("created", load(&c.created))
            .uint("failed", load(&c.failed))
            .uint("refused", load(&c.refused))
            .uint("plain", load(&c.plain))
            .histogram("latency_us", &c.latency_us);
        let launchers = Node::new("launchers").uint("connections", load(&c.connections)).uint("open", load(&c.open));
        Node::new("root").child(cache).child(spawns).child(launchers)
    }

    /// The lazy `images` node: one child per cached image, most recently
    /// used first, computed when Inspect is read.
    pub fn images_node(&self) -> Node {
        let mut node = Node::new(crate::inspect::LAZY_IMAGES);
        for img in self.images.cache().images() {
            let key = img.key().to_string();
            let mut child = Node::new(&key[..16])
                .string("key", key.clone())
                .string("path", img.path().to_string_lossy())
                .uint("sealed_bytes", img.sealed_bytes())
                .uint("regions", img.regions().len() as u64)
                .uint("load_bias", img.load_bias())
                .string("kind", format!("{:?}", img.kind()));
            if let Some(why) = img.fallback() {
                child = child.string("fallback", why);
            }
            node = node.child(child);
        }
        node
    }
}

/// One `fuchsia.process.Launcher` connection: its accumulated state.
pub struct Connection<'a, K: Kernel, P, B: Backend<K>> {
    service: &'a Service<K, P, B>,
    state: LaunchState<B::Handle>,
}

impl<K: Kernel, P: Preparer<K>, B: Backend<K>> Connection<'_, K, P, B> {
    pub fn add_args(&mut self, args: Vec<Vec<u8>>) {
        self.state.add_args(args);
    }
    pub fn add_environs(&mut self, environ: Vec<Vec<u8>>) {
        self.state.add_environs(environ);
    }
    pub fn add_names(&mut self, names: Vec<NameEntry<B::Handle>>) {
        self.state.add_names(names);
    }
    pub fn add_handles(&mut self, handles: Vec<HandleEntry<B::Handle>>) {
        self.state.add_handles(handles);
    }
    pub fn set_options(&mut self, options: u32) {
        self.state.set_options(options);
    }

    /// Launch: create and start; the state is reset.
    pub fn launch(&mut self, info: LaunchInfo<K::File, B::Job>) -> Result<B::Process, LaunchFailure> {
        let spec = self.take(info)?;
        let p = self.service.run(spec, |b, created| b.start(created))?;
        self.service.counters.launched.fetch_add(1, Ordering::Relaxed);
        Ok(p)
    }

    /// CreateWithoutStarting: create only (debuggers start it); reset.
    pub fn create_without_starting(&mut self, info: LaunchInfo<K::File, B::Job>) -> Result<B::Created, LaunchFailure> {
        let spec = self.take(info)?;
        let c = self.service.run(spec, |_, created| Ok(created))?;
        self.service.counters.created.fetch_add(1, Ordering::Relaxed);
        Ok(c)
    }

    /// Launch or CreateWithoutStarting whose `LaunchInfo` the glue could not
    /// turn into the backend's types: refused, and the state is empty again,
    /// as after any launch.
    pub fn discard(&mut self) {
        self.state = LaunchState::new();
        self.service.counters.refused.fetch_add(1, Ordering::Relaxed);
    }

    fn take(&mut self, info: LaunchInfo<K::File, B::Job>) -> Result<Spec<K, B>, LaunchFailure> {
        self.state.take(info).map_err(|e| {
            self.service.counters.refused.fetch_add(1, Ordering::Relaxed);
            LaunchFailure { status: Status::INVALID_ARGS, message: e.to_string() }
        })
    }
}

impl<K: Kernel, P, B: Backend<K>> Drop for Connection<'_, K, P, B> {
    fn drop(&mut self) {
        self.service.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
