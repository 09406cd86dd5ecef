//! How the stub reports a failure: a [`StatusRecord`] on the status fd, or
//! a line on stderr when there is none, then exit [`STUB_FAILURE_EXIT`]. The
//! thin exec client instead execs the program (`client::fall_back`): before
//! the jump nothing it did outlives an exec.

use zygote_plan::{PlanError, STUB_FAILURE_EXIT, Stage, StatusRecord};

use crate::sys;

/// Report a failure and exit.
pub(crate) fn fail(status_fd: i32, stage: Stage, index: u32, errno: i32, detail: u32, addr: u64) -> ! {
    crate::client::fall_back_if_armed(stage as u32, errno);
    let rec = StatusRecord { stage: stage as u32, index, errno, detail, addr };
    if status_fd >= 0 {
        sys::write_all(status_fd, &rec.encode());
    } else {
        let mut line = *b"zygote-stub: failed at stage 00, errno 000\n";
        put2(&mut line[29..31], stage as u32);
        put3(&mut line[39..42], errno.unsigned_abs());
        sys::write_all(2, &line);
    }
    sys::exit_group(STUB_FAILURE_EXIT)
}

fn put2(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}
fn put3(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 100 % 10) as u8;
    put2(&mut out[1..3], v);
}

/// Exec'd without a plan on fd 3 (nothing there, or not a plan): not by a
/// spawner, so most likely a static program re-exec'ing `/proc/self/exe`,
/// which names the stub when the zygote could not set it to the program.
pub(crate) fn no_plan() -> ! {
    sys::write_all(
        2,
        b"zygote-stub: started without a plan on fd 3: this is zygote's loader, not a program. A program \
          started by a zygote lacking CAP_CHECKPOINT_RESTORE and CAP_SYS_ADMIN that executes /proc/self/exe \
          runs this loader instead of itself.\n",
    );
    sys::exit_group(STUB_FAILURE_EXIT)
}

pub(crate) fn plan_fail(status_fd: i32, e: PlanError) -> ! {
    let (code, extra) = StatusRecord::plan_error(e);
    fail(status_fd, Stage::Plan, extra, 0, code, 0)
}
