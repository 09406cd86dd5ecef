//! [`DaemonStats`] as OpenMetrics text (`zygote stats --prometheus`, and the
//! daemon's loopback `GET /metrics`).
//!
//! Every family has `# TYPE` and `# HELP` lines (and `# UNIT` for bytes and
//! seconds); counters end in `_total`; per-image families carry the labels
//! `key` and `path` (images sharing a key are summed into one series); the
//! spawn latency is a histogram with cumulative `le` buckets in seconds (1 µs
//! to 2^24 µs, then `+Inf`). The text ends with `# EOF`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::stats::{DaemonStats, ImageStats, MemoryUsage};

/// The media type of the text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The smaps counters, as `field` label values.
const FIELDS: [&str; 8] =
    ["rss", "pss", "shared_clean", "shared_dirty", "private_clean", "private_dirty", "anonymous", "swap"];

fn fields(m: &MemoryUsage) -> [u64; 8] {
    [m.rss, m.pss, m.shared_clean, m.shared_dirty, m.private_clean, m.private_dirty, m.anonymous, m.swap]
}

/// Escape a label value: backslash, double quote, line feed.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `units / 10^digits` as a decimal number, trailing zeros trimmed.
fn decimal(units: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let frac = format!("{:0width$}", units % scale, width = digits as usize);
    let frac = frac.trim_end_matches('0');
    format!("{}.{}", units / scale, if frac.is_empty() { "0" } else { frac })
}

struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        if let Some(unit) = ["bytes", "seconds"].into_iter().find(|u| name.ends_with(&format!("_{u}"))) {
            let _ = writeln!(self.out, "# UNIT {name} {unit}");
        }
        let _ = writeln!(self.out, "# HELP {name} {help}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "counter", help);
        self.sample(&format!("{name}_total"), &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }
}

/// A per-image gauge: name, help, value.
type ImageGauge = (&'static str, &'static str, fn(&ImageStats) -> u64);

/// Images summed per key, in first-seen order.
fn by_key(images: &[ImageStats]) -> Vec<ImageStats> {
    let mut order: Vec<String> = Vec::new();
    let mut merged: BTreeMap<String, ImageStats> = BTreeMap::new();
    for i in images {
        match merged.get_mut(&i.key) {
            Some(m) => {
                m.sealed_bytes += i.sealed_bytes;
                m.resident_bytes += i.resident_bytes;
                m.cached |= i.cached;
                m.live_processes += i.live_processes;
                m.memory.add(&i.memory);
                m.by_kind.file.add(&i.by_kind.file);
                m.by_kind.sealed.add(&i.by_kind.sealed);
                m.by_kind.zero.add(&i.by_kind.zero);
                m.saved_bytes += i.saved_bytes;
            }
            None => {
                order.push(i.key.clone());
                merged.insert(i.key.clone(), ImageStats { processes: Vec::new(), ..i.clone() });
            }
        }
    }
    order.into_iter().filter_map(|k| merged.remove(&k)).collect()
}

/// Render the statistics.
pub fn render(s: &DaemonStats) -> String {
    let mut w = Writer { out: String::with_capacity(8192) };
    let c = &s.cache;
    w.counter("zygote_cache_hits", "Cache lookups that found a ready image or waited for its build.", c.hits);
    w.counter("zygote_cache_misses", "Cache lookups that had to build the image.", c.misses);
    w.counter("zygote_cache_evictions", "Images dropped to stay within the bounds, or by Evict.", c.evictions);
    w.counter("zygote_cache_builds", "Images built (relocated and sealed).", c.builds);
    w.counter(
        "zygote_cache_build_seconds",
        "Time spent building images, reading and hashing included.",
        decimal(c.build_nanos, 9),
    );
    w.gauge("zygote_cache_entries", "Images in the cache.", c.entries);
    w.gauge("zygote_cache_max_entries", "Most images the cache holds.", c.max_entries);
    w.gauge("zygote_cache_bytes", "Sealed bytes held by the cached images.", c.bytes);
    w.gauge("zygote_cache_max_bytes", "Most sealed bytes the cache holds.", c.max_bytes);
    w.gauge(
        "zygote_cache_pinned_bytes",
        "Sealed bytes of evicted images that live processes still hold (counted against max_bytes).",
        c.pinned_bytes,
    );
    w.counter("zygote_spawns", "Spawn requests that started a process.", s.spawns);
    w.counter("zygote_spawn_errors", "Spawn requests that failed.", s.spawn_errors);
    w.gauge("zygote_live_children", "Processes the daemon started and has not reaped.", s.live_children);
    w.counter("zygote_connections", "Connections served.", s.connections);
    w.gauge("zygote_open_connections", "Connections open now.", s.open_connections);
    w.gauge("zygote_launchers_idle", "Pre-started launchers waiting, each with an image mapped.", s.launchers.idle);
    w.gauge("zygote_launchers_capacity", "Most pre-started launchers kept.", s.launchers.capacity);
    w.counter("zygote_launcher_spawns", "Spawns served by a pre-started launcher.", s.launchers.spawns);
    let name = "zygote_image_requests";
    w.family(name, "counter", "Image requests of caller-side clients, by answer.");
    let r = &s.image_requests;
    for (answer, v) in [("served", r.served), ("exec", r.exec), ("miss", r.misses), ("error", r.errors)] {
        w.sample(&format!("{name}_total"), &[("answer", answer)], v);
    }
    w.counter("zygote_image_builds", "Image builds started by caller-side cache misses.", r.builds);

    let name = "zygote_spawn_latency_seconds";
    w.family(name, "histogram", "Spawn latency: request arrival to the image mapped in the new process.");
    let mut cumulative = 0;
    for b in &s.spawn_latency.buckets {
        cumulative += b.count;
        w.sample(&format!("{name}_bucket"), &[("le", &decimal(b.le_us, 6))], cumulative);
    }
    w.sample(&format!("{name}_bucket"), &[("le", "+Inf")], s.spawn_latency.count);
    w.sample(&format!("{name}_count"), &[], s.spawn_latency.count);
    w.sample(&format!("{name}_sum"), &[], decimal(s.spawn_latency.sum_us, 6));

    w.family("zygote_memory_bytes", "gauge", "The images' mappings in all live processes, by smaps counter.");
    for (f, v) in FIELDS.iter().zip(fields(&s.memory)) {
        w.sample("zygote_memory_bytes", &[("field", f)], v);
    }
    w.gauge("zygote_saved_bytes", "Bytes sharing saves over all images: sum of Rss - Pss.", s.saved_bytes);

    let images = by_key(&s.images);
    let per_image: [ImageGauge; 7] = [
        ("zygote_image_cached", "1 if the image is cached, 0 if only live processes hold it.", |i| i.cached as u64),
        ("zygote_image_regions", "Regions the image maps into each process.", |i| i.regions),
        ("zygote_image_sealed_bytes", "Logical size of the image's sealed objects.", |i| i.sealed_bytes),
        ("zygote_image_resident_bytes", "Bytes of the image's sealed objects in memory or swap.", |i| i.resident_bytes),
        ("zygote_image_live_processes", "Live processes started from the image.", |i| i.live_processes),
        ("zygote_image_saved_bytes", "Bytes sharing saves in the image's mappings: sum of Rss - Pss.", |i| {
            i.saved_bytes
        }),
        ("zygote_image_pss_bytes", "Pss of the image's mappings over its live processes.", |i| i.memory.pss),
    ];
    for (name, help, get) in per_image {
        w.family(name, "gauge", help);
        for i in &images {
            w.sample(name, &[("key", &i.key), ("path", &i.path)], get(i));
        }
    }
    let name = "zygote_image_memory_bytes";
    w.family(name, "gauge", "The image's mappings over its live processes, by region kind and smaps counter.");
    for i in &images {
        for (kind, m) in [("file", &i.by_kind.file), ("sealed", &i.by_kind.sealed), ("zero", &i.by_kind.zero)] {
            for (f, v) in FIELDS.iter().zip(fields(m)) {
                w.sample(name, &[("key", &i.key), ("path", &i.path), ("kind", kind), ("field", f)], v);
            }
        }
    }
    w.out.push_str("# EOF\n");
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::stats::{LatencyBucket, LatencyStats};

    #[test]
    fn decimals() {
        assert_eq!(decimal(1, 6), "0.000001");
        assert_eq!(decimal(1 << 20, 6), "1.048576");
        assert_eq!(decimal(2_000_000, 6), "2.0");
        assert_eq!(decimal(0, 9), "0.0");
        assert_eq!(decimal(1_500_000_000, 9), "1.5");
    }

    #[test]
    fn renders_families_and_eof() {
        let img = ImageStats {
            key: "ab".repeat(32),
            path: "/tmp/a \"b\"\\c\nd".into(),
            sealed_bytes: 8192,
            cached: true,
            live_processes: 2,
            ..Default::default()
        };
        let s = DaemonStats {
            images: vec![img.clone(), ImageStats { cached: false, ..img }],
            spawn_latency: LatencyStats {
                count: 3,
                sum_us: 1500,
                buckets: vec![LatencyBucket { le_us: 1, count: 0 }, LatencyBucket { le_us: 2, count: 2 }],
            },
            ..Default::default()
        };
        let t = render(&s);
        assert!(t.ends_with("# EOF\n"), "{t}");
        assert!(t.contains("# TYPE zygote_cache_hits counter\n"));
        assert!(t.contains("\nzygote_cache_hits_total 0\n"));
        assert!(t.contains("zygote_spawn_latency_seconds_bucket{le=\"0.000002\"} 2\n"));
        assert!(t.contains("zygote_spawn_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(t.contains("zygote_spawn_latency_seconds_sum 0.0015\n"));
        // Two images with one key: one series, summed.
        let series: Vec<&str> = t.lines().filter(|l| l.starts_with("zygote_image_sealed_bytes{")).collect();
        assert_eq!(
            series,
            [format!(
                "zygote_image_sealed_bytes{{key=\"{}\",path=\"/tmp/a \\\"b\\\"\\\\c\\nd\"}} 16384",
                "ab".repeat(32)
            )]
        );
        assert!(t.contains("# UNIT zygote_image_sealed_bytes bytes\n"));
    }
}
