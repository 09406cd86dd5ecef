//! The prototype preparer (Linux, dynamically linked programs).
//!
//! The system's dynamic linker relocates the program once, in a prototype
//! process started under ptrace with `LD_BIND_NOW=1` and stopped at its entry
//! point. Its address space becomes an image:
//!
//! - mappings whose bytes equal their file's are File regions (mapped from the
//!   file at spawn time; the image holds an fd to every such file);
//! - mappings that differ (relocated data, RELRO, .bss, the heap, ld.so's
//!   TLS and TCB areas) become sealed memfds, one per mapping, sparse;
//! - the kernel's [vvar]/[vvar_vclock]/[vdso] are moved to where they were;
//! - words that pointed into the prototype's stack are classified (argv,
//!   envp, auxv, argv[0], its basename, an auxv value, the stack end) and
//!   rewritten against the new stack; 32-bit copies of argc are found by
//!   diffing a second prototype started with one more argument;
//! - fs_base, set_tid_address, set_robust_list and rseq are replayed, the
//!   stack canary is re-randomised and PR_SET_MM_MAP restores brk.
//!
//! What cannot be restored faithfully is refused with the reason (threads,
//! fds beyond stdio, signal handlers, timers, sigaltstack, personality or
//! rlimit changes); such programs run by plain exec.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use zygote_plan::{FixupKind, RestoreOp};

use crate::SealedObject;
use crate::procfs::{Vma, parse_maps, stat_field};
use crate::ptrace::{EntryRegs, Prototype, PtraceError, SyscallRecord};
use crate::{Image, Linux};
use zygote_core::elf::{PAGE_SIZE, ProgramKind};
use zygote_core::image::{
    ContentHash, EntryState, FileIdentity, ImageError, ImageKey, ImageParts, ImageRegion, MappedFile, RegionKind,
    RelocSummary,
};

/// Loader-relevant environment (part of a prototype's key).
pub use zygote_plan::image::is_loader_env;

const SYS_CLONE: u64 = 56;
const SYS_FORK: u64 = 57;
const SYS_VFORK: u64 = 58;
const SYS_CLONE3: u64 = 435;
const SYS_SIGALTSTACK: u64 = 131;
const SYS_ALARM: u64 = 37;
const SYS_SETITIMER: u64 = 38;
const SYS_TIMER_CREATE: u64 = 222;
const SYS_TIMERFD_CREATE: u64 = 283;
const SYS_PERSONALITY: u64 = 135;
const SYS_SETRLIMIT: u64 = 160;
const SYS_PRLIMIT64: u64 = 302;
const SYS_BRK: u64 = 12;
const SYS_SET_TID_ADDRESS: u64 = 218;
const SYS_SET_ROBUST_LIST: u64 = 273;
const SYS_RSEQ: u64 = 334;

const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_BASE: u64 = 7;
const AT_ENTRY: u64 = 9;
const AT_HWCAP: u64 = 16;
const AT_HWCAP2: u64 = 26;
const AT_SYSINFO_EHDR: u64 = 33;
/// x86_64 TCB: the stack guard gcc reads as %fs:0x28.
const CANARY_OFFSET: u64 = 0x28;

/// Why a program is not cached (it runs by plain exec instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: not restorable from a snapshot: {reason}")]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: String,
}

fn proc_status_field(status: &str, key: &str) -> u64 {
    crate::procfs::status_mask(status, key).unwrap_or(0)
}

/// What a spawn of a dynamic program depends on besides its bytes.
pub struct Environment<'a> {
    /// `KEY=VALUE` entries that drive the loader (see [`is_loader_env`]).
    pub loader_env: &'a [Vec<u8>],
    /// Run the prototype as (uid, gid, groups): the user the image is for,
    /// when it is not the zygote's own (a root daemon serving another user).
    pub creds: Option<zygote_core::Credentials<'a>>,
}

/// The machine facts an image depends on: vDSO bytes, hwcaps, CPU flags,
/// kernel release. Computed once per process.
pub fn machine_fingerprint() -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"zygote-machine-v1");
    if let Ok(u) = rustix::system::uname().release().to_str() {
        h.update(u.as_bytes());
    }
    if let Ok(auxv) = std::fs::read("/proc/self/auxv") {
        for (t, v) in crate::procfs::auxv_entries(&auxv) {
            if t == AT_HWCAP || t == AT_HWCAP2 {
                h.update(&v.to_ne_bytes());
            }
        }
    }
    if let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo")
        && let Some(flags) = cpuinfo.lines().find(|l| l.starts_with("flags"))
    {
        h.update(flags.as_bytes());
    }
    if let Some(v) = own_vdso() {
        h.update(&v);
    }
    *h.finalize().as_bytes()
}

/// This process's vDSO bytes (the same for every process on this kernel).
fn own_vdso() -> Option<Vec<u8>> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let v = parse_maps(&maps).into_iter().find(|v| v.name == "[vdso]")?;
    let f = std::fs::File::open("/proc/self/mem").ok()?;
    let mut buf = vec![0u8; (v.end - v.start) as usize];
    rustix::io::pread(&f, &mut buf, v.start).ok()?;
    Some(buf)
}

/// The image key of a dynamic program: its bytes, the file (device, inode:
/// which file the image maps), the directory `$ORIGIN` stands for when the
/// program uses it (`origin`, from [`origin_dir`]: where it was run from
/// decides which libraries the loader finds), the loader environment, the
/// machine fingerprint, the credentials, the preparer version.
pub fn key(
    content: ContentHash,
    file: (u64, u64),
    origin: Option<&[u8]>,
    env: &Environment<'_>,
    machine: &[u8; 32],
) -> ImageKey {
    let mut h = blake3::Hasher::new();
    h.update(b"zygote-prototype-v2");
    h.update(&content.0);
    h.update(&file.0.to_le_bytes());
    h.update(&file.1.to_le_bytes());
    let mut loader: Vec<&Vec<u8>> = env.loader_env.iter().collect();
    loader.sort();
    for kv in loader {
        h.update(&(kv.len() as u64).to_le_bytes());
        h.update(kv);
    }
    h.update(machine);
    if let Some(dir) = origin {
        h.update(b"origin");
        h.update(&(dir.len() as u64).to_le_bytes());
        h.update(dir);
    }
    // An image captured as one user is that user's: what its start-up could
    // read and do is not everyone's.
    if let Some(zygote_core::Credentials { uid, gid, groups }) = env.creds {
        h.update(b"creds");
        h.update(&uid.to_le_bytes());
        h.update(&gid.to_le_bytes());
        for g in groups {
            h.update(&g.to_le_bytes());
        }
    }
    ImageKey { content: ContentHash(*h.finalize().as_bytes()), preparer: ImageKey::PROTOTYPE_V1 }
}

fn perr(path: &Path) -> impl Fn(PtraceError) -> ImageError + '_ {
    move |e| ImageError::Prototype { path: path.to_path_buf(), reason: e.to_string() }
}

fn cstr(b: &[u8]) -> CString {
    CString::new(b.iter().copied().filter(|&c| c != 0).collect::<Vec<u8>>()).unwrap_or_default()
}

/// Start a prototype of the open file `exe` with `argv` and the loader
/// environment plus LD_BIND_NOW=1.
fn start(exe: BorrowedFd<'_>, argv: &[&[u8]], env: &Environment<'_>) -> Result<Prototype, PtraceError> {
    let argv_c: Vec<CString> = argv.iter().map(|a| cstr(a)).collect();
    let mut env_c: Vec<CString> = env.loader_env.iter().map(|kv| cstr(kv)).collect();
    if !env.loader_env.iter().any(|kv| kv.starts_with(b"LD_BIND_NOW=")) {
        env_c.push(cstr(b"LD_BIND_NOW=1"));
    }
    let ptrs = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
    Prototype::start(exe, &ptrs(&argv_c), &ptrs(&env_c), true, env.creds)
}

/// Refuse what a snapshot cannot carry.
fn check_restorable(p: &Prototype, path: &Path) -> Result<(), Refusal> {
    let refuse = |reason: String| Err(Refusal { path: path.to_path_buf(), reason });
    if let Ok(tasks) = p.proc_dir("task")
        && tasks.len() > 1
    {
        return refuse(format!("{} threads at the entry point (a constructor started a thread)", tasks.len()));
    }
    if let Ok(fds) = p.proc_dir("fd") {
        let mut extra: Vec<String> = fds.into_iter().filter(|f| !matches!(f.as_str(), "0" | "1" | "2")).collect();
        extra.sort();
        if let Some(fd) = extra.first() {
            let target = std::fs::read_link(format!("/proc/{}/fd/{fd}", p.pid)).unwrap_or_default();
            return refuse(format!("a constructor opened fd {fd} ({})", target.display()));
        }
    }
    let status = String::from_utf8_lossy(&p.proc_file("status").unwrap_or_default()).into_owned();
    if proc_status_field(&status, "SigCgt") != 0 {
        return refuse("a constructor installed signal handlers".into());
    }
    let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if proc_status_field(&status, "SigIgn") != proc_status_field(&own, "SigIgn") {
        return refuse("a constructor changed which signals are ignored".into());
    }
    for s in &p.syscalls {
        let why = match s.nr {
            SYS_CLONE | SYS_CLONE3 | SYS_FORK | SYS_VFORK => "a constructor created a thread or process",
            SYS_SIGALTSTACK if s.args[0] != 0 => "a constructor installed a sigaltstack",
            SYS_ALARM | SYS_SETITIMER | SYS_TIMER_CREATE | SYS_TIMERFD_CREATE => "a constructor set a timer",
            SYS_PERSONALITY if s.args[0] != 0xffff_ffff => "a constructor changed the personality",
            SYS_SETRLIMIT => "a constructor changed a resource limit",
            SYS_PRLIMIT64 if s.args[2] != 0 => "a constructor changed a resource limit",
            _ => continue,
        };
        return refuse(why.into());
    }
    Ok(())
}

/// Where start-up put things on the prototype's stack (read at the entry point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StackWalk {
    argv: u64,
    envp: u64,
    auxv: u64,
    argv0: u64,
    argv0_base: u64,
}

/// Follow the initial stack from `sp` (argc, argv[], NULL, envp[], NULL, auxv)
/// through `word`, a reader of the prototype's memory. `name` is argv[0].
fn walk_stack<E>(sp: u64, name: &[u8], mut word: impl FnMut(u64) -> Result<u64, E>) -> Result<StackWalk, E> {
    let argc = word(sp)?;
    let argv = sp + 8;
    let envp = argv + 8 * (argc + 1);
    let mut p = envp;
    while word(p)? != 0 {
        p += 8;
    }
    let argv0 = word(argv)?;
    let argv0_base = argv0 + name.iter().rposition(|&c| c == b'/').map_or(0, |i| i as u64 + 1);
    Ok(StackWalk { argv, envp, auxv: p + 8, argv0, argv0_base })
}

/// Stack facts of the prototype, for classifying pointers into it.
struct StackInfo {
    lo: u64,
    hi: u64,
    sp: u64,
    argv: u64,
    envp: u64,
    auxv: u64,
    argv0: u64,
    argv0_base: u64,
    auxvals: Vec<(u64, u64)>,
}

impl StackInfo {
    fn new(stack: &Vma, sp: u64, walk: StackWalk, auxv: &[(u64, u64)]) -> Self {
        let StackWalk { argv, envp, auxv: auxv_addr, argv0, argv0_base } = walk;
        StackInfo {
            lo: stack.start,
            hi: stack.end,
            sp,
            argv,
            envp,
            auxv: auxv_addr,
            argv0,
            argv0_base,
            auxvals: auxv.to_vec(),
        }
    }

    fn classify(&self, v: u64) -> Option<(FixupKind, u64)> {
        if v < self.lo || v >= self.hi {
            return None;
        }
        let k = if v == self.sp {
            (FixupKind::StackEnd, 0)
        } else if v == self.argv {
            (FixupKind::Argv, 0)
        } else if v == self.envp {
            (FixupKind::Envp, 0)
        } else if v == self.auxv {
            (FixupKind::Auxv, 0)
        } else if v == self.argv0 {
            (FixupKind::Argv0, 0)
        } else if v == self.argv0_base {
            (FixupKind::Argv0Base, 0)
        } else if let Some(&(t, _)) = self.auxvals.iter().find(|&&(_, av)| av == v) {
            (FixupKind::AuxVal, t)
        } else {
            return None;
        };
        Some(k)
    }
}

/// A captured mapping.
struct Captured {
    vma: Vma,
    /// Memory contents (None for PROT_NONE and all-zero anonymous mappings).
    bytes: Option<Vec<u8>>,
    /// Index into the files list when the bytes equal the file's.
    file: Option<usize>,
}

/// A word of captured memory to rewrite against the new process's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fixup {
    /// Index of the captured mapping holding it.
    mapping: usize,
    addr: u64,
    kind: FixupKind,
    /// The auxv type for `FixupKind::AuxVal`.
    extra: u64,
}

/// What preparing a dynamically linked program gives.
#[derive(Debug)]
pub enum Prepared {
    Image(Box<Image>),
    /// It cannot be snapshotted faithfully and must run by plain exec.
    Refused(Refusal),
}

/// Prepare a dynamically linked program from a prototype.
pub fn prepare(
    path: &Path,
    file: OwnedFd,
    identity: FileIdentity,
    key: ImageKey,
    env: &Environment<'_>,
    started: Instant,
) -> Result<Prepared, ImageError> {
    let name = path.as_os_str().as_bytes();
    let proto = start(file.as_fd(), &[name], env).map_err(perr(path))?;
    if let Err(r) = check_restorable(&proto, path) {
        return Ok(Prepared::Refused(r));
    }
    let maps_text = String::from_utf8_lossy(&proto.proc_file("maps").map_err(perr(path))?).into_owned();
    let vmas = parse_maps(&maps_text);
    if let Some(v) = vmas.iter().find(|v| v.shared) {
        return Ok(Prepared::Refused(Refusal { path: path.into(), reason: format!("shared mapping {}", v.name) }));
    }
    let auxv = proto.auxv().map_err(perr(path))?;
    let walk = walk_stack(proto.regs.rsp, name, |addr| {
        let b = proto.read_mem(addr, 8).map_err(perr(path))?;
        Ok::<_, ImageError>(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    })?;
    let stack = vmas.iter().find(|v| v.name == "[stack]").map(|s| StackInfo::new(s, proto.regs.rsp, walk, &auxv));
    let vdso = check_vdso(&proto, path, &vmas)?;

    let mut files: Vec<MappedFile<Linux>> = vec![MappedFile { path: path.to_path_buf(), file, identity }];
    let (captured, mut ops) = capture(&proto, path, &vmas, vdso.as_ref(), &mut files)?;
    // argc copies: diff against a prototype with one more argument (same
    // layout: both run without address randomisation).
    let argc_slots = argc_slots(files[0].file.as_fd(), path, name, env, &vmas, &captured).unwrap_or_default();
    let (fixups, unclassified) = find_fixups(&captured, stack.as_ref(), &argc_slots);
    if unclassified > 0 {
        tracing::debug!(path = %path.display(), unclassified, "stack pointers left as they are (dead values)");
    }
    let Sealed { objects, regions, protects } = seal(path, &captured, &fixups)?;
    let stat = String::from_utf8_lossy(&proto.proc_file("stat").map_err(perr(path))?).into_owned();
    ops.extend(restore_ops(proto.regs, &proto.syscalls, &stat, &fixups, protects));
    let entry = entry_state(&proto, &auxv);
    let pid = proto.pid;
    tracing::debug!(pid, regions = regions.len(), objects = objects.len(), fixups = fixups.len(), "prototype captured");
    drop(proto);
    Ok(Prepared::Image(Box::new(Image::new(ImageParts {
        key,
        path: path.to_path_buf(),
        files,
        objects,
        regions,
        entry,
        ops,
        load_bias: 0,
        kind: ProgramKind::Dynamic,
        relocs: RelocSummary::default(),
        build_time: started.elapsed(),
    }))))
}

/// The prototype's vDSO (if it has one), which must be the one this kernel
/// gives everyone.
fn check_vdso(proto: &Prototype, path: &Path, vmas: &[Vma]) -> Result<Option<Vma>, ImageError> {
    let vdso = vmas.iter().find(|v| v.name == "[vdso]").cloned();
    if let Some(v) = &vdso {
        let theirs = proto.read_mem(v.start, (v.end - v.start) as usize).map_err(perr(path))?;
        if own_vdso().is_none_or(|ours| ours != theirs) {
            return Err(ImageError::Prototype {
                path: path.into(),
                reason: "the prototype's vDSO differs from ours".into(),
            });
        }
    }
    Ok(vdso)
}

/// The op that moves a kernel special mapping ([vvar], [vvar_vclock],
/// [vdso]) to where it was, relative to the vDSO.
fn vdso_op(v: &Vma, vdso: &Vma) -> RestoreOp {
    RestoreOp::VdsoSpecial {
        offset: v.start.wrapping_sub(vdso.start) as i64,
        len: v.end - v.start,
        target: v.start,
        is_vdso: v.name == "[vdso]",
    }
}

/// Read every mapping but the stack and the kernel's: bytes that equal their
/// file's become references to the file (added to `files`), all-zero anonymous
/// ones nothing, the rest their bytes. Also returns the kernel mappings' ops.
fn capture(
    proto: &Prototype,
    path: &Path,
    vmas: &[Vma],
    vdso: Option<&Vma>,
    files: &mut Vec<MappedFile<Linux>>,
) -> Result<(Vec<Captured>, Vec<RestoreOp>), ImageError> {
    let mut file_index: HashMap<(u64, u64, u64), usize> = HashMap::new();
    let identity = files[0].identity;
    let dev = rustix::fs::Dev::from(identity.dev);
    file_index.insert((u64::from(rustix::fs::major(dev)), u64::from(rustix::fs::minor(dev)), identity.ino), 0);
    let mut captured = Vec::new();
    let mut ops = Vec::new();
    for v in vmas {
        match v.name.as_str() {
            "[stack]" | "[vsyscall]" => continue,
            "[vvar]" | "[vvar_vclock]" | "[vdso]" => {
                ops.extend(vdso.map(|vd| vdso_op(v, vd)));
                continue;
            }
            _ => {}
        }
        if v.prot & zygote_plan::PROT_READ == 0 {
            captured.push(Captured { vma: v.clone(), bytes: None, file: None });
            continue;
        }
        let mem = proto.read_mem(v.start, (v.end - v.start) as usize).map_err(perr(path))?;
        let file = if v.inode != 0 && v.name.starts_with('/') && !v.name.ends_with(" (deleted)") {
            same_as_file(files, &mut file_index, v, &mem)
        } else {
            None
        };
        let bytes = match file {
            Some(_) => None,
            None if mem.iter().all(|&b| b == 0) => None,
            None => Some(mem),
        };
        captured.push(Captured { vma: v.clone(), bytes, file });
    }
    Ok((captured, ops))
}

/// Words of captured bytes to rewrite: pointers into the prototype's stack
/// that classify, then the 32-bit argc copies at `argc_slots`. Also returns
/// how many stack pointers did not classify (left as they are).
fn find_fixups(captured: &[Captured], stack: Option<&StackInfo>, argc_slots: &[u64]) -> (Vec<Fixup>, usize) {
    let mut fixups = Vec::new();
    let mut unclassified = 0usize;
    if let Some(si) = stack {
        for (mapping, c) in captured.iter().enumerate() {
            let Some(bytes) = &c.bytes else { continue };
            for (w, chunk) in bytes.chunks_exact(8).enumerate() {
                let val = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                if val < si.lo || val >= si.hi {
                    continue;
                }
                match si.classify(val) {
                    Some((kind, extra)) => {
                        fixups.push(Fixup { mapping, addr: c.vma.start + 8 * w as u64, kind, extra })
                    }
                    None => unclassified += 1,
                }
            }
        }
    }
    for &addr in argc_slots {
        if let Some(mapping) =
            captured.iter().position(|c| c.bytes.is_some() && addr >= c.vma.start && addr + 4 <= c.vma.end)
        {
            fixups.push(Fixup { mapping, addr, kind: FixupKind::Argc32, extra: 0 });
        }
    }
    (fixups, unclassified)
}

/// The captured mappings as an image's regions and objects.
struct Sealed {
    objects: Vec<SealedObject>,
    regions: Vec<ImageRegion>,
    /// Protect ops that take back the write access fixups needed.
    protects: Vec<RestoreOp>,
}

/// One region per captured mapping (captured bytes sealed in an object
/// each), and the Protect ops that take back the write access fixups need.
fn seal(path: &Path, captured: &[Captured], fixups: &[Fixup]) -> Result<Sealed, ImageError> {
    let mut objects = Vec::new();
    let mut regions = Vec::new();
    let mut protects = Vec::new();
    for (i, c) in captured.iter().enumerate() {
        let v = &c.vma;
        let len = v.end - v.start;
        let needs_write = fixups.iter().any(|f| f.mapping == i);
        let prot = if needs_write { v.prot | zygote_plan::PROT_WRITE } else { v.prot };
        if needs_write && v.prot & zygote_plan::PROT_WRITE == 0 {
            protects.push(RestoreOp::Protect { addr: v.start, len, prot: v.prot });
        }
        let kind = match (&c.bytes, c.file) {
            (_, Some(f)) => RegionKind::File { file: f, offset: v.offset },
            (Some(bytes), None) => {
                let name = format!(
                    "zygote:{}:{:x}",
                    Path::new(&v.name).file_name().map_or("anon".into(), |n| n.to_string_lossy()),
                    v.start
                );
                let obj = SealedObject::create(&name, bytes).map_err(|source| ImageError::Seal {
                    path: path.to_path_buf(),
                    segment: i,
                    source: source.into(),
                })?;
                objects.push(obj);
                RegionKind::Sealed { object: objects.len() - 1, offset: 0 }
            }
            (None, None) => RegionKind::Zero,
        };
        regions.push(ImageRegion { vaddr: v.start, len, prot, kind, segment: i, relro: false });
    }
    Ok(Sealed { objects, regions, protects })
}

/// The ops that restore what start-up did besides memory: fixups, then the
/// `protects`, fs_base, the replayed set_tid_address / set_robust_list / rseq,
/// a fresh canary, the mm layout and brk (from `stat`, /proc/PID/stat).
fn restore_ops(
    regs: EntryRegs,
    syscalls: &[SyscallRecord],
    stat: &str,
    fixups: &[Fixup],
    protects: Vec<RestoreOp>,
) -> Vec<RestoreOp> {
    let mut ops: Vec<RestoreOp> =
        fixups.iter().map(|f| RestoreOp::Fixup { addr: f.addr, kind: f.kind, param: f.extra }).collect();
    ops.extend(protects);
    ops.push(RestoreOp::SetFs { fs_base: regs.fs_base });
    for s in syscalls {
        match s.nr {
            SYS_SET_TID_ADDRESS if s.args[0] != 0 => ops.push(RestoreOp::SetTidAddress { addr: s.args[0] }),
            SYS_SET_ROBUST_LIST if s.ret == 0 => ops.push(RestoreOp::RobustList { head: s.args[0], len: s.args[1] }),
            SYS_RSEQ if s.ret == 0 && s.args[2] == 0 => {
                ops.push(RestoreOp::Rseq { addr: s.args[0], len: s.args[1], flags: s.args[2], signature: s.args[3] })
            }
            _ => {}
        }
    }
    if regs.fs_base != 0 {
        ops.push(RestoreOp::Canary { addr: regs.fs_base + CANARY_OFFSET });
    }
    let start_brk = stat_field(stat, 47);
    let brk = syscalls.iter().rev().find(|s| s.nr == SYS_BRK && s.ret > 0).map_or(start_brk, |s| s.ret as u64);
    ops.push(RestoreOp::MmLayout {
        start_code: stat_field(stat, 26),
        end_code: stat_field(stat, 27),
        start_data: stat_field(stat, 45),
        end_data: stat_field(stat, 46),
    });
    ops.push(RestoreOp::MmBrk { start_brk, brk: brk.max(start_brk) });
    ops
}

/// Registers and auxv values at the entry point.
fn entry_state(proto: &Prototype, auxv: &[(u64, u64)]) -> EntryState {
    let aux = |t: u64| auxv.iter().find(|&&(k, _)| k == t).map_or(0, |&(_, v)| v);
    let _ = aux(AT_SYSINFO_EHDR);
    EntryState {
        pc: proto.regs.rip,
        rtld_fini: proto.regs.rdx,
        at_phdr: aux(AT_PHDR),
        at_phnum: aux(AT_PHNUM),
        at_phent: aux(AT_PHENT),
        at_entry: aux(AT_ENTRY),
        at_base: aux(AT_BASE),
    }
}

/// If `mem` equals the file's bytes at the mapping's offset (and the mapping
/// does not reach past the file's last page), the index of that file.
fn same_as_file(
    files: &mut Vec<MappedFile<Linux>>,
    index: &mut HashMap<(u64, u64, u64), usize>,
    v: &Vma,
    mem: &[u8],
) -> Option<usize> {
    let path = PathBuf::from(&v.name);
    let i = match index.get(&(v.dev.0, v.dev.1, v.inode)) {
        Some(&i) => i,
        None => {
            let f = std::fs::File::open(&path).ok()?;
            let fd = OwnedFd::from(f);
            let identity = crate::identity_of(&fd).ok()?;
            if identity.ino != v.inode {
                return None;
            }
            files.push(MappedFile { path, file: fd, identity });
            index.insert((v.dev.0, v.dev.1, v.inode), files.len() - 1);
            files.len() - 1
        }
    };
    let f = &files[i];
    let end = v.offset + mem.len() as u64;
    if end > f.identity.size.div_ceil(PAGE_SIZE) * PAGE_SIZE {
        return None;
    }
    let mut buf = vec![0u8; mem.len()];
    // Past the file's end the buffer keeps its zeros (the mapping's tail).
    crate::fd::pread_full(&f.file, &mut buf, v.offset).ok()?;
    (buf == mem).then_some(i)
}

/// Addresses of 32-bit words that hold argc: 1 in the main prototype (started
/// with only argv[0]) and 2 in one started with an extra argument.
fn argc_slots(
    exe: BorrowedFd<'_>,
    path: &Path,
    name: &[u8],
    env: &Environment<'_>,
    vmas: &[Vma],
    captured: &[Captured],
) -> Option<Vec<u64>> {
    let other = start(exe, &[name, b"zygote-argc-probe"], env).ok()?;
    let maps = String::from_utf8_lossy(&other.proc_file("maps").ok()?).into_owned();
    if !same_layout(vmas, &parse_maps(&maps)) {
        tracing::debug!(path = %path.display(), "argc probe had another layout; argc copies not fixed");
        return None;
    }
    let mut slots = Vec::new();
    for c in captured {
        // Every captured mapping, read-only ones included: RELRO holds
        // values written at start-up.
        let Some(bytes) = &c.bytes else { continue };
        let theirs = other.read_mem(c.vma.start, bytes.len()).ok()?;
        slots.extend(argc_words(c.vma.start, bytes, &theirs));
    }
    Some(slots)
}

/// Do two prototypes' mappings line up (the stack aside)?
fn same_layout(ours: &[Vma], theirs: &[Vma]) -> bool {
    ours.len() == theirs.len()
        && ours
            .iter()
            .zip(theirs)
            .all(|(a, b)| (a.start, a.end, &a.name) == (b.start, b.end, &b.name) || a.name == "[stack]")
}

/// Addresses of the aligned 32-bit words, in memory at `start`, that are 1 in
/// `ours` (argc = 1) and 2 in `theirs` (argc = 2).
fn argc_words(start: u64, ours: &[u8], theirs: &[u8]) -> Vec<u64> {
    let word = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or_default());
    ours.chunks_exact(4)
        .zip(theirs.chunks_exact(4))
        .enumerate()
        .filter(|(_, (a, b))| word(a) == 1 && word(b) == 2)
        .map(|(i, _)| start + 4 * i as u64)
        .collect()
}

/// The refusal as an image error (for callers that do not fall back).
impl From<Refusal> for ImageError {
    fn from(r: Refusal) -> Self {
        ImageError::Prototype { path: r.path, reason: r.reason }
    }
}

/// Is this program dynamically linked (has PT_INTERP)?
pub fn interpreter(data: &[u8]) -> Option<OsString> {
    use object::read::elf::{FileHeader as _, ProgramHeader as _};
    let e = object::LittleEndian;
    let (ehdr, _) = object::pod::from_bytes::<object::elf::FileHeader64<object::LittleEndian>>(data).ok()?;
    let phdrs = ehdr.program_headers(e, data).ok()?;
    let ph = phdrs.iter().find(|p| p.p_type(e) == object::elf::PT_INTERP)?;
    let raw = ph.data(e, data).ok()?;
    let s = raw.split(|&b| b == 0).next().unwrap_or(raw);
    Some(OsString::from(String::from_utf8_lossy(s).into_owned()))
}

/// Does the loader expand `$ORIGIN` for this program: does its dynamic
/// string table (where DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_AUDIT... point)
/// name `$ORIGIN` or `${ORIGIN}`? A program whose table cannot be found is
/// searched whole (a false yes costs only an image per directory).
pub fn uses_origin(data: &[u8]) -> bool {
    names_origin(dynamic_strings(data).unwrap_or(data))
}

/// Does the loader environment expand `$ORIGIN` (in `LD_LIBRARY_PATH`,
/// `LD_PRELOAD`, `LD_AUDIT`: the main program's directory, as in its own
/// search path)?
pub fn env_uses_origin(env: &Environment<'_>) -> bool {
    env.loader_env.iter().any(|kv| names_origin(kv))
}

fn names_origin(b: &[u8]) -> bool {
    (0..b.len()).filter(|&i| b[i] == b'$').any(|i| b[i..].starts_with(b"$ORIGIN") || b[i..].starts_with(b"${ORIGIN}"))
}

/// The dynamic string table (DT_STRTAB, DT_STRSZ) in the file's bytes.
fn dynamic_strings(data: &[u8]) -> Option<&[u8]> {
    use object::read::elf::{Dyn as _, FileHeader as _, ProgramHeader as _};
    let e = object::LittleEndian;
    let (ehdr, _) = object::pod::from_bytes::<object::elf::FileHeader64<object::LittleEndian>>(data).ok()?;
    let phdrs = ehdr.program_headers(e, data).ok()?;
    let dynamic = phdrs.iter().find_map(|p| p.dynamic(e, data).ok().flatten())?;
    let value = |tag| dynamic.iter().find(|d| d.tag32(e) == Some(tag)).map(|d| d.d_val(e));
    let (addr, size) = (value(object::elf::DT_STRTAB)?, value(object::elf::DT_STRSZ)?);
    phdrs
        .iter()
        .filter(|p| p.p_type(e) == object::elf::PT_LOAD)
        .find_map(|p| p.data_range(e, data, addr, size).ok().flatten())
}

/// The directory `$ORIGIN` stands for in a prototype of the program `file`
/// (opened as `path`): the loader reads `/proc/self/exe`, the path of the
/// file the prototype execs, and keeps what comes before its last `/`. That
/// is the path of `file` itself (symbolic links resolved, in this process's
/// root), so it is read from `/proc/self/fd`; without the fd, from the
/// resolved `path`. Empty when that fails (without `/proc` the loader
/// cannot expand `$ORIGIN` either; a path that does not resolve does not
/// open).
pub fn origin_dir(path: &Path, file: Option<BorrowedFd<'_>>) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    let full = match file {
        Some(fd) => std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())),
        None => std::fs::canonicalize(path),
    };
    let Ok(full) = full else { return Vec::new() };
    let full = full.as_os_str().as_bytes();
    match full.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/".to_vec(),
        Some(i) => full[..i].to_vec(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
