//! The thin exec client (`zygote-exec`). The caller starts it with execve
//! like any program; it asks the daemon for the image of the program it was
//! run for, maps that image into itself and jumps to the program's entry. So
//! the program is the process the caller started: its parent, pid, process
//! group, session, terminal, cgroup, namespaces, limits, credentials and
//! signal state are what execve gives it. Whenever the image is not served
//! (no daemon, a slow one, a refusal, a cache miss, any failure before the
//! jump) it execs the program itself, with the same argv and environment:
//! nothing it did before the jump outlives an exec.
//!
//! Invocations (docs/ARCHITECTURE.md, "Caller-side spawning"):
//! - `zygote-exec PROGRAM [ARGS...]`: PROGRAM found as execvp finds it; the
//!   program's argv is `PROGRAM ARGS...`.
//! - `zygote-exec -p PATH ARGV0 [ARGS...]`: the file PATH (no search), with
//!   argv `ARGV0 ARGS...` (what the client library and `zygote spawn` use).
//! - through a link with another name (`gcc -> zygote-exec`, masquerade):
//!   the program of that name on PATH after every entry that is this client
//!   itself, as ccache does; argv unchanged.

mod daemon;
mod resolve;

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use zygote_plan::image::ImageReply;
use zygote_plan::{Plan, Stage};

use crate::{Stack, fail, map_image, patch_auxv, restore, set_name, sys};
use resolve::CPath;

/// The client's own file name: invoked as this, it takes the program from
/// its first argument.
pub const CLIENT_NAME: &[u8] = CLIENT_NAME_Z.to_bytes();
const CLIENT_NAME_Z: &core::ffi::CStr = c"zygote-exec";
/// Exit status when the program cannot be found (as a shell's).
const NOT_FOUND: i32 = 127;
/// Exit status when it is found but cannot be executed.
const CANNOT_EXECUTE: i32 = 126;

// The exec the client falls back to (set once argv is final): pointers into
// the initial stack and `client_main`'s frame, which never returns.
static FALLBACK_PATH: AtomicUsize = AtomicUsize::new(0);
static FALLBACK_ARGV: AtomicUsize = AtomicUsize::new(0);
static FALLBACK_ENVP: AtomicUsize = AtomicUsize::new(0);
/// `ZYGOTE_EXEC_DEBUG` is set: say on stderr why the program is exec'd.
static DEBUG: AtomicBool = AtomicBool::new(false);
/// How many times this client was started again for a placement collision.
static AGAIN: AtomicUsize = AtomicUsize::new(0);
/// At most this many new starts for placement collisions.
const MAX_AGAIN: usize = 2;

/// Did mapping fail because a place the image needs is taken by this
/// client's own stack or mappings (laid out at random by the kernel, while
/// the image's layout is fixed): EEXIST from a region or the vDSO?
fn collided(stage: u32, errno: i32) -> bool {
    const EEXIST: i32 = 17;
    errno == EEXIST && (stage == Stage::Map as u32 || stage == Stage::Vdso as u32)
}

/// The thin client's entry (called by `_start` only).
///
/// # Safety
/// `sp` must be the kernel's initial stack pointer (&argc) of this exec.
pub unsafe extern "C" fn client_main(sp: *mut u64) -> ! {
    // SAFETY: `sp` is the initial stack pointer the kernel gave _start.
    let stack = unsafe { Stack::from_sp(sp) };
    let argv0 = arg(&stack, 0).unwrap_or_default();
    let own = basename(argv0) == CLIENT_NAME;
    let mut path = CPath::new();
    // `--again N` (first, from `retry_placement` only): the Nth start.
    let o = match (arg(&stack, 1), arg(&stack, 2)) {
        (Some(b"--again"), Some(&[n])) if own && n.is_ascii_digit() => {
            AGAIN.store(usize::from(n - b'0'), Ordering::Relaxed);
            2
        }
        _ => 0,
    };
    // The program's argv starts at argument `from` of ours (after our own).
    let (name, exact, skip_self, from) = if own {
        match arg(&stack, o + 1) {
            Some(b"--help" | b"-h") => usage(0),
            // `-p PATH ARGV0 ARGS...`: run PATH (as execve, no search) with
            // the argv that follows (as `exec -a` in a shell).
            Some(b"-p") => match (arg(&stack, o + 2), arg(&stack, o + 3)) {
                (Some(file), Some(_)) if !file.is_empty() => (file, true, None, o + 3),
                _ => usage(2),
            },
            Some(name) if !name.is_empty() => (name, false, None, o + 1),
            _ => usage(2),
        }
    } else {
        let name = basename(argv0);
        (name, false, Some(resolve::Skip::new(caller_dir(&stack, name))), 0)
    };
    let env = Env(stack.envp());
    DEBUG.store(env.get(b"ZYGOTE_EXEC_DEBUG").is_some_and(|v| !v.is_empty() && v != b"0"), Ordering::Relaxed);
    let found = if exact {
        resolve::exact(name, &mut path)
    } else {
        resolve::find(name, env.get(b"PATH"), skip_self, &mut path)
    };
    if let Err(errno) = found {
        not_found(name, errno, !own);
    }
    // Ask now: the daemon answers while the stack is rebuilt.
    let sent = daemon::send(&env, &path);
    // The program's stack: argv as decided (in masquerade, argv[0] becomes
    // the path the program was found at, as ccache runs compilers, so that a
    // program looking for itself through argv[0] and PATH finds itself, not
    // the link) and AT_EXECFN the path execve would have been given. It is
    // built below this frame (its strings gathered in `scratch` first), and
    // the client goes on beneath it.
    let mut scratch = [0u8; 8192];
    let (new, below) = if own {
        rebuild(&stack, &env, None, from, path.as_bytes(), &mut scratch)
    } else {
        rebuild(&stack, &env, Some(path.as_bytes()), 1, path.as_bytes(), &mut scratch)
    };
    let mut go = Continue { stack: new, path: &path, sent };
    // SAFETY: `below` is 16-byte aligned, beneath the new initial stack and
    // beneath nothing live (this frame, with `go` and `path`, is above it and
    // never returns); `continue_main` takes `&mut Continue` in rdi (`go`,
    // used by nothing else from here) and never returns.
    unsafe {
        core::arch::asm!(
            "mov rsp, {sp}",
            "call {f}",
            "ud2",
            sp = in(reg) below,
            f = sym continue_main,
            in("rdi") &mut go as *mut Continue,
            options(noreturn),
        );
    }
}

/// The directory of the path the caller exec'd (AT_EXECFN), when that
/// path's file name is `name`: the PATH entry through which it found this
/// client (a shell puts the path it found there), so a masquerade search
/// can pass over it without a system call.
fn caller_dir<'a>(stack: &Stack, name: &[u8]) -> Option<&'a [u8]> {
    let p = crate::restore::auxval(stack, crate::AT_EXECFN);
    if p == 0 {
        return None;
    }
    // SAFETY: AT_EXECFN points at the NUL-terminated path on the initial
    // stack, which stays in place.
    let execfn = unsafe { cstr(p as *const u8) };
    let slash = execfn.iter().rposition(|&c| c == b'/')?;
    (&execfn[slash + 1..] == name).then_some(&execfn[..slash])
}

/// What the client goes on with once its argv is final.
struct Continue<'a> {
    stack: Stack,
    path: &'a CPath,
    sent: Result<daemon::Pending, &'static str>,
}

/// Take the image and become the program, or exec it.
extern "C" fn continue_main(go: &mut Continue<'_>) -> ! {
    let (stack, path) = (&go.stack, go.path);
    FALLBACK_PATH.store(path.as_ptr() as usize, Ordering::Relaxed);
    FALLBACK_ARGV.store(stack.argv() as usize, Ordering::Relaxed);
    FALLBACK_ENVP.store(stack.envp() as usize, Ordering::Relaxed);
    // From here on every failure execs the program. Most replies fit here
    // (this frame lives until the jump).
    let mut reply = [0u8; 8192];
    let sent = core::mem::replace(&mut go.sent, Err(""));
    match sent.and_then(|p| p.receive(&mut reply)) {
        Ok(served) => become_program(served, stack),
        Err(why) => fall_back(why),
    }
}

/// The program's initial stack, built below this frame (see
/// `prestart::build_stack`): argv `argv0` (if given) then our arguments from
/// `from` on, our environment, AT_EXECFN `execfn`. The strings are gathered
/// in `scratch` (a caller's frame, above the new stack) when they fit, else
/// in a mapping. The new stack and where to go on.
fn rebuild(
    stack: &Stack,
    env: &Env,
    argv0: Option<&[u8]>,
    from: usize,
    execfn: &[u8],
    scratch: &mut [u8],
) -> (Stack, usize) {
    let first = usize::from(argv0.is_some());
    let args = (from..stack.argc()).filter_map(|i| arg(stack, i));
    let argv0 = argv0.unwrap_or_default();
    let len = (argv0.len() + 1) * first + args.clone().chain(env.entries()).map(|a| a.len() + 1).sum::<usize>();
    let mut block = match sys::Block::new(scratch, len, 0) {
        Ok(b) => b,
        Err(errno) => {
            say(&[b"no memory for the arguments: ", errno_text(errno)]);
            sys::exit_group(CANNOT_EXECUTE);
        }
    };
    let block = block.bytes();
    let (mut n, mut envc) = (0, 0);
    let mut put = |s: &[u8]| {
        block[n..n + s.len()].copy_from_slice(s);
        block[n + s.len()] = 0;
        n += s.len() + 1;
    };
    if first == 1 {
        put(argv0);
    }
    args.for_each(&mut put);
    env.entries().for_each(|e| {
        envc += 1;
        put(e)
    });
    let argc = first + stack.argc().saturating_sub(from);
    // The block is copied onto the new stack; nothing points into it after.
    crate::prestart::build_stack(stack, block, argc, envc, Some(execfn), -1)
}

/// Map the served image, make this process the program's, jump.
fn become_program(served: daemon::Served<'_>, stack: &Stack) -> ! {
    let plan = match Plan::parse(served.plan_bytes()) {
        Ok(p) => p,
        Err(_) => fall_back("the daemon's plan does not parse"),
    };
    let h = plan.header;
    if h.fd_count != 0 {
        fall_back("the daemon's plan moves fds");
    }
    let (program, attached) = (served.program, served.attached());
    let local = |fd| ImageReply::local_fd(fd, program, attached).unwrap_or(-1);
    // SAFETY: the daemon built the plan for this process's kernel and image
    // (its regions avoid this executable's image; a collision with the stack
    // or vDSO fails with EEXIST and falls back), and nothing of ours lives
    // in the places its ops write.
    unsafe { map_image(&plan, stack, -1, local) };
    patch_auxv(&h, stack, -1, true);
    let mm = restore::mm_map(&plan, stack);
    if let Some(m) = &mm {
        let r = restore::set_mm(m);
        if r < 0 {
            fail(-1, Stage::Op, 0, -r as i32, 0, m.start_brk);
        }
    }
    set_name(&plan);
    let (entry, rtld_fini) = (h.entry, h.rtld_fini);
    let exe = if served.set_exe && h.exe_fd >= 0 && mm.is_some() { program } else { -1 };
    // The plan is dead from here: the reply goes with `served`.
    served.release(exe);
    FALLBACK_PATH.store(0, Ordering::Relaxed);
    // SAFETY: `map_image` mapped the program's image with its entry at
    // `entry`, and `stack` is its initial stack; `m` describes this process
    // and `exe` is the open program file. Nothing of ours is used after.
    unsafe {
        if let (Some(m), true) = (mm, exe >= 0) {
            crate::set_exe_and_jump(m, exe, entry, stack.sp(), rtld_fini);
        }
        crate::jump(entry, stack.sp(), rtld_fini)
    }
}

/// Called by every failure report: exec the program when the client has one
/// (returns when it has not: then the failure is reported as the stub's).
pub(crate) fn fall_back_if_armed(stage: u32, errno: i32) {
    if FALLBACK_PATH.load(Ordering::Relaxed) != 0 {
        if collided(stage, errno) {
            retry_placement();
        }
        if DEBUG.load(Ordering::Relaxed) {
            let mut line = *b"zygote-exec: mapping the image failed at stage 00, errno 000\n";
            put_dec(&mut line[47..49], stage);
            put_dec(&mut line[57..60], errno.unsigned_abs());
            sys::write_all(2, &line);
        }
        fall_back("");
    }
}

/// Start this client again (`/proc/self/exe --again N -p PATH ARGV...`),
/// with a new random layout of its own, when an image region collided with
/// it; at most [`MAX_AGAIN`] times. Returns when it cannot.
fn retry_placement() {
    let again = AGAIN.load(Ordering::Relaxed);
    if again >= MAX_AGAIN {
        return;
    }
    let path = FALLBACK_PATH.load(Ordering::Relaxed);
    let argv = FALLBACK_ARGV.load(Ordering::Relaxed) as *const usize;
    // SAFETY: argv is the NULL-terminated array of the program's stack.
    let argc = (0..).take_while(|&i| unsafe { *argv.add(i) } != 0).count();
    let len = (argc + 6) * 8;
    let buf = sys::mmap_anon(len);
    if buf < 0 {
        return;
    }
    let count = [b'1' + again as u8, 0];
    let head = [CLIENT_NAME_Z.as_ptr() as usize, c"--again".as_ptr() as usize, count.as_ptr() as usize];
    // SAFETY: a fresh mapping of `argc + 6` words, ours alone; the new argv:
    // the head, `-p PATH`, the program's argv and its NULL.
    let new = unsafe { core::slice::from_raw_parts_mut(buf as *mut usize, argc + 6) };
    new[..3].copy_from_slice(&head);
    new[3..5].copy_from_slice(&[c"-p".as_ptr() as usize, path]);
    // SAFETY: as above, argc pointers (and the NULL after them).
    new[5..].copy_from_slice(unsafe { core::slice::from_raw_parts(argv, argc + 1) });
    if DEBUG.load(Ordering::Relaxed) {
        say(&[b"the image collided with the client's own layout; starting again"]);
    }
    let envp = FALLBACK_ENVP.load(Ordering::Relaxed);
    // SAFETY: NUL-terminated strings and NULL-terminated arrays that stay
    // in place; execve returns only on failure.
    unsafe { sys::syscall3(sys::SYS_EXECVE, c"/proc/self/exe".as_ptr() as usize, buf as usize, envp) };
    // SAFETY: the array made above, unused now.
    unsafe { sys::munmap(buf as usize, len) };
}

/// Exec the program (the image was not served, or mapping it failed).
fn fall_back(why: &str) -> ! {
    let path = FALLBACK_PATH.load(Ordering::Relaxed);
    if DEBUG.load(Ordering::Relaxed) && !why.is_empty() {
        say(&[b"exec instead: ", why.as_bytes()]);
    }
    let (argv, envp) = (FALLBACK_ARGV.load(Ordering::Relaxed), FALLBACK_ENVP.load(Ordering::Relaxed));
    // SAFETY: `path` is the NUL-terminated resolved path in `client_main`'s
    // frame (it never returns); argv and envp are the NULL-terminated arrays
    // of the initial stack. execve returns only on failure.
    let r = unsafe { sys::syscall3(sys::SYS_EXECVE, path, argv, envp) };
    // SAFETY: as above, a NUL-terminated string.
    let p = unsafe { core::slice::from_raw_parts(path as *const u8, restore::cstrlen(path as *const u8)) };
    let errno = (-r) as i32;
    say(&[p, b": ", errno_text(errno)]);
    sys::exit_group(if errno == 2 { NOT_FOUND } else { CANNOT_EXECUTE })
}

fn not_found(name: &[u8], errno: i32, masquerade: bool) -> ! {
    if masquerade {
        say(&[name, b": not found on PATH (after the entries that are zygote-exec itself)"]);
    } else {
        say(&[name, b": ", errno_text(errno)]);
    }
    sys::exit_group(if errno == 13 { CANNOT_EXECUTE } else { NOT_FOUND })
}

fn usage(code: i32) -> ! {
    let text: &[u8] = b"usage: zygote-exec PROGRAM [ARGS...]\n       zygote-exec -p PATH ARGV0 [ARGS...]\n\n\
        Runs PROGRAM (found as execvp finds it) from the zygote daemon's cached image, as this\n\
        process, or execs it when the daemon does not serve the image. With -p: the file PATH,\n\
        with the argv ARGV0 ARGS. Invoked through a link of another name (zygote install-links):\n\
        the program of that name found on PATH after the entries that are this client.\n\n\
        ZYGOTE_SOCKET overrides the daemon's socket; ZYGOTE_EXEC_DEBUG=1 says on stderr why a\n\
        program is exec'd instead.\n";
    sys::write_all(if code == 0 { 1 } else { 2 }, text);
    sys::exit_group(code)
}

/// One stderr line: `zygote-exec: ` and the parts.
fn say(parts: &[&[u8]]) {
    let mut line = [0u8; 512];
    let mut n = 0;
    for p in [&b"zygote-exec: "[..]].iter().chain(parts).chain([&b"\n"[..]].iter()) {
        let take = p.len().min(line.len() - 1 - n);
        line[n..n + take].copy_from_slice(&p[..take]);
        n += take;
    }
    if line[n - 1] != b'\n' {
        line[n] = b'\n';
        n += 1;
    }
    sys::write_all(2, &line[..n]);
}

fn errno_text(errno: i32) -> &'static [u8] {
    match errno {
        2 => b"No such file or directory",
        8 => b"Exec format error",
        13 => b"Permission denied",
        20 => b"Not a directory",
        26 => b"Text file busy",
        36 => b"File name too long",
        40 => b"Too many levels of symbolic links",
        _ => b"cannot execute",
    }
}

fn put_dec(out: &mut [u8], mut v: u32) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Argument `i` of the initial stack, without its NUL.
fn arg(stack: &Stack, i: usize) -> Option<&'static [u8]> {
    if i >= stack.argc() {
        return None;
    }
    // SAFETY: by the Stack invariant argv has argc NUL-terminated strings,
    // which stay in place (the program gets them unchanged).
    unsafe { Some(cstr(*stack.argv().add(i) as *const u8)) }
}

/// # Safety
/// `p` points at a NUL-terminated string that stays unchanged while used.
unsafe fn cstr(p: *const u8) -> &'static [u8] {
    // SAFETY: the caller's contract.
    unsafe { core::slice::from_raw_parts(p, restore::cstrlen(p)) }
}

fn basename(path: &[u8]) -> &[u8] {
    path.rsplit(|&c| c == b'/').next().unwrap_or(path)
}

/// The environment on the initial stack.
pub(crate) struct Env(*mut u64);

impl Env {
    /// The value of `name`, if set.
    pub(crate) fn get(&self, name: &[u8]) -> Option<&'static [u8]> {
        self.entries().find_map(|kv| kv.strip_prefix(name).and_then(|rest| rest.strip_prefix(b"=")))
    }

    /// Every `KEY=VALUE` entry.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &'static [u8]> + '_ {
        let mut i = 0;
        core::iter::from_fn(move || {
            // SAFETY: envp is a NULL-terminated array of NUL-terminated
            // strings on the initial stack (the Stack invariant).
            let p = unsafe { *self.0.add(i) };
            if p == 0 {
                return None;
            }
            i += 1;
            // SAFETY: as above.
            Some(unsafe { cstr(p as *const u8) })
        })
    }
}
