//! `/proc` text: the one parser of each file zygote reads there
//! (`/proc/PID/status` lines here; smaps in `zygote_core::metrics::smaps`).

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
