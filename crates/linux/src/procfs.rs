//! `/proc` text: the one parser of each file zygote reads there (status,
//! maps, stat and auxv here; smaps in `zygote_core::metrics::smaps`).

/// The value of field `key` (without its colon) in a `/proc/PID/status`
/// text, trimmed: the one parser of those lines.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
}

/// A hexadecimal `/proc/PID/status` field (signal and capability masks).
pub fn status_mask(status: &str, key: &str) -> Option<u64> {
    status_field(status, key).and_then(|v| u64::from_str_radix(v, 16).ok())
}

/// Does this process hold CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in its
/// effective set (what PR_SET_MM_MAP needs to change `/proc/self/exe`)?
pub fn may_set_exe() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_CHECKPOINT_RESTORE: u32 = 40;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    let eff = status_mask(&status, "CapEff").unwrap_or(0);
    eff & (1 << CAP_SYS_ADMIN) != 0 || eff & (1 << CAP_CHECKPOINT_RESTORE) != 0
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub shared: bool,
    pub offset: u64,
    pub dev: (u64, u64),
    pub inode: u64,
    pub name: String,
}

/// The lines of a `/proc/PID/maps` text; a line that does not parse is skipped.
pub fn parse_maps(text: &str) -> Vec<Vma> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(6, ' ');
            let range = it.next()?;
            let perms = it.next()?.as_bytes();
            let offset = u64::from_str_radix(it.next()?, 16).ok()?;
            let dev = it.next()?;
            let inode = it.next()?.parse().ok()?;
            let name = it.next().unwrap_or("").trim_start().to_string();
            let (s, e) = range.split_once('-')?;
            let (maj, min) = dev.split_once(':')?;
            let mut prot = 0;
            if perms.first() == Some(&b'r') {
                prot |= zygote_plan::PROT_READ;
            }
            if perms.get(1) == Some(&b'w') {
                prot |= zygote_plan::PROT_WRITE;
            }
            if perms.get(2) == Some(&b'x') {
                prot |= zygote_plan::PROT_EXEC;
            }
            Some(Vma {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                prot,
                shared: perms.get(3) == Some(&b's'),
                offset,
                dev: (u64::from_str_radix(maj, 16).ok()?, u64::from_str_radix(min, 16).ok()?),
                inode,
                name,
            })
        })
        .collect()
}

/// Fields of /proc/PID/stat after the comm, 1-based as in proc(5).
pub fn stat_field(stat: &str, n: usize) -> u64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // Field 3 (state) is the first after ")".
    rest.split_whitespace().nth(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The state letter of a `/proc/PID/stat` text (field 3: `R`, `S`, `Z`, ...).
pub fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

/// The (type, value) entries of a `/proc/PID/auxv` image, up to AT_NULL.
pub fn auxv_entries(auxv: &[u8]) -> impl Iterator<Item = (u64, u64)> + '_ {
    auxv.chunks_exact(16)
        .map(|c| {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or_default());
            (word(&c[..8]), word(&c[8..]))
        })
        .take_while(|&(t, _)| t != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_and_fields_after_a_comm_with_parentheses() {
        let stat = "42 (a) b (c)) Z 7 42 42 0";
        assert_eq!(stat_state(stat), Some('Z'));
        assert_eq!(stat_field(stat, 4), 7, "the parent pid");
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn auxv_entries_stop_at_at_null() {
        let mut raw = Vec::new();
        for (t, v) in [(16u64, 0xbfebfbffu64), (6, 4096), (0, 0), (99, 1)] {
            raw.extend_from_slice(&t.to_ne_bytes());
            raw.extend_from_slice(&v.to_ne_bytes());
        }
        raw.extend_from_slice(&[1, 2, 3]);
        assert_eq!(auxv_entries(&raw).collect::<Vec<_>>(), [(16, 0xbfebfbff), (6, 4096)]);
        let own = std::fs::read("/proc/self/auxv").expect("own auxv");
        assert!(auxv_entries(&own).any(|(t, v)| t == 6 && v == 4096), "AT_PAGESZ is 4096 here");
    }
}
