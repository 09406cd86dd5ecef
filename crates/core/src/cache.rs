//! The image cache: LRU by key, bounded by entry count and by sealed bytes,
//! with single-flight builds.
//!
//! Entries are `Arc<Image<K>>`. Eviction drops only the cache's reference: a spawn
//! in flight holds its own `Arc` (the image is pinned until the stub has mapped
//! it), and running processes hold their mappings, which outlive every fd.
//! The byte bound counts those evicted-but-held images too (`pinned_bytes`):
//! their sealed pages stay in memory as long as someone holds them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use lru::LruCache;

use crate::image::{Image, ImageKey};
use crate::kernel::Kernel;

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

/// Counters, as reported by `zygote stats` and `--json` (and on the wire:
/// fixed-width fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheStats {
    pub entries: u64,
    pub bytes: u64,
    pub max_entries: u64,
    pub max_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub builds: u64,
    pub build_nanos: u64,
    /// Sealed bytes of evicted images something still holds (live processes,
    /// spawns in flight); counted against `max_bytes` with `bytes`.
    pub pinned_bytes: u64,
}

struct Inner<K: Kernel> {
    lru: LruCache<ImageKey, Arc<Image<K>>>,
    bytes: u64,
    cfg: CacheConfig,
    stats: CacheStats,
    /// One lock per key being built: the second asker waits for the first.
    building: HashMap<ImageKey, Arc<Mutex<()>>>,
    /// Images evicted while someone may still hold them.
    evicted: Vec<Weak<Image<K>>>,
}

impl<K: Kernel> Inner<K> {
    fn evict_to_bounds(&mut self) {
        let mut pinned = self.pinned_bytes();
        while self.lru.len() > self.cfg.max_entries
            || (self.bytes + pinned > self.cfg.max_bytes && !self.lru.is_empty())
        {
            if let Some((key, img)) = self.lru.pop_lru() {
                tracing::debug!(%key, bytes = img.sealed_bytes(), "evicted image");
                self.forget(&img);
                // Held elsewhere, its bytes stay in memory: pinned now.
                if Arc::strong_count(&img) > 1 {
                    pinned += img.sealed_bytes();
                }
            }
        }
    }

    /// Drop the cache's hold on `img`, remembering it while others hold it.
    fn forget(&mut self, img: &Arc<Image<K>>) {
        self.bytes -= img.sealed_bytes();
        self.stats.evictions += 1;
        self.evicted.push(Arc::downgrade(img));
    }

    /// Sealed bytes of evicted images still held (and forget the others).
    fn pinned_bytes(&mut self) -> u64 {
        self.evicted.retain(|w| w.strong_count() > 0);
        self.evicted.iter().filter_map(Weak::upgrade).map(|i| i.sealed_bytes()).sum()
    }
}

pub struct Cache<K: Kernel> {
    inner: Mutex<Inner<K>>,
}

impl<K: Kernel> Cache<K> {
    pub fn new(cfg: CacheConfig) -> Self {
        Cache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                cfg,
                stats: CacheStats::default(),
                building: HashMap::new(),
                evicted: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        // Every critical section leaves Inner consistent before anything can panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Look up `key`, counting a hit; a miss is counted by the build that follows.
    pub fn get(&self, key: &ImageKey) -> Option<Arc<Image<K>>> {
        let mut inner = self.lock();
        let img = inner.lru.get(key).cloned()?;
        inner.stats.hits += 1;
        Some(img)
    }

    /// Look up `key`; on a miss run `build` (once per key however many callers
    /// ask at the same time) and insert the result.
    pub fn get_or_build<E>(
        &self,
        key: ImageKey,
        build: impl FnOnce() -> Result<Image<K>, E>,
    ) -> Result<Arc<Image<K>>, E> {
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
            inner.forget(&old);
        }
        inner.evict_to_bounds();
        Ok(img)
    }

    /// Drop `key` if it maps to exactly `img` (a stale image found at spawn).
    pub fn invalidate(&self, key: &ImageKey, img: &Arc<Image<K>>) -> bool {
        let mut inner = self.lock();
        if inner.lru.peek(key).is_some_and(|cur| Arc::ptr_eq(cur, img)) {
            if let Some(old) = inner.lru.pop(key) {
                inner.forget(&old);
            }
            return true;
        }
        false
    }

    /// Remove an entry explicitly.
    pub fn remove(&self, key: &ImageKey) -> Option<Arc<Image<K>>> {
        let mut inner = self.lock();
        let old = inner.lru.pop(key)?;
        inner.forget(&old);
        Some(old)
    }

    pub fn set_limits(&self, cfg: CacheConfig) {
        let mut inner = self.lock();
        inner.cfg = cfg;
        inner.evict_to_bounds();
    }

    pub fn stats(&self) -> CacheStats {
        let mut inner = self.lock();
        let pinned_bytes = inner.pinned_bytes();
        CacheStats {
            pinned_bytes,
            entries: inner.lru.len() as u64,
            bytes: inner.bytes,
            max_entries: inner.cfg.max_entries as u64,
            max_bytes: inner.cfg.max_bytes,
            ..inner.stats
        }
    }

    /// Every cached image, most recently used first.
    pub fn images(&self) -> Vec<Arc<Image<K>>> {
        self.lock().lru.iter().map(|(_, v)| v.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_kernel::{MemKernel, image};

    fn cache(max_entries: usize, max_bytes: u64) -> Cache<MemKernel> {
        Cache::new(CacheConfig { max_entries, max_bytes })
    }

    fn put(c: &Cache<MemKernel>, tag: u8, bytes: usize) -> Arc<Image<MemKernel>> {
        let img = image(tag, bytes);
        let key = *img.key();
        c.get_or_build(key, || Ok::<_, ()>(img)).expect("build")
    }

    #[test]
    fn entry_and_byte_bounds_evict_least_recently_used() {
        let c = cache(2, 1 << 20);
        let a = put(&c, 1, 100);
        put(&c, 2, 200);
        assert!(c.get(a.key()).is_some(), "a is now the most recent");
        put(&c, 3, 300); // evicts 2
        let s = c.stats();
        assert_eq!((s.entries, s.bytes, s.hits, s.misses, s.evictions, s.builds), (2, 400, 1, 3, 1, 3));
        let keys: Vec<u8> = c.images().iter().map(|i| i.key().content.0[0]).collect();
        assert_eq!(keys, [3, 1], "most recently used first");
        // A byte bound below both entries: the least recent (a, which the
        // test still holds: its pages stay, pinned) goes first, and since
        // that frees nothing, the other one too.
        c.set_limits(CacheConfig { max_entries: 10, max_bytes: 350 });
        let s = c.stats();
        assert_eq!((s.entries, s.bytes, s.pinned_bytes), (0, 0, 100));
        // Evicted images stay usable by whoever holds them.
        assert_eq!(a.sealed_bytes(), 100);
    }

    #[test]
    fn a_failed_build_caches_nothing_and_invalidate_needs_the_same_image() {
        let c = cache(4, 1 << 20);
        let key = *image(9, 10).key();
        assert_eq!(c.get_or_build(key, || Err::<Image<MemKernel>, _>("no")).unwrap_err(), "no");
        assert_eq!((c.stats().entries, c.stats().builds), (0, 0));
        let first = put(&c, 9, 10);
        let other = Arc::new(image(9, 10));
        assert!(!c.invalidate(&key, &other), "another image under the same key stays");
        assert!(c.invalidate(&key, &first));
        assert!(c.get(&key).is_none());
        assert!(c.remove(&key).is_none());
    }

    #[test]
    fn concurrent_first_requests_build_once() {
        let c = cache(4, 1 << 20);
        let builds = std::sync::atomic::AtomicUsize::new(0);
        let key = *image(5, 10).key();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    c.get_or_build(key, || {
                        builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok::<_, ()>(image(5, 10))
                    })
                    .expect("build")
                });
            }
        });
        assert_eq!(builds.into_inner(), 1);
        let s = c.stats();
        assert_eq!((s.builds, s.hits + s.misses), (1, 8), "{s:?}");
    }

    #[test]
    fn evicted_images_still_held_count_against_the_byte_bound() {
        let c = cache(10, 1000);
        let held = put(&c, 1, 600);
        assert!(c.remove(held.key()).is_some());
        assert_eq!((c.stats().bytes, c.stats().pinned_bytes), (0, 600), "evicted, but its pages are held");
        put(&c, 2, 300);
        put(&c, 3, 300); // 600 pinned + 600 cached > 1000: the older goes
        let s = c.stats();
        assert_eq!((s.entries, s.bytes, s.pinned_bytes), (1, 300, 600), "{s:?}");
        drop(held);
        assert_eq!(c.stats().pinned_bytes, 0, "released: nothing pinned");
        put(&c, 4, 600);
        assert_eq!(c.stats().entries, 2, "the bound has room again");
    }
}
