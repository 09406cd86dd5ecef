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

use zygote_plan::{FixupKind, Op, OpKind};

use crate::SealedObject;
use crate::ptrace::{Prototype, PtraceError};
use crate::{Image, Linux};
use zygote_core::elf::{PAGE_SIZE, ProgramKind};
use zygote_core::image::{
    ContentHash, EntryState, FileIdentity, ImageError, ImageKey, ImageParts, ImageRegion, MappedFile, RegionKind,
    RelocSummary,
};

/// Loader-relevant environment: these change what the dynamic linker does,
/// so they are part of the image key and passed to the prototype.
/// Besides `LD_*` and `GLIBC_TUNABLES`, glibc's start-up reads the legacy
/// `MALLOC_*_` settings (MALLOC_CHECK_, MALLOC_PERTURB_, MALLOC_TOP_PAD_,
/// MALLOC_MMAP_THRESHOLD_, MALLOC_ARENA_MAX, ...) before the entry point.
pub fn is_loader_env(kv: &[u8]) -> bool {
    kv.starts_with(b"LD_") || kv.starts_with(b"GLIBC_TUNABLES=") || kv.starts_with(b"MALLOC_")
}

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

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Vma {
    start: u64,
    end: u64,
    prot: u32,
    shared: bool,
    offset: u64,
    dev: (u64, u64),
    inode: u64,
    name: String,
}

fn parse_maps(text: &str) -> Vec<Vma> {
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
fn stat_field(stat: &str, n: usize) -> u64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // Field 3 (state) is the first after ")".
    rest.split_whitespace().nth(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0)
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
    pub creds: Option<(u32, u32, &'a [u32])>,
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
        for c in auxv.chunks_exact(16) {
            let t = u64::from_ne_bytes(c[..8].try_into().unwrap_or_default());
            if t == AT_HWCAP || t == AT_HWCAP2 {
                h.update(&c[8..]);
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
/// where it is decides `$ORIGIN` and which files the image maps), the loader
/// environment, the machine fingerprint, the credentials, the preparer version.
pub fn key(content: ContentHash, file: (u64, u64), env: &Environment<'_>, machine: &[u8; 32]) -> ImageKey {
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
    // An image captured as one user is that user's: what its start-up could
    // read and do is not everyone's.
    if let Some((uid, gid, groups)) = env.creds {
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

/// Prepare a dynamically linked program. `Ok(Err(refusal))`: it cannot be
/// snapshotted faithfully and must run by plain exec.
pub fn prepare(
    path: &Path,
    file: OwnedFd,
    identity: FileIdentity,
    key: ImageKey,
    env: &Environment<'_>,
    started: Instant,
) -> Result<Result<Image, Refusal>, ImageError> {
    let name = path.as_os_str().as_bytes();
    let proto = start(file.as_fd(), &[name], env).map_err(perr(path))?;
    if let Err(r) = check_restorable(&proto, path) {
        return Ok(Err(r));
    }
    let pid = proto.pid;
    let maps_text = String::from_utf8_lossy(&proto.proc_file("maps").map_err(perr(path))?).into_owned();
    let vmas = parse_maps(&maps_text);
    if let Some(v) = vmas.iter().find(|v| v.shared) {
        return Ok(Err(Refusal { path: path.into(), reason: format!("shared mapping {}", v.name) }));
    }
    let auxv = proto.auxv().map_err(perr(path))?;
    let aux = |t: u64| auxv.iter().find(|&&(k, _)| k == t).map_or(0, |&(_, v)| v);

    // The stack, for the pointer scan.
    let stack = vmas.iter().find(|v| v.name == "[stack]").cloned();
    let regs = proto.regs;
    let word = |addr: u64| -> Result<u64, ImageError> {
        let b = proto.read_mem(addr, 8).map_err(perr(path))?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    let argc = word(regs.rsp)?;
    let argv = regs.rsp + 8;
    let envp = argv + 8 * (argc + 1);
    let mut p = envp;
    while word(p)? != 0 {
        p += 8;
    }
    let auxv_addr = p + 8;
    let argv0 = word(argv)?;
    let argv0_base = argv0 + name.iter().rposition(|&c| c == b'/').map_or(0, |i| i as u64 + 1);
    let stack_info = stack.as_ref().map(|s| StackInfo {
        lo: s.start,
        hi: s.end,
        sp: regs.rsp,
        argv,
        envp,
        auxv: auxv_addr,
        argv0,
        argv0_base,
        auxvals: auxv.clone(),
    });

    // The vDSO must be the one this kernel gives everyone.
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

    // Capture every mapping.
    let mut files: Vec<MappedFile<Linux>> = vec![MappedFile { path: path.to_path_buf(), file, identity }];
    let mut file_index: HashMap<(u64, u64, u64), usize> = HashMap::new();
    let dev = rustix::fs::Dev::from(identity.dev);
    file_index.insert((u64::from(rustix::fs::major(dev)), u64::from(rustix::fs::minor(dev)), identity.ino), 0);
    let mut captured = Vec::new();
    let mut ops = Vec::new();
    for v in &vmas {
        let len = (v.end - v.start) as usize;
        match v.name.as_str() {
            "[stack]" | "[vsyscall]" => continue,
            "[vvar]" | "[vvar_vclock]" | "[vdso]" => {
                if let Some(vd) = &vdso {
                    ops.push(Op {
                        kind: OpKind::VdsoSpecial as u32,
                        arg: u32::from(v.name == "[vdso]"),
                        a: v.start.wrapping_sub(vd.start),
                        b: v.end - v.start,
                        c: v.start,
                        d: 0,
                    });
                }
                continue;
            }
            _ => {}
        }
        if v.prot & zygote_plan::PROT_READ == 0 {
            captured.push(Captured { vma: v.clone(), bytes: None, file: None });
            continue;
        }
        let mem = proto.read_mem(v.start, len).map_err(perr(path))?;
        let file = if v.inode != 0 && v.name.starts_with('/') && !v.name.ends_with(" (deleted)") {
            same_as_file(&mut files, &mut file_index, v, &mem)
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

    // argc copies: diff against a prototype with one more argument (same
    // layout: both run without address randomisation).
    let argc_slots = argc_slots(files[0].file.as_fd(), path, name, env, &vmas, &captured).unwrap_or_default();

    // Fixups in captured (sealed) bytes.
    let mut fixups: Vec<(usize, u64, FixupKind, u64)> = Vec::new();
    let mut unclassified = 0usize;
    if let Some(si) = &stack_info {
        for (i, c) in captured.iter().enumerate() {
            let Some(bytes) = &c.bytes else { continue };
            for (w, chunk) in bytes.chunks_exact(8).enumerate() {
                let val = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                if val < si.lo || val >= si.hi {
                    continue;
                }
                match si.classify(val) {
                    Some((k, extra)) => fixups.push((i, c.vma.start + 8 * w as u64, k, extra)),
                    None => unclassified += 1,
                }
            }
        }
    }
    if unclassified > 0 {
        tracing::debug!(path = %path.display(), unclassified, "stack pointers left as they are (dead values)");
    }
    for &addr in &argc_slots {
        if let Some(i) = captured.iter().position(|c| c.bytes.is_some() && addr >= c.vma.start && addr + 4 <= c.vma.end)
        {
            fixups.push((i, addr, FixupKind::Argc32, 0));
        }
    }

    // Regions and objects.
    let mut objects = Vec::new();
    let mut regions = Vec::new();
    let mut protects = Vec::new();
    for (i, c) in captured.iter().enumerate() {
        let v = &c.vma;
        let len = v.end - v.start;
        let needs_write = fixups.iter().any(|f| f.0 == i);
        let prot = if needs_write { v.prot | zygote_plan::PROT_WRITE } else { v.prot };
        if needs_write && v.prot & zygote_plan::PROT_WRITE == 0 {
            protects.push(Op { kind: OpKind::Protect as u32, arg: 0, a: v.start, b: len, c: u64::from(v.prot), d: 0 });
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
    for (_, addr, k, extra) in &fixups {
        ops.push(Op { kind: OpKind::Fixup as u32, arg: *k as u32, a: *addr, b: *extra, c: 0, d: 0 });
    }
    ops.extend(protects);
    ops.push(Op { kind: OpKind::SetFs as u32, a: regs.fs_base, ..Op::default() });
    for s in &proto.syscalls {
        match s.nr {
            SYS_SET_TID_ADDRESS if s.args[0] != 0 => {
                ops.push(Op { kind: OpKind::SetTidAddress as u32, a: s.args[0], ..Op::default() })
            }
            SYS_SET_ROBUST_LIST if s.ret == 0 => {
                ops.push(Op { kind: OpKind::RobustList as u32, a: s.args[0], b: s.args[1], ..Op::default() })
            }
            SYS_RSEQ if s.ret == 0 && s.args[2] == 0 => ops.push(Op {
                kind: OpKind::Rseq as u32,
                a: s.args[0],
                b: s.args[1],
                c: s.args[2],
                d: s.args[3],
                ..Op::default()
            }),
            _ => {}
        }
    }
    if regs.fs_base != 0 {
        ops.push(Op { kind: OpKind::Canary as u32, a: regs.fs_base + CANARY_OFFSET, ..Op::default() });
    }
    let stat = String::from_utf8_lossy(&proto.proc_file("stat").map_err(perr(path))?).into_owned();
    let start_brk = stat_field(&stat, 47);
    let brk = proto.syscalls.iter().rev().find(|s| s.nr == SYS_BRK && s.ret > 0).map_or(start_brk, |s| s.ret as u64);
    ops.push(Op {
        kind: OpKind::MmLayout as u32,
        arg: 0,
        a: stat_field(&stat, 26),
        b: stat_field(&stat, 27),
        c: stat_field(&stat, 45),
        d: stat_field(&stat, 46),
    });
    ops.push(Op { kind: OpKind::MmBrk as u32, a: start_brk, b: brk.max(start_brk), ..Op::default() });

    let entry = EntryState {
        pc: regs.rip,
        rtld_fini: regs.rdx,
        at_phdr: aux(AT_PHDR),
        at_phnum: aux(AT_PHNUM),
        at_phent: aux(AT_PHENT),
        at_entry: aux(AT_ENTRY),
        at_base: aux(AT_BASE),
    };
    let _ = aux(AT_SYSINFO_EHDR);
    tracing::debug!(pid, regions = regions.len(), objects = objects.len(), fixups = fixups.len(), "prototype captured");
    drop(proto);
    Ok(Ok(Image::new(ImageParts {
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
    })))
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
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::pread(&f.file, &mut buf[n..], v.offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
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
    let vmas2 = parse_maps(&maps);
    let same_layout = vmas.len() == vmas2.len()
        && vmas
            .iter()
            .zip(&vmas2)
            .all(|(a, b)| (a.start, a.end, &a.name) == (b.start, b.end, &b.name) || a.name == "[stack]");
    if !same_layout {
        tracing::debug!(path = %path.display(), "argc probe had another layout; argc copies not fixed");
        return None;
    }
    let mut slots = Vec::new();
    for c in captured {
        // Every captured mapping, read-only ones included: RELRO holds
        // values written at start-up.
        let Some(bytes) = &c.bytes else { continue };
        let theirs = other.read_mem(c.vma.start, bytes.len()).ok()?;
        for (i, (a, b)) in bytes.chunks_exact(4).zip(theirs.chunks_exact(4)).enumerate() {
            if u32::from_le_bytes(a.try_into().unwrap_or_default()) == 1
                && u32::from_le_bytes(b.try_into().unwrap_or_default()) == 2
            {
                slots.push(c.vma.start + 4 * i as u64);
            }
        }
    }
    Some(slots)
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
