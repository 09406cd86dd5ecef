//! Capabilities: the effective set of a process (via the crate's /proc status
//! parser) and a `setpriv` prefix that drops what restoring `/proc/PID/exe` needs.

use std::fs;

use zygote_linux::procfs::status_mask;

/// Effective capability set of a process, from the CapEff line of its
/// /proc/PID/status text.
pub fn cap_eff(status_text: &str) -> u64 {
    status_mask(status_text, "CapEff").unwrap_or_else(|| panic!("no CapEff line in:\n{status_text}"))
}

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// `setpriv` prefix that runs a command without CAP_SYS_ADMIN and
/// CAP_CHECKPOINT_RESTORE (dropped from the bounding and inheritable sets
/// before the exec, so a root process gets neither in its permitted or
/// effective set).
pub const WITHOUT_RESTORE_CAPS: [&str; 4] =
    ["setpriv", "--bounding-set=-sys_admin,-checkpoint_restore", "--inh-caps=-sys_admin,-checkpoint_restore", "--"];

/// Whether this process may set a child's exe file (CAP_SYS_ADMIN or
/// CAP_CHECKPOINT_RESTORE effective).
pub fn have_restore_caps() -> bool {
    let eff = cap_eff(&fs::read_to_string("/proc/self/status").expect("read /proc/self/status"));
    eff & (1 << CAP_SYS_ADMIN) != 0 || eff & (1 << CAP_CHECKPOINT_RESTORE) != 0
}
