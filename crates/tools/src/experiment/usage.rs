//! What an instance costs in memory: its counters from `/proc/PID/smaps_rollup`
//! (Rss, Pss and its parts, USS), and their sums.

use serde::Serialize;

/// Page counts of one process (or a sum), in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub rss: u64,
    pub pss: u64,
    /// Unique set size: `Private_Clean + Private_Dirty`.
    pub uss: u64,
    pub pss_anon: u64,
    pub pss_file: u64,
    pub pss_shmem: u64,
}

impl Usage {
    pub(super) fn add(&mut self, o: &Usage) {
        self.rss += o.rss;
        self.pss += o.pss;
        self.uss += o.uss;
        self.pss_anon += o.pss_anon;
        self.pss_file += o.pss_file;
        self.pss_shmem += o.pss_shmem;
    }
}

/// Parse the text of `/proc/PID/smaps_rollup`. `Rss` and `Pss` must be there; the other
/// counters count as 0 when missing (`Pss_Anon` and friends are from Linux 5.x).
pub fn parse_rollup(text: &str) -> Result<Usage, String> {
    let mut u = Usage::default();
    let (mut rss, mut pss) = (false, false);
    let (mut private_clean, mut private_dirty) = (0u64, 0u64);
    for (n, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let slot = match key {
            "Rss" => {
                rss = true;
                &mut u.rss
            }
            "Pss" => {
                pss = true;
                &mut u.pss
            }
            "Pss_Anon" => &mut u.pss_anon,
            "Pss_File" => &mut u.pss_file,
            "Pss_Shmem" => &mut u.pss_shmem,
            "Private_Clean" => &mut private_clean,
            "Private_Dirty" => &mut private_dirty,
            _ => continue,
        };
        let mut it = value.split_ascii_whitespace();
        *slot = match (it.next().map(str::parse::<u64>), it.next()) {
            (Some(Ok(kb)), Some("kB")) => kb.saturating_mul(1024),
            _ => return Err(format!("line {}: {key}: expected `N kB`, got {:?}", n + 1, value.trim())),
        };
    }
    if !(rss && pss) {
        return Err("no Rss or Pss line (an exited process, or a kernel without smaps_rollup)".into());
    }
    u.uss = private_clean + private_dirty;
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_parses() {
        let text = "\
55d4c8e6b000-7ffd5a9f4000 ---p 00000000 00:00 0                          [rollup]
Rss:                1884 kB
Pss:                 355 kB
Pss_Dirty:            88 kB
Pss_Anon:             84 kB
Pss_File:            271 kB
Pss_Shmem:             0 kB
Shared_Clean:       1524 kB
Shared_Dirty:          0 kB
Private_Clean:       272 kB
Private_Dirty:        88 kB
Referenced:         1884 kB
";
        let u = parse_rollup(text).expect("parse");
        assert_eq!(u.rss, 1884 * 1024);
        assert_eq!(u.pss, 355 * 1024);
        assert_eq!(u.uss, (272 + 88) * 1024);
        assert_eq!((u.pss_anon, u.pss_file, u.pss_shmem), (84 * 1024, 271 * 1024, 0));
        assert!(parse_rollup("").is_err());
        let e = parse_rollup("x-y ---p 0 0:0 0 [rollup]\nRss: many kB\nPss: 1 kB\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("Rss"), "{e}");
    }

    #[test]
    fn own_rollup_is_readable() {
        let text = std::fs::read_to_string("/proc/self/smaps_rollup").expect("smaps_rollup");
        let u = parse_rollup(&text).expect("parse own rollup");
        assert!(u.rss > 0 && u.pss > 0 && u.uss > 0, "{u:?}");
    }
}
