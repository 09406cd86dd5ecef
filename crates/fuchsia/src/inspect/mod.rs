//! The Inspect tree as plain data. The service fills [`Node`]s; glue/inspect.rs
//! copies them into `fuchsia_inspect` (one function, recursive), and registers
//! [`LAZY_IMAGES`] as a lazy child whose node the service computes when
//! Inspect is read. So what the tree says, and its names, are tested here.
//!
//! ```text
//! root
//!  ├─ cache      entries, bytes, max_entries, max_bytes, hits, misses,
//!  │             evictions, builds, build_nanos, pinned_bytes
//!  ├─ spawns     launched, created, failed, plain, latency_us (histogram)
//!  ├─ launchers  connections, open, pending
//!  └─ images     (lazy) one child per cached image: path, key, sealed_bytes,
//!                regions, load_bias, kind, fallback
//! ```

pub mod histogram;

pub use histogram::{ExponentialHistogram, Params};

/// Name of the lazily computed child with one node per cached image.
pub const LAZY_IMAGES: &str = "images";

/// A property value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Uint(u64),
    String(String),
    Bool(bool),
    /// An exponential histogram: its params and `(value, count)` pairs to
    /// `insert_multiple` (see [`ExponentialHistogram::representatives`]).
    Histogram {
        params: Params,
        inserts: Vec<(u64, u64)>,
    },
}

/// A node: properties in order, then children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub properties: Vec<(String, Value)>,
    pub children: Vec<Node>,
}

impl Node {
    pub fn new(name: impl Into<String>) -> Self {
        Node { name: name.into(), ..Node::default() }
    }

    pub fn uint(mut self, name: &str, v: u64) -> Self {
        self.properties.push((name.into(), Value::Uint(v)));
        self
    }

    pub fn string(mut self, name: &str, v: impl Into<String>) -> Self {
        self.properties.push((name.into(), Value::String(v.into())));
        self
    }

    pub fn bool(mut self, name: &str, v: bool) -> Self {
        self.properties.push((name.into(), Value::Bool(v)));
        self
    }

    pub fn histogram(mut self, name: &str, h: &ExponentialHistogram) -> Self {
        self.properties.push((name.into(), Value::Histogram { params: h.params(), inserts: h.representatives() }));
        self
    }

    pub fn child(mut self, node: Node) -> Self {
        self.children.push(node);
        self
    }

    /// The property `name`, for tests and the glue's own checks.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.properties.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The child `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
}
