//! The processargs bootstrap message (`zircon/processargs.h`): what a new
//! process reads from its bootstrap channel before `main`: its argv, its
//! environment, the names of its namespace directories and a table that says
//! what each handle of the message is (`PA_HND(type, arg)`).
//!
//! Pure and generic over the handle type, so the layout is tested on every
//! host; the backend encodes with real handles and writes the message.
//!
//! Layout (little-endian, no padding):
//!
//! ```text
//! 0   u32 protocol  0x4150585d        20  u32 environ_off
//! 4   u32 version   0x00001000        24  u32 environ_num
//! 8   u32 handle_info_off (36)        28  u32 names_off
//! 12  u32 args_off                    32  u32 names_num
//! 16  u32 args_num                    36  u32 handle_info[handles], then the
//!                                         NUL-terminated args, environ, names
//! ```

/// `ZX_PROCARGS_PROTOCOL` ("MXPA").
pub const PROTOCOL: u32 = 0x4150_585d;
/// `ZX_PROCARGS_VERSION`.
pub const VERSION: u32 = 0x0000_1000;
/// Size of `zx_proc_args_t`.
pub const HEADER_SIZE: usize = 36;
/// `ZX_CHANNEL_MAX_MSG_BYTES`.
pub const MAX_BYTES: usize = 65_536;
/// `ZX_CHANNEL_MAX_MSG_HANDLES`.
pub const MAX_HANDLES: usize = 64;

/// The handles the launcher itself puts in a new process's main message:
/// PA_PROC_SELF, PA_THREAD_SELF, PA_VMAR_ROOT, PA_VMAR_LOADED, PA_VDSO_VMO
/// and PA_VMO_STACK (a program with an interpreter gets its loader and
/// PA_VMAR_LOADED in the interpreter's message instead, so one fewer).
pub const LAUNCHER_HANDLES: usize = 6;
/// So a caller may pass at most this many handles (`AddHandles` and
/// `AddNames` together).
pub const MAX_CALLER_HANDLES: usize = MAX_HANDLES - LAUNCHER_HANDLES;

/// Handle types (`PA_*`): the low byte of a handle info entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HandleType {
    ProcSelf = 0x01,
    ThreadSelf = 0x02,
    JobDefault = 0x03,
    VmarRoot = 0x04,
    VmarLoaded = 0x05,
    LdsvcLoader = 0x10,
    VdsoVmo = 0x11,
    StackVmo = 0x13,
    ExecutableVmo = 0x14,
    NamespaceDir = 0x20,
    FileDescriptor = 0x30,
    Lifecycle = 0x3a,
    DirectoryRequest = 0x3b,
    ClockUtc = 0x40,
    User0 = 0xf0,
    User1 = 0xf1,
    User2 = 0xf2,
}

/// A handle info entry, `PA_HND(type, arg)`: the type in bits 0..8, the
/// argument (an fd number, a name-table index) in bits 16..32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandleInfo(pub u32);

impl HandleInfo {
    pub const fn new(kind: HandleType, arg: u16) -> Self {
        HandleInfo(kind as u32 | ((arg as u32) << 16))
    }
    /// A handle info entry from its raw value (a caller's `AddHandles`).
    pub const fn from_raw(raw: u32) -> Self {
        HandleInfo(raw)
    }
    /// `PA_HND_TYPE`.
    pub const fn kind(self) -> u8 {
        (self.0 & 0xff) as u8
    }
    /// `PA_HND_ARG`.
    pub const fn arg(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

/// What a message carries.
#[derive(Debug)]
pub struct Contents<H> {
    pub args: Vec<Vec<u8>>,
    pub environ: Vec<Vec<u8>>,
    /// Namespace paths; a `NamespaceDir` handle's argument indexes them.
    pub names: Vec<Vec<u8>>,
    pub handles: Vec<(HandleInfo, H)>,
}

impl<H> Default for Contents<H> {
    fn default() -> Self {
        Contents { args: Vec::new(), environ: Vec::new(), names: Vec::new(), handles: Vec::new() }
    }
}

/// An encoded message: bytes and the handles, in handle-info order.
#[derive(Debug)]
pub struct Message<H> {
    pub bytes: Vec<u8>,
    pub handles: Vec<H>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcessargsError {
    #[error("{table} string {index} contains a NUL byte at {at}")]
    Nul { table: &'static str, index: usize, at: usize },
    #[error("{count} handles are more than a channel message carries ({MAX_HANDLES})")]
    TooManyHandles { count: usize },
    #[error("the message would be {size} bytes, more than a channel message carries ({MAX_BYTES})")]
    TooLarge { size: usize },
    #[error("namespace handle {index} names entry {arg}, but there are {names} names")]
    BadNameIndex { index: usize, arg: u16, names: usize },
}

/// The size of a string table, checking that no string holds a NUL.
fn table_size(table: &'static str, strings: &[Vec<u8>]) -> Result<usize, ProcessargsError> {
    let mut size = 0usize;
    for (index, s) in strings.iter().enumerate() {
        if let Some(at) = s.iter().position(|&b| b == 0) {
            return Err(ProcessargsError::Nul { table, index, at });
        }
        size = size.saturating_add(s.len() + 1);
    }
    Ok(size)
}

fn put(bytes: &mut Vec<u8>, v: u32) {
    bytes.extend_from_slice(&v.to_le_bytes());
}

/// Encode `contents`; the handles move into the message in table order.
pub fn encode<H>(contents: Contents<H>) -> Result<Message<H>, ProcessargsError> {
    let Contents { args, environ, names, handles } = contents;
    if handles.len() > MAX_HANDLES {
        return Err(ProcessargsError::TooManyHandles { count: handles.len() });
    }
    for (index, (info, _)) in handles.iter().enumerate() {
        if info.kind() == HandleType::NamespaceDir as u8 && usize::from(info.arg()) >= names.len() {
            return Err(ProcessargsError::BadNameIndex { index, arg: info.arg(), names: names.len() });
        }
    }
    let handle_info_off = HEADER_SIZE;
    let args_off = handle_info_off + 4 * handles.len();
    let environ_off = args_off.saturating_add(table_size("argument", &args)?);
    let names_off = environ_off.saturating_add(table_size("environment", &environ)?);
    let size = names_off.saturating_add(table_size("name", &names)?);
    if size > MAX_BYTES {
        return Err(ProcessargsError::TooLarge { size });
    }
    // Every offset and count is below MAX_BYTES, so each fits a u32.
    let u = |v: usize| v as u32;
    let mut bytes = Vec::with_capacity(size);
    for v in [PROTOCOL, VERSION, u(handle_info_off), u(args_off), u(args.len())] {
        put(&mut bytes, v);
    }
    for v in [u(environ_off), u(environ.len()), u(names_off), u(names.len())] {
        put(&mut bytes, v);
    }
    let mut out = Vec::with_capacity(handles.len());
    for (info, h) in handles {
        put(&mut bytes, info.0);
        out.push(h);
    }
    for s in args.iter().chain(&environ).chain(&names) {
        bytes.extend_from_slice(s);
        bytes.push(0);
    }
    debug_assert_eq!(bytes.len(), size);
    Ok(Message { bytes, handles: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    }

    fn strings(s: &[&str]) -> Vec<Vec<u8>> {
        s.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn handle_info_is_pa_hnd() {
        assert_eq!(HandleInfo::new(HandleType::ProcSelf, 0).0, 0x01);
        assert_eq!(HandleInfo::new(HandleType::FileDescriptor, 2).0, 0x0002_0030);
        assert_eq!(HandleInfo::new(HandleType::NamespaceDir, 0x1234).0, 0x1234_0020);
        assert_eq!(HandleInfo::new(HandleType::VdsoVmo, 0).0, 0x11);
        assert_eq!(HandleInfo::new(HandleType::LdsvcLoader, 0).0, 0x10);
        assert_eq!(HandleInfo::new(HandleType::VmarLoaded, 0).0, 0x05);
        let h = HandleInfo::from_raw(0xbeef_00f1);
        assert_eq!((h.kind(), h.arg()), (0xf1, 0xbeef));
    }

    #[test]
    fn header_handle_table_and_strings() {
        let contents = Contents {
            args: strings(&["prog", "-v"]),
            environ: strings(&["A=1"]),
            names: strings(&["/pkg", "/svc"]),
            handles: vec![
                (HandleInfo::new(HandleType::ProcSelf, 0), 'p'),
                (HandleInfo::new(HandleType::NamespaceDir, 1), 's'),
                (HandleInfo::new(HandleType::FileDescriptor, 1), 'o'),
            ],
        };
        let m = encode(contents).expect("encode");
        let b = &m.bytes;
        assert_eq!(&b[0..4], b"\x5d\x58\x50\x41", "protocol MXPA, little-endian");
        assert_eq!(le(b, 4), 0x1000);
        assert_eq!(le(b, 8), 36, "handle info right after the header");
        assert_eq!((le(b, 12), le(b, 16)), (48, 2), "args after 3 handle infos");
        assert_eq!((le(b, 20), le(b, 24)), (48 + 8, 1), "environ after \"prog\\0-v\\0\"");
        assert_eq!((le(b, 28), le(b, 32)), (56 + 4, 2));
        assert_eq!([le(b, 36), le(b, 40), le(b, 44)], [0x01, 0x0001_0020, 0x0001_0030]);
        assert_eq!(&b[48..], b"prog\0-v\0A=1\0/pkg\0/svc\0");
        assert_eq!(b.len(), 70);
        assert_eq!(m.handles, ['p', 's', 'o']);
    }

    #[test]
    fn the_launchers_handles_and_the_callers_fit_one_message() {
        let handles: Vec<_> = (0..MAX_CALLER_HANDLES + LAUNCHER_HANDLES)
            .map(|i| (HandleInfo::new(HandleType::FileDescriptor, i as u16), i))
            .collect();
        assert_eq!(encode(Contents { handles, ..Default::default() }).expect("fits").handles.len(), MAX_HANDLES);
        assert_eq!(MAX_CALLER_HANDLES, 58);
    }

    /// The service layer bounds a launch before anything is created; what it
    /// lets through must fit the message this encoder builds.
    #[test]
    fn limits_are_the_service_layers() {
        use zygote_fuchsia::processargs as service;
        assert_eq!(
            (MAX_BYTES, MAX_HANDLES, HEADER_SIZE),
            (service::MAX_MSG_BYTES, service::MAX_MSG_HANDLES, service::HEADER_BYTES)
        );
        assert_eq!(MAX_CALLER_HANDLES, service::CALLER_HANDLE_BUDGET, "fuchsia.process.zygote LAUNCH_HANDLE_BUDGET");
        let ours = [
            HandleType::ProcSelf,
            HandleType::ThreadSelf,
            HandleType::VmarRoot,
            HandleType::VmarLoaded,
            HandleType::VdsoVmo,
            HandleType::StackVmo,
        ];
        assert_eq!(ours.len(), LAUNCHER_HANDLES);
        assert_eq!(ours.map(|t| t as u8), service::LAUNCHER_HANDLES);
        let kinds = [
            (HandleType::JobDefault, service::PA_JOB_DEFAULT),
            (HandleType::LdsvcLoader, service::PA_LDSVC_LOADER),
            (HandleType::ExecutableVmo, service::PA_VMO_EXECUTABLE),
            (HandleType::NamespaceDir, service::PA_NS_DIR),
            (HandleType::FileDescriptor, service::PA_FD),
        ];
        for (t, pa) in kinds {
            assert_eq!(t as u8, pa, "{t:?}");
            assert_eq!(HandleInfo::new(t, 7).0, service::pa_hnd(pa, 7));
        }
        // A request at the budget, with names: the service's size arithmetic
        // is the encoder's, and the message fits.
        let names = strings(&["/pkg", "/svc", "/data"]);
        let args = strings(&["prog", "--flag"]);
        let environ = strings(&["HOME=/"]);
        let mut handles: Vec<_> = ours.iter().map(|&t| (HandleInfo::new(t, 0), 0u32)).collect();
        handles.extend((0..3).map(|i| (HandleInfo::new(HandleType::NamespaceDir, i), 1)));
        handles.extend((3..MAX_CALLER_HANDLES as u16).map(|fd| (HandleInfo::new(HandleType::FileDescriptor, fd), 2)));
        let strs: Vec<&[u8]> = args.iter().chain(&environ).chain(&names).map(Vec::as_slice).collect();
        let want = service::message_bytes(handles.len(), strs);
        let m = encode(Contents { args, environ, names, handles }).expect("a request at the budget fits");
        assert_eq!((m.bytes.len(), m.handles.len()), (want, MAX_HANDLES));
    }

    #[test]
    fn empty_message_is_just_the_header() {
        let m = encode::<u32>(Contents::default()).expect("encode");
        assert_eq!(m.bytes.len(), HEADER_SIZE);
        assert_eq!([le(&m.bytes, 8), le(&m.bytes, 12), le(&m.bytes, 20), le(&m.bytes, 28)], [36; 4]);
    }

    #[test]
    fn limits_and_bad_input() {
        let nul = Contents::<u32> { environ: strings(&["A=1", "B\0=2"]), ..Default::default() };
        assert_eq!(encode(nul).unwrap_err(), ProcessargsError::Nul { table: "environment", index: 1, at: 1 });
        let handles = (0..65).map(|i| (HandleInfo::new(HandleType::User0, i), i)).collect();
        let many = Contents { handles, ..Default::default() };
        assert_eq!(encode(many).unwrap_err(), ProcessargsError::TooManyHandles { count: 65 });
        // Exactly at the limit: 36 header bytes plus one argument and its NUL.
        let fits = Contents::<u32> { args: vec![vec![b'a'; MAX_BYTES - HEADER_SIZE - 1]], ..Default::default() };
        assert_eq!(encode(fits).expect("at the limit").bytes.len(), MAX_BYTES);
        let over = Contents::<u32> { args: vec![vec![b'a'; MAX_BYTES - HEADER_SIZE]], ..Default::default() };
        assert_eq!(encode(over).unwrap_err(), ProcessargsError::TooLarge { size: MAX_BYTES + 1 });
        let ns = Contents { handles: vec![(HandleInfo::new(HandleType::NamespaceDir, 0), 1u32)], ..Default::default() };
        assert_eq!(encode(ns).unwrap_err(), ProcessargsError::BadNameIndex { index: 0, arg: 0, names: 0 });
    }
}
