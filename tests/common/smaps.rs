//! The test's own /proc/PID/smaps reader, deliberately independent of
//! `zygote_core::metrics::smaps`, whose accounting the tests check against it.

use std::collections::HashMap;
use std::fs;

/// One mapping from /proc/PID/smaps with its kB fields.
#[derive(Clone, Debug, Default)]
pub struct SmapsEntry {
    pub start: u64,
    pub end: u64,
    pub header: String,
    pub fields: HashMap<String, u64>,
}

impl SmapsEntry {
    pub fn kb(&self, field: &str) -> u64 {
        self.fields.get(field).copied().unwrap_or(0)
    }
}

/// Parse /proc/PID/smaps.
pub fn smaps(pid: i32) -> Vec<SmapsEntry> {
    let path = format!("/proc/{pid}/smaps");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut out: Vec<SmapsEntry> = Vec::new();
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            out.push(SmapsEntry { start, end, header: line.to_string(), fields: HashMap::new() });
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let mut it = v.split_whitespace();
            if let (Some(n), Some("kB")) = (it.next(), it.next())
                && let (Some(e), Ok(n)) = (out.last_mut(), n.parse::<u64>())
            {
                e.fields.insert(k.trim().to_string(), n);
            }
        }
    }
    out
}
