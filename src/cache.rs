//! The image cache: LRU by key, bounded by entry count and by sealed bytes,
//! with single-flight builds.
//!
//! Entries are `Arc<Image>`. Eviction drops only the cache's reference: a spawn
//! in flight holds its own `Arc` (the image is pinned until the stub has mapped
//! it), and running processes hold their mappings, which outlive every fd.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use crate::image::{Image, ImageKey};

/// Cache bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheConfig {
    pub max_entries: usize,
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { max_entries: 64, max_bytes: 1 << 30 }
    }
}

/// Counters, as reported by `zygote stats` and `--json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: u64,
    pub max_entries: usize,
    pub max_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub builds: u64,
    pub build_nanos: u64,
}

struct Inner {
    lru: LruCache<ImageKey, Arc<Image>>,
    bytes: u64,
    cfg: CacheConfig,
    stats: CacheStats,
    /// One lock per key being built: the second asker waits for the first.
    building: HashMap<ImageKey, Arc<Mutex<()>>>,
}

impl Inner {
    fn evict_to_bounds(&mut self) {
        while self.lru.len() > self.cfg.max_entries || (self.bytes > self.cfg.max_bytes && !self.lru.is_empty()) {
            if let Some((key, img)) = self.lru.pop_lru() {
                self.bytes -= img.sealed_bytes();
                self.stats.evictions += 1;
                tracing::debug!(%key, bytes = img.sealed_bytes(), "evicted image");
            }
        }
    }
}

pub struct Cache {
    inner: Mutex<Inner>,
}

impl Cache {
    pub fn new(cfg: CacheConfig) -> Self {
        Cache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                cfg,
                stats: CacheStats::default(),
                building: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves Inner consistent before anything can panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Look up `key`, counting a hit; a miss is counted by the build that follows.
    pub fn get(&self, key: &ImageKey) -> Option<Arc<Image>> {
        let mut inner = self.lock();
        let img = inner.lru.get(key).cloned()?;
        inner.stats.hits += 1;
        Some(img)
    }

    /// Look up `key`; on a miss run `build` (once per key however many callers
    /// ask at the same time) and insert the result.
    pub fn get_or_build<E>(&self, key: ImageKey, build: impl FnOnce() -> Result<Image, E>) -> Result<Arc<Image>, E> {
        let gate = {
            let mut inner = self.lock();
            if let Some(img) = inner.lru.get(&key).cloned() {
                inner.stats.hits += 1;
                return Ok(img);
            }
            inner.building.entry(key).or_default().clone()
        };
        let _building = gate.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut inner = self.lock();
            if let Some(img) = inner.lru.get(&key).cloned() {
                // Someone else built it while we waited.
                inner.stats.hits += 1;
                return Ok(img);
            }
            inner.stats.misses += 1;
        }
        let result = build();
        let mut inner = self.lock();
        inner.building.remove(&key);
        let img = Arc::new(result?);
        inner.stats.builds += 1;
        inner.stats.build_nanos += u64::try_from(img.build_time().as_nanos()).unwrap_or(u64::MAX);
        inner.bytes += img.sealed_bytes();
        if let Some(old) = inner.lru.put(key, img.clone()) {
            inner.bytes -= old.sealed_bytes();
        }
        inner.evict_to_bounds();
        Ok(img)
    }

    /// Drop `key` if it maps to exactly `img` (a stale image found at spawn).
    pub fn invalidate(&self, key: &ImageKey, img: &Arc<Image>) -> bool {
        let mut inner = self.lock();
        if inner.lru.peek(key).is_some_and(|cur| Arc::ptr_eq(cur, img)) {
            if let Some(old) = inner.lru.pop(key) {
                inner.bytes -= old.sealed_bytes();
                inner.stats.evictions += 1;
            }
            return true;
        }
        false
    }

    /// Remove an entry explicitly.
    pub fn remove(&self, key: &ImageKey) -> Option<Arc<Image>> {
        let mut inner = self.lock();
        let old = inner.lru.pop(key)?;
        inner.bytes -= old.sealed_bytes();
        inner.stats.evictions += 1;
        Some(old)
    }

    pub fn set_limits(&self, cfg: CacheConfig) {
        let mut inner = self.lock();
        inner.cfg = cfg;
        inner.evict_to_bounds();
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.lru.len(),
            bytes: inner.bytes,
            max_entries: inner.cfg.max_entries,
            max_bytes: inner.cfg.max_bytes,
            ..inner.stats
        }
    }

    /// Every cached image, most recently used first.
    pub fn images(&self) -> Vec<Arc<Image>> {
        self.lock().lru.iter().map(|(_, v)| v.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Zygote;
    use std::path::PathBuf;
    use std::process::Command;

    /// Compile a small static PIE whose data segment size depends on `n`.
    fn program(n: usize) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zygote-cache-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let src = dir.join(format!("p{n}.c"));
        let exe = dir.join(format!("p{n}"));
        std::fs::write(&src, format!("int x; int *tbl[{n}] = {{ &x }}; int main(void) {{ return tbl[0] != &x; }}\n"))
            .expect("write source");
        let out = Command::new("gcc").args(["-static-pie", "-O0", "-o"]).arg(&exe).arg(&src).output().expect("run gcc");
        assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
        exe
    }

    #[test]
    fn bounds_evict_least_recently_used() {
        let (a, b, c) = (program(10), program(20_000), program(30));
        let z = Zygote::new(CacheConfig { max_entries: 2, max_bytes: 1 << 30 }).expect("zygote");
        let ia = z.prepare(&a).expect("a");
        z.prepare(&b).expect("b");
        z.prepare(&a).expect("a again"); // a is now most recent
        z.prepare(&c).expect("c"); // evicts b
        let s = z.stats();
        assert_eq!((s.entries, s.hits, s.misses, s.evictions, s.builds), (2, 1, 3, 1, 3));
        let keys: Vec<_> = z.cache().images().iter().map(|i| *i.key()).collect();
        assert!(keys.contains(ia.key()) && keys.len() == 2);
        assert_eq!(s.bytes, z.cache().images().iter().map(|i| i.sealed_bytes()).sum::<u64>());

        // A byte bound below b's size keeps b out, alone.
        let ib = z.prepare(&b).expect("b again");
        z.set_limits(10, ib.sealed_bytes() - 1);
        let s = z.stats();
        assert!(s.bytes < ib.sealed_bytes(), "{s:?}");
        assert!(!z.cache().images().iter().any(|i| i.key() == ib.key()));
        // Evicted images stay usable by whoever holds them.
        assert!(ib.sealed_fds().iter().all(|fd| rustix::fs::fstat(fd).is_ok()));

        z.set_limits(0, 0);
        assert_eq!((z.stats().entries, z.stats().bytes), (0, 0));
    }

    #[test]
    fn concurrent_first_requests_build_once() {
        let p = program(50);
        let z = Zygote::new(CacheConfig::default()).expect("zygote");
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| z.prepare(&p).expect("prepare"));
            }
        });
        let st = z.stats();
        assert_eq!(st.builds, 1, "{st:?}");
        assert_eq!(st.hits + st.misses, 8, "{st:?}");
    }
}
