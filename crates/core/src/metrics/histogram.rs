//! A lock-free latency histogram with log2 buckets in microseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::stats::{LatencyBucket, LatencyStats};

/// Buckets: upper bounds 2^0 .. 2^24 µs (1 µs .. about 16.8 s).
pub const LATENCY_BUCKETS: usize = 25;

/// Counts observations per bucket; `record` is wait-free.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// The bucket of a latency of `us` microseconds: the smallest `i` with
/// `us <= 2^i`, or `None` above the last bound.
pub fn bucket_of(us: u64) -> Option<usize> {
    let i = if us <= 1 { 0 } else { (u64::BITS - (us - 1).leading_zeros()) as usize };
    (i < LATENCY_BUCKETS).then_some(i)
}

/// Upper bound of bucket `i`, in microseconds.
pub fn bound_us(i: usize) -> u64 {
    1u64 << i
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count one observation, rounded up to whole microseconds (so it is never
    /// above its bucket's bound).
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX);
        if let Some(i) = bucket_of(us) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now (per bucket, not cumulative).
    pub fn snapshot(&self) -> LatencyStats {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| LatencyBucket { le_us: bound_us(i), count: b.load(Ordering::Relaxed) })
            .collect();
        LatencyStats { count: self.count.load(Ordering::Relaxed), sum_us: self.sum_us.load(Ordering::Relaxed), buckets }
    }
}

impl LatencyStats {
    /// Upper bound (µs) of the bucket holding quantile `q` (0..=1), or `None`
    /// with no observations or when it lies above the last bucket.
    pub fn quantile_bound_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for b in &self.buckets {
            seen += b.count;
            if seen >= rank {
                return Some(b.le_us);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log2_upper_bounds() {
        assert_eq!(bucket_of(0), Some(0));
        assert_eq!(bucket_of(1), Some(0));
        assert_eq!(bucket_of(2), Some(1));
        assert_eq!(bucket_of(3), Some(2));
        assert_eq!(bucket_of(4), Some(2));
        assert_eq!(bucket_of(5), Some(3));
        assert_eq!(bucket_of(1 << 24), Some(24));
        assert_eq!(bucket_of((1 << 24) + 1), None);
        for us in [1u64, 7, 100, 999, 1000, 65_536, 1 << 20] {
            let i = bucket_of(us).unwrap();
            assert!(us <= bound_us(i) && (i == 0 || us > bound_us(i - 1)), "{us} in bucket {i}");
        }
    }

    #[test]
    fn record_and_snapshot() {
        let h = LatencyHistogram::new();
        h.record(Duration::from_nanos(1500)); // 2 µs
        h.record(Duration::from_micros(100)); // <= 128
        h.record(Duration::from_micros(100));
        h.record(Duration::from_secs(60)); // above the last bucket
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.sum_us, 2 + 200 + 60_000_000);
        assert_eq!(s.buckets.len(), LATENCY_BUCKETS);
        assert_eq!(s.buckets[1], LatencyBucket { le_us: 2, count: 1 });
        assert_eq!(s.buckets[7], LatencyBucket { le_us: 128, count: 2 });
        assert_eq!(s.buckets.iter().map(|b| b.count).sum::<u64>(), 3);
        assert_eq!(s.quantile_bound_us(0.5), Some(128));
        assert_eq!(s.quantile_bound_us(0.0), Some(2));
        assert_eq!(s.quantile_bound_us(1.0), None);
    }
}
