//! Starting a process from an image, in two steps as
//! `fuchsia.process.Launcher` has them (CreateWithoutStarting, then the
//! caller's `zx_process_start`): [`Launcher::create`] makes the process in
//! the job it is given, `zx_process_create`, the image's VMAR allocated at the
//! image's address, every region mapped as `zygote_core::vmar::plan` says,
//! the vDSO, a stack, the initial thread, the processargs bootstrap
//! message(s); [`Launcher::start`] is `zx_process_start`;
//! [`Launcher::launch`] does both in a child job that may not create
//! processes itself. The sealed VMOs are never written;
//! what a process writes lands in its own copy-on-write children.

use std::cell::RefCell;
use std::sync::Arc;

use zygote_core::elf::{ElfError, ProgramKind, decode_as_is, page_down, page_up};
use zygote_core::kernel::Starter;
use zygote_core::vmar::{self, MapStep, Perms, PlanError, Relro, Source};

use crate::kernel::{Zircon, ZirconImage};
use crate::process::ZirconProcess;
use crate::processargs::{self, Contents, HandleInfo, HandleType, ProcessargsError};
use crate::zx::{
    AsHandleRef, Channel, Handle, HandleBased, Job, JobPolicy, Process, Resource, Rights, Status, Thread, Vmar,
    VmarFlags, Vmo, VmoChildOptions, page_size,
};

/// The initial thread's stack when the program does not ask for a size
/// (process_builder's `ZIRCON_DEFAULT_STACK_SIZE`).
pub const DEFAULT_STACK_SIZE: u64 = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{image}: {call} ({what}): {status}")]
    Zx { image: String, call: &'static str, what: String, status: Status },
    #[error("{image}: planning the mappings: {source}")]
    Plan { image: String, source: PlanError },
    #[error("{image}: the bootstrap message: {source}")]
    Processargs { image: String, source: ProcessargsError },
    #[error("{image}: the vDSO: {source}")]
    Vdso { image: String, source: ElfError },
    #[error("{image}: the vDSO has a writable segment (program header {index})")]
    VdsoWritable { image: String, index: usize },
    #[error("{image}: relocated text needs the VMEX resource (fuchsia.kernel.VmexResource), which this launcher lacks")]
    NoVmex { image: String },
    #[error("{image}: a program with an interpreter needs a fuchsia.ldsvc.Loader channel and its executable VMO")]
    NoLoader { image: String },
    #[error(
        "{image}: {count} handles from the caller, more than the {max} a bootstrap message has room for beside the \
         launcher's own",
        max = processargs::MAX_CALLER_HANDLES
    )]
    TooManyHandles { image: String, count: usize },
    #[error("{image}: region {index} names object or file {object}, which the image lacks")]
    NoObject { image: String, index: usize, object: usize },
    #[error("{image}: the image's VMAR belongs at {want:#x} but the root VMAR {why}")]
    Placement { image: String, want: u64, why: String },
    #[error("{image}: not imaged ({why}): it starts by plain loading")]
    Refused { image: String, why: String },
    #[error("{image}: cannot be loaded ({reason})")]
    Plain { image: String, reason: String },
}

/// What a start needs besides the image and the job (the shape of
/// `fuchsia.process.Launcher`'s AddArgs, AddEnvirons, AddNames, AddHandles).
#[derive(Debug, Default)]
pub struct LaunchOptions {
    /// The process (and initial thread) name.
    pub name: String,
    pub args: Vec<Vec<u8>>,
    pub environ: Vec<Vec<u8>>,
    /// Namespace paths; `PA_NS_DIR` handles index them.
    pub names: Vec<Vec<u8>>,
    /// The caller's handles (`PA_FD`, `PA_NS_DIR`, `PA_DIRECTORY_REQUEST`, ...).
    pub handles: Vec<(HandleInfo, Handle)>,
    /// The requester's program VMO: its File regions map from it, never from
    /// the file the image was first built from; an interpreter gets it.
    pub executable: Option<Vmo>,
    /// `fuchsia.ldsvc.Loader`, for the interpreter of a program that has one
    /// (a static program has no dynamic linker to give it to).
    pub loader: Option<Channel>,
    /// A vDSO to map instead of the launcher's (a caller's `PA_VMO_VDSO`).
    pub vdso: Option<Vmo>,
}

/// A process created from an image and not started: everything up to
/// `zx_process_start`, with what that call takes. The fields are those of
/// `fuchsia.process.ProcessStartData`, CreateWithoutStarting's reply.
#[derive(Debug)]
pub struct Created {
    pub process: Process,
    pub root_vmar: Vmar,
    /// The initial thread.
    pub thread: Thread,
    /// The entry point (the interpreter's, for a program with one).
    pub entry: u64,
    /// The initial stack pointer.
    pub stack: u64,
    /// The process's end of the bootstrap channel, the processargs
    /// message(s) already written to it.
    pub bootstrap: Channel,
    /// Where the vDSO is mapped (`zx_process_start`'s second argument).
    pub vdso_base: u64,
    /// Where the image's VMAR begins (the ELF image's base address).
    pub base: u64,
}

/// [`Launcher::launch`]'s arguments for the core's [`Starter`]: the job the
/// spawn's own job is created under, and the rest. The handles move into the
/// process (a second start with the same options passes none).
#[derive(Debug)]
pub struct StartOptions<'a> {
    pub job: &'a Job,
    pub options: RefCell<LaunchOptions>,
}

/// Starts processes from images.
#[derive(Debug)]
pub struct Launcher {
    /// `fuchsia.kernel.VmexResource`, for relocated text.
    vmex: Option<Resource>,
    /// The vDSO VMO (the zygote's own `PA_VDSO_VMO`, which the component
    /// takes from its startup handles).
    vdso: Vmo,
    /// The RELRO policy for every image, instead of [`Relro::for_image`]'s
    /// (e.g. `AsSegment` for a libc whose start-up stores into DT_DEBUG
    /// inside RELRO).
    relro: Option<Relro>,
}

/// A VMO to map: the image's own, or one made for this process.
enum MapVmo<'a> {
    Shared(&'a Vmo),
    Own(Vmo),
}

impl MapVmo<'_> {
    fn get(&self) -> &Vmo {
        match self {
            MapVmo::Shared(v) => v,
            MapVmo::Own(v) => v,
        }
    }
}

fn perm_flags(p: Perms) -> VmarFlags {
    let mut f = VmarFlags::empty();
    for (on, flag) in
        [(p.read, VmarFlags::PERM_READ), (p.write, VmarFlags::PERM_WRITE), (p.execute, VmarFlags::PERM_EXECUTE)]
    {
        if on {
            f |= flag;
        }
    }
    f
}

fn can_map_flags(p: Perms) -> VmarFlags {
    let mut f = VmarFlags::CAN_MAP_SPECIFIC;
    for (on, flag) in [
        (p.read, VmarFlags::CAN_MAP_READ),
        (p.write, VmarFlags::CAN_MAP_WRITE),
        (p.execute, VmarFlags::CAN_MAP_EXECUTE),
    ] {
        if on {
            f |= flag;
        }
    }
    f
}

/// The initial stack pointer at the top of `base..base+size`, as the
/// machine's calling convention wants it at function entry.
fn initial_sp(base: u64, size: u64) -> u64 {
    let top = (base + size) & !15;
    if cfg!(target_arch = "x86_64") { top - 8 } else { top }
}

impl Launcher {
    pub fn new(vmex: Option<Resource>, vdso: Vmo) -> Self {
        Launcher { vmex, vdso, relro: None }
    }

    /// Map RELRO by `relro` for every image, whatever the image says.
    pub fn with_relro(self, relro: Relro) -> Self {
        Launcher { relro: Some(relro), ..self }
    }

    /// Start a process from `image` in a job of its own under `job`, which
    /// may not create processes itself: [`Self::create`], then
    /// [`Self::start`].
    pub fn launch(
        &self,
        job: &Job,
        image: &Arc<ZirconImage>,
        opts: LaunchOptions,
    ) -> Result<ZirconProcess, LaunchError> {
        let zx = |call: &'static str, what: &str| {
            let (image, what) = (image.path().display().to_string(), what.to_string());
            move |status| LaunchError::Zx { image, call, what, status }
        };
        let job = job.create_child_job().map_err(zx("zx_job_create", "spawn job"))?;
        job.set_policy(JobPolicy::DenyNewProcess).map_err(zx("zx_job_set_policy", "ZX_POL_NEW_PROCESS deny"))?;
        let created = self.create(&job, image, opts)?;
        let process = self.start(created)?;
        Ok(ZirconProcess::new(process, job, Arc::clone(image)))
    }

    /// `zx_process_start` of a created process; the process.
    pub fn start(&self, created: Created) -> Result<Process, LaunchError> {
        let Created { process, root_vmar: _, thread, entry, stack, bootstrap, vdso_base, base: _ } = created;
        match process.start(&thread, entry, stack, Handle::from(bootstrap), vdso_base) {
            Ok(()) => Ok(process),
            Err(status) => {
                let koid = process.get_koid().map_or(0, |k| k.0);
                Err(LaunchError::Zx {
                    image: format!("process {koid}"),
                    call: "zx_process_start",
                    what: String::new(),
                    status,
                })
            }
        }
    }

    /// Create a process from `image` in `job`, everything short of starting
    /// it: the image's VMAR and mappings, the vDSO, the stack, the initial
    /// thread and the bootstrap message(s).
    pub fn create(&self, job: &Job, image: &Arc<ZirconImage>, opts: LaunchOptions) -> Result<Created, LaunchError> {
        let name = image.path().display().to_string();
        let zx = |call: &'static str, what: &str| {
            let (image, what) = (name.clone(), what.to_string());
            move |status| LaunchError::Zx { image, call, what, status }
        };
        if let Some(why) = image.fallback() {
            return Err(LaunchError::Refused { image: name, why: why.into() });
        }
        let LaunchOptions { name: pname, args, environ, names, handles, executable, loader, vdso } = opts;
        if handles.len() > processargs::MAX_CALLER_HANDLES {
            return Err(LaunchError::TooManyHandles { image: name, count: handles.len() });
        }
        // An interpreter gets the program VMO and the loader; a static
        // program's File regions map the VMO.
        let (executable, interp) = if image.kind() == ProgramKind::Dynamic {
            let (Some(loader), Some(exe)) = (loader, executable) else {
                return Err(LaunchError::NoLoader { image: name });
            };
            (None, Some((loader, exe)))
        } else {
            (executable, None)
        };
        let vdso = vdso.as_ref().unwrap_or(&self.vdso);
        let (process, root) = job.create_child_process(&pname).map_err(zx("zx_process_create", &pname))?;
        let (loaded, base) = self.map_image(image, &root, executable.as_ref())?;
        let vdso_base = self.map_vdso(&name, &root, vdso)?;
        let stack_size = self.stack_size(image, executable.as_ref());
        let (stack, sp) = map_stack(&name, &root, stack_size)?;
        let thread = process.create_thread(&pname).map_err(zx("zx_thread_create", &pname))?;
        let (ours, theirs) = Channel::create().map_err(zx("zx_channel_create", "bootstrap"))?;
        let dup = |h: &dyn AsHandleRef, what: &str| -> Result<Handle, LaunchError> {
            h.duplicate(Rights::SAME_RIGHTS).map_err(zx("zx_handle_duplicate", what))
        };
        let encode =
            |c| processargs::encode(c).map_err(|source| LaunchError::Processargs { image: name.clone(), source });
        let mut main_handles = vec![
            (HandleInfo::new(HandleType::ProcSelf, 0), dup(&process, "process")?),
            (HandleInfo::new(HandleType::ThreadSelf, 0), dup(&thread, "thread")?),
        ];
        if let Some((loader, exe)) = interp {
            let msg = encode(Contents {
                args: args.iter().take(1).cloned().collect(),
                environ: environ.iter().filter(|e| e.starts_with(b"LD_")).cloned().collect(),
                names: Vec::new(),
                handles: vec![
                    (HandleInfo::new(HandleType::LdsvcLoader, 0), Handle::from(loader)),
                    (HandleInfo::new(HandleType::ExecutableVmo, 0), Handle::from(exe)),
                    (HandleInfo::new(HandleType::VmarLoaded, 0), Handle::from(loaded)),
                    (HandleInfo::new(HandleType::ProcSelf, 0), dup(&process, "process")?),
                    (HandleInfo::new(HandleType::VmarRoot, 0), dup(&root, "root VMAR")?),
                ],
            })?;
            ours.write(&msg.bytes, msg.handles).map_err(zx("zx_channel_write", "loader bootstrap message"))?;
        } else {
            main_handles.push((HandleInfo::new(HandleType::VmarLoaded, 0), Handle::from(loaded)));
        }
        main_handles.push((HandleInfo::new(HandleType::VmarRoot, 0), dup(&root, "root VMAR")?));
        main_handles.push((HandleInfo::new(HandleType::VdsoVmo, 0), dup(vdso, "vDSO")?));
        main_handles.push((HandleInfo::new(HandleType::StackVmo, 0), Handle::from(stack)));
        main_handles.extend(handles);
        let msg = encode(Contents { args, environ, names, handles: main_handles })?;
        ours.write(&msg.bytes, msg.handles).map_err(zx("zx_channel_write", "bootstrap message"))?;
        // The messages stay queued for the process once our end is closed.
        drop(ours);
        let entry = image.entry().pc;
        Ok(Created { process, root_vmar: root, thread, entry, stack: sp, bootstrap: theirs, vdso_base, base })
    }

    /// Allocate the image's VMAR at its address and map every region into it.
    /// The VMAR and its base address.
    fn map_image(
        &self,
        image: &ZirconImage,
        root: &Vmar,
        executable: Option<&Vmo>,
    ) -> Result<(Vmar, u64), LaunchError> {
        let name = image.path().display().to_string();
        let plan = vmar::plan(
            image.regions(),
            self.relro.unwrap_or_else(|| Relro::for_image(image.kind(), image.relocs().left_to_program)),
        )
        .map_err(|source| LaunchError::Plan { image: name.clone(), source })?;
        let (root_base, root_len) = root.info().map_err(|status| LaunchError::Zx {
            image: name.clone(),
            call: "zx_object_get_info",
            what: "ZX_INFO_VMAR of the root VMAR".into(),
            status,
        })?;
        let placement = |why: String| LaunchError::Placement { image: name.clone(), want: plan.base, why };
        let offset = plan
            .base
            .checked_sub(root_base)
            .filter(|o| o + plan.size <= root_len)
            .ok_or_else(|| placement(format!("spans {root_base:#x}..{:#x}", root_base + root_len)))?;
        let flags = VmarFlags::SPECIFIC | can_map_flags(plan.can_map);
        let (vmar, addr) = root.allocate(offset, plan.size, flags).map_err(|status| LaunchError::Zx {
            image: name.clone(),
            call: "zx_vmar_allocate",
            what: format!("{:#x} bytes at {:#x}", plan.size, plan.base),
            status,
        })?;
        if addr != plan.base {
            return Err(placement(format!("gave {addr:#x}")));
        }
        for (index, step) in plan.steps.iter().enumerate() {
            let (vmo, vmo_offset) = self.step_vmo(image, index, step, executable)?;
            let flags = VmarFlags::SPECIFIC | perm_flags(step.perms);
            vmar.map(step.vmar_offset, vmo.get(), vmo_offset, step.len, flags).map_err(|status| LaunchError::Zx {
                image: name.clone(),
                call: "zx_vmar_map",
                what: format!("{:?} at {:#x} (+{:#x})", step.source, plan.base + step.vmar_offset, step.len),
                status,
            })?;
        }
        Ok((vmar, plan.base))
    }

    /// The VMO (and offset in it) step `index` maps, making the process's
    /// own children and fresh VMOs.
    fn step_vmo<'a>(
        &self,
        image: &'a ZirconImage,
        index: usize,
        step: &MapStep,
        executable: Option<&'a Vmo>,
    ) -> Result<(MapVmo<'a>, u64), LaunchError> {
        let name = || image.path().display().to_string();
        let zx = |call: &'static str| {
            move |status| LaunchError::Zx { image: name(), call, what: format!("{:?}", step.source), status }
        };
        let key = image.key().to_string();
        let file = |file: usize| -> Result<&'a Vmo, LaunchError> {
            match (file, executable) {
                (0, Some(v)) => Ok(v),
                _ => image.files().get(file).map(|f| &f.file.vmo).ok_or(LaunchError::NoObject {
                    image: name(),
                    index,
                    object: file,
                }),
            }
        };
        let sealed = |object: usize| {
            image.objects().get(object).map(|o| o.vmo()).ok_or(LaunchError::NoObject { image: name(), index, object })
        };
        let cow = VmoChildOptions::SNAPSHOT_AT_LEAST_ON_WRITE;
        let own = |vmo: Vmo, what: &str| -> Result<(MapVmo<'a>, u64), LaunchError> {
            vmo.set_name(&vmar::vmo_name(&key, what)).map_err(zx("zx_object_set_property"))?;
            Ok((MapVmo::Own(vmo), 0))
        };
        match step.source {
            Source::File { file: f, offset } => Ok((MapVmo::Shared(file(f)?), offset)),
            Source::FileChild { file: f, offset, len } => own(
                file(f)?.create_child(cow, offset, len).map_err(zx("zx_vmo_create_child"))?,
                &format!("phdr{}", step.segment),
            ),
            Source::Sealed { object, offset } => Ok((MapVmo::Shared(sealed(object)?), offset)),
            Source::SealedExecutable { object, offset } => {
                let vmex = self.vmex.as_ref().ok_or(LaunchError::NoVmex { image: name() })?;
                let dup = sealed(object)?.duplicate_handle(Rights::SAME_RIGHTS).map_err(zx("zx_handle_duplicate"))?;
                let exe = dup.replace_as_executable(vmex).map_err(zx("zx_vmo_replace_as_executable"))?;
                Ok((MapVmo::Own(exe), offset))
            }
            Source::SealedChild { object, offset, len } => own(
                sealed(object)?.create_child(cow, offset, len).map_err(zx("zx_vmo_create_child"))?,
                &format!("phdr{}", step.segment),
            ),
            Source::Fresh { len } => own(Vmo::create(len).map_err(zx("zx_vmo_create"))?, "bss"),
        }
    }

    /// The initial stack's size: a static program's PT_GNU_STACK p_memsz
    /// when it sets one (read from its first page), else the default (an
    /// interpreter makes the program's stack itself).
    fn stack_size(&self, image: &ZirconImage, executable: Option<&Vmo>) -> u64 {
        if image.kind() == ProgramKind::Dynamic {
            return DEFAULT_STACK_SIZE;
        }
        let Some(vmo) = executable.or_else(|| image.files().first().map(|f| &f.file.vmo)) else {
            return DEFAULT_STACK_SIZE;
        };
        let mut head = vec![0u8; page_size() as usize];
        let size = vmo.get_content_size().unwrap_or(0);
        head.truncate(size.min(head.len() as u64) as usize);
        let asked =
            vmo.read(&mut head, 0).ok().and_then(|()| decode_as_is(&head, size).ok()).and_then(|h| h.stack?.size());
        asked.unwrap_or(DEFAULT_STACK_SIZE)
    }

    /// Map the vDSO's segments where the kernel chooses; its base address.
    fn map_vdso(&self, image: &str, root: &Vmar, vdso: &Vmo) -> Result<u64, LaunchError> {
        let zx = |call: &'static str, what: &str| {
            let (image, what) = (image.to_string(), what.to_string());
            move |status| LaunchError::Zx { image, call, what, status }
        };
        let mut head = vec![0u8; page_size() as usize];
        let size = vdso.get_size().map_err(zx("zx_vmo_get_size", "vDSO"))?;
        head.truncate(size.min(head.len() as u64) as usize);
        vdso.read(&mut head, 0).map_err(zx("zx_vmo_read", "vDSO headers"))?;
        let h = decode_as_is(&head, size).map_err(|source| LaunchError::Vdso { image: image.into(), source })?;
        if let Some(l) = h.segments.iter().find(|l| l.writable()) {
            return Err(LaunchError::VdsoWritable { image: image.into(), index: l.index });
        }
        let (start, end) = (h.start(), h.end());
        let flags = VmarFlags::CAN_MAP_SPECIFIC | VmarFlags::CAN_MAP_READ | VmarFlags::CAN_MAP_EXECUTE;
        let (vmar, addr) = root.allocate(0, end - start, flags).map_err(zx("zx_vmar_allocate", "vDSO"))?;
        for l in &h.segments {
            let from = page_down(l.vaddr);
            let len = page_up(l.vaddr + l.memsz) - from;
            let perms = Perms::from_prot(l.prot());
            let flags = VmarFlags::SPECIFIC | perm_flags(perms);
            let off = page_down(l.offset);
            vmar.map(from - start, vdso, off, len, flags).map_err(zx("zx_vmar_map", "vDSO segment"))?;
        }
        Ok(addr.wrapping_sub(start))
    }
}

/// A stack VMO of `size` bytes mapped read-write where the kernel chooses;
/// the VMO (for `PA_VMO_STACK`) and the initial stack pointer.
fn map_stack(image: &str, root: &Vmar, size: u64) -> Result<(Vmo, u64), LaunchError> {
    let zx = |call: &'static str| {
        let image = image.to_string();
        move |status| LaunchError::Zx { image, call, what: "initial stack".into(), status }
    };
    let size = page_up(size);
    let vmo = Vmo::create(size).map_err(zx("zx_vmo_create"))?;
    vmo.set_name("zyg:stack").map_err(zx("zx_object_set_property"))?;
    let base = root.map(0, &vmo, 0, size, VmarFlags::PERM_READ | VmarFlags::PERM_WRITE).map_err(zx("zx_vmar_map"))?;
    Ok((vmo, initial_sp(base, size)))
}

/// The core's start interface: a job of the spawn's own under `job`, the
/// options' handles moved into the process.
impl Starter<Zircon> for Launcher {
    type Options<'a> = StartOptions<'a>;
    type Process = ZirconProcess;
    type Error = LaunchError;

    fn start(&self, image: &Arc<ZirconImage>, options: &StartOptions<'_>) -> Result<ZirconProcess, LaunchError> {
        let opts = std::mem::take(&mut *options.options.borrow_mut());
        self.launch(options.job, image, opts)
    }
}
