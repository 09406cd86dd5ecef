//! An exponential histogram with `fuchsia_inspect`'s parameters and bucket
//! rule, kept as plain counts so that it is tested here; the glue publishes
//! it by inserting each bucket's count at a value inside that bucket
//! ([`ExponentialHistogram::representatives`]), which puts every count in the
//! same bucket of the Inspect property.
//!
//! Buckets, as Inspect's `UintExponentialHistogramProperty` counts them:
//! underflow `< floor`; then `[floor, floor + step)`, `[floor + step,
//! floor + step·m)`, `[floor + step·m, floor + step·m²)`, ...; overflow at and
//! above `floor + step·m^(buckets-1)`.

use std::sync::Mutex;

/// `ExponentialHistogramParams<u64>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub floor: u64,
    pub initial_step: u64,
    pub step_multiplier: u64,
    pub buckets: usize,
}

/// Spawn latency in microseconds: `[0, 8)`, `[8, 16)`, `[16, 32)`, ...
/// doubling up to about 4 s, then overflow.
pub const LATENCY_US: Params = Params { floor: 0, initial_step: 8, step_multiplier: 2, buckets: 20 };

/// Counts per bucket: `counts[0]` underflow, `counts[1..=buckets]` the
/// buckets, `counts[buckets + 1]` overflow.
#[derive(Debug)]
pub struct ExponentialHistogram {
    params: Params,
    counts: Mutex<Vec<u64>>,
}

impl ExponentialHistogram {
    pub fn new(params: Params) -> Self {
        ExponentialHistogram { params, counts: Mutex::new(vec![0; params.buckets + 2]) }
    }

    pub fn params(&self) -> Params {
        self.params
    }

    /// Lower bound of slot `i` (0: underflow has none, so 0).
    pub fn lower_bound(&self, i: usize) -> u64 {
        let Params { floor, initial_step, step_multiplier, .. } = self.params;
        match i {
            0 => 0,
            1 => floor,
            _ => {
                let exp = u32::try_from(i - 2).unwrap_or(u32::MAX);
                floor.saturating_add(initial_step.saturating_mul(step_multiplier.saturating_pow(exp)))
            }
        }
    }

    /// The slot `value` falls in, by Inspect's rule.
    pub fn slot(&self, value: u64) -> usize {
        let last = self.params.buckets + 1;
        let mut slot = 0;
        while slot < last && value >= self.lower_bound(slot + 1) {
            slot += 1;
        }
        slot
    }

    pub fn insert(&self, value: u64) {
        let slot = self.slot(value);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts[slot] += 1;
    }

    /// The counts now, one per slot.
    pub fn counts(&self) -> Vec<u64> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `(value, count)` per non-empty slot, each value inside its slot, for
    /// `insert_multiple` into an Inspect histogram with the same params.
    pub fn representatives(&self) -> Vec<(u64, u64)> {
        let floor = self.params.floor;
        self.counts()
            .into_iter()
            .enumerate()
            .filter(|&(_, n)| n > 0)
            .map(|(i, n)| (if i == 0 { floor.saturating_sub(1) } else { self.lower_bound(i) }, n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_inspects_rule() {
        // fuchsia_inspect's own example: floor 1, step 1, ×2, 4 buckets;
        // 0 twice (underflow), 8, 500 (overflow) -> [2, 0, 0, 0, 1, 1].
        let h = ExponentialHistogram::new(Params { floor: 1, initial_step: 1, step_multiplier: 2, buckets: 4 });
        for v in [0, 0, 8, 500] {
            h.insert(v);
        }
        assert_eq!(h.counts(), [2, 0, 0, 0, 1, 1]);
        let bounds: Vec<u64> = (1..=5).map(|i| h.lower_bound(i)).collect();
        assert_eq!(bounds, [1, 2, 3, 5, 9]);
    }

    #[test]
    fn latency_buckets() {
        let h = ExponentialHistogram::new(LATENCY_US);
        assert_eq!((h.slot(0), h.slot(7), h.slot(8), h.slot(15), h.slot(16)), (1, 1, 2, 2, 3));
        let last = h.lower_bound(LATENCY_US.buckets + 1);
        assert_eq!(last, 8 << 19, "overflow from about 4.2 s");
        assert_eq!((h.slot(last - 1), h.slot(last)), (LATENCY_US.buckets, LATENCY_US.buckets + 1));
    }

    #[test]
    fn representatives_land_in_their_own_slot() {
        for params in [LATENCY_US, Params { floor: 10, initial_step: 3, step_multiplier: 3, buckets: 6 }] {
            let h = ExponentialHistogram::new(params);
            for v in (0..200_000u64).step_by(97).chain([0, 9, 10, u64::MAX]) {
                h.insert(v);
            }
            let again = ExponentialHistogram::new(params);
            for (value, n) in h.representatives() {
                for _ in 0..n {
                    again.insert(value);
                }
            }
            assert_eq!(again.counts(), h.counts(), "{params:?}");
        }
    }
}
