//! What the launcher state needs to know of the processargs bootstrap message
//! (`zircon/processargs.h`): handle-info types, and the size and handle limits
//! of the one channel message that carries it. The encoder itself belongs to
//! the Zircon backend; this is only the arithmetic that bounds a launch before
//! anything is created.

/// Most bytes in one channel message (`ZX_CHANNEL_MAX_MSG_BYTES`).
pub const MAX_MSG_BYTES: usize = 65536;
/// Most handles in one channel message (`ZX_CHANNEL_MAX_MSG_HANDLES`).
pub const MAX_MSG_HANDLES: usize = 64;
/// `zx_proc_args_t`: protocol, version, then offset/count pairs (9 × u32).
pub const HEADER_BYTES: usize = 36;

pub const PA_PROC_SELF: u8 = 0x01;
pub const PA_THREAD_SELF: u8 = 0x02;
pub const PA_JOB_DEFAULT: u8 = 0x03;
pub const PA_VMAR_ROOT: u8 = 0x04;
pub const PA_VMAR_LOADED: u8 = 0x05;
pub const PA_LDSVC_LOADER: u8 = 0x10;
pub const PA_VMO_VDSO: u8 = 0x11;
pub const PA_VMO_STACK: u8 = 0x13;
pub const PA_VMO_EXECUTABLE: u8 = 0x14;
pub const PA_NS_DIR: u8 = 0x20;
pub const PA_FD: u8 = 0x30;

/// The handles the launcher itself puts in every bootstrap message it sends:
/// the process, its initial thread, its root VMAR, the VMAR the image is
/// loaded in, the vDSO and the stack VMO (as process_builder does).
pub const LAUNCHER_HANDLES: [u8; 6] =
    [PA_PROC_SELF, PA_THREAD_SELF, PA_VMAR_ROOT, PA_VMAR_LOADED, PA_VMO_VDSO, PA_VMO_STACK];

/// Handles a caller may pass for one launch, `AddHandles` and `AddNames`
/// together: what is left of a message once the launcher's own are in.
pub const CALLER_HANDLE_BUDGET: usize = MAX_MSG_HANDLES - LAUNCHER_HANDLES.len();

/// `PA_HND(type, arg)`.
pub const fn pa_hnd(kind: u8, arg: u16) -> u32 {
    kind as u32 | (arg as u32) << 16
}

/// The type of a handle-info value (`PA_HND_TYPE`).
pub const fn pa_type(id: u32) -> u8 {
    (id & 0xff) as u8
}

/// The argument of a handle-info value (`PA_HND_ARG`).
pub const fn pa_arg(id: u32) -> u16 {
    (id >> 16) as u16
}

/// Handle types only the launcher may put in a message: a caller that passes
/// one is refused, as process_builder refuses it (namespace directories come
/// through `AddNames`, with their path).
pub fn reserved(kind: u8) -> bool {
    matches!(
        kind,
        PA_PROC_SELF | PA_THREAD_SELF | PA_VMAR_ROOT | PA_VMAR_LOADED | PA_VMO_STACK | PA_VMO_EXECUTABLE | PA_NS_DIR
    )
}

/// Bytes of a bootstrap message with `handles` handles and these strings
/// (each NUL-terminated), as the encoder lays it out.
pub fn message_bytes<'a>(handles: usize, strings: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let text: usize = strings.into_iter().map(|s| s.len() + 1).sum();
    HEADER_BYTES + 4 * handles + text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_info_round_trips() {
        let id = pa_hnd(PA_FD, 1);
        assert_eq!(id, 0x0001_0030);
        assert_eq!((pa_type(id), pa_arg(id)), (PA_FD, 1));
        assert_eq!(pa_hnd(0xf1, 0x1234), 0x1234_00f1, "PA_USER1 with an argument, as processargs.h packs it");
    }

    #[test]
    fn budget_leaves_room_for_the_launcher() {
        assert_eq!(CALLER_HANDLE_BUDGET, 58);
        assert!(LAUNCHER_HANDLES.iter().all(|&k| k == PA_VMO_VDSO || reserved(k)));
        assert!(!reserved(PA_FD) && !reserved(PA_LDSVC_LOADER) && !reserved(PA_JOB_DEFAULT));
    }

    #[test]
    fn message_size_is_the_encoders() {
        // process_builder's own example: 3 handles, args arg1..arg3,
        // FOO=BAR, names /data and /pkg: 0x52 bytes (names at 0x47).
        let strings: [&[u8]; 6] = [b"arg1", b"arg2", b"arg3", b"FOO=BAR", b"/data", b"/pkg"];
        assert_eq!(message_bytes(3, strings), 0x52);
        assert_eq!(message_bytes(0, []), HEADER_BYTES);
    }
}
