//! The initial process stack, behind constructors that promise its layout.

/// The initial stack the program starts on (the kernel's, or one a
/// pre-started launcher built).
///
/// Invariant (promised by the `unsafe` constructors): `sp` points at
/// `argc`, followed by `argc` argv pointers and a NULL (at `argv`), envp
/// pointers and a NULL (at `envp`), then the `AT_NULL`-terminated auxv
/// pairs (at `auxv`); every argv and envp pointer points at a
/// NUL-terminated string, and all of it is readable and writable memory
/// that no Rust reference covers and that stays mapped while the `Stack` is
/// used. The safe code that reads or rewrites it relies on this.
pub struct Stack {
    sp: *mut u64,
    argc: usize,
    argv: *mut u64,
    envp: *mut u64,
    auxv: *mut u64,
}

impl Stack {
    /// The stack the kernel built for this exec.
    ///
    /// # Safety
    /// `sp` must be the initial stack pointer of this exec (what the kernel
    /// gave `_start`), so the layout above is there.
    pub unsafe fn from_sp(sp: *mut u64) -> Self {
        // SAFETY: argc, then argc argv pointers and a NULL, envp pointers and a
        // NULL, then the auxv, all readable and writable stack memory.
        unsafe {
            let argc = *sp as usize;
            let argv = sp.add(1);
            let envp = argv.add(argc + 1);
            let mut p = envp;
            while *p != 0 {
                p = p.add(1);
            }
            Stack { sp, argc, argv, envp, auxv: p.add(1) }
        }
    }

    /// A stack built by hand.
    ///
    /// # Safety
    /// The pointers must describe a stack with the layout of the type's
    /// invariant: `*sp == argc`, `argv == sp + 1`, `envp == argv + argc + 1`
    /// and `auxv` just past envp's NULL, with the strings and pairs there,
    /// in writable memory that stays mapped while the `Stack` is used.
    pub unsafe fn new(sp: *mut u64, argc: usize, argv: *mut u64, envp: *mut u64, auxv: *mut u64) -> Self {
        Stack { sp, argc, argv, envp, auxv }
    }

    /// The initial stack pointer (`&argc`).
    pub fn sp(&self) -> *mut u64 {
        self.sp
    }
    pub fn argc(&self) -> usize {
        self.argc
    }
    /// `argc` string pointers, then NULL.
    pub fn argv(&self) -> *mut u64 {
        self.argv
    }
    /// String pointers, then NULL.
    pub fn envp(&self) -> *mut u64 {
        self.envp
    }
    /// `(type, value)` pairs up to `AT_NULL`.
    pub fn auxv(&self) -> *mut u64 {
        self.auxv
    }

    pub fn argv0(&self) -> u64 {
        // SAFETY: by the invariant argv has argc readable entries.
        if self.argc > 0 { unsafe { *self.argv } } else { 0 }
    }
}
