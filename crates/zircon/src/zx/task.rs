//! Tasks: jobs (children, policy), processes (create, start, info, maps,
//! VMOs, kill) and threads.

use super::handle::{AsHandleRef, Handle, Status, handle_type};
use super::object::{MapsEntry, VmoInfo, get_info_one, get_info_vec, maps_entry, page_size};
use super::sys;
use super::vm::Vmar;

handle_type!(
    /// A job: a group of processes and jobs, with policies.
    Job
);
handle_type!(
    /// A process.
    Process
);
handle_type!(
    /// A thread.
    Thread
);

/// A basic job policy: what happens when a process of the job asks for
/// `condition` (`ZX_POL_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobPolicy {
    /// `ZX_POL_NEW_PROCESS` denied: processes in the job cannot create
    /// processes with `zx_process_create` (they go through a launcher).
    DenyNewProcess,
}

/// `ZX_INFO_PROCESS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub return_code: i64,
    pub started: bool,
    pub exited: bool,
}

fn name_bytes(name: &str) -> &[u8] {
    &name.as_bytes()[..name.len().min(sys::ZX_MAX_NAME_LEN - 1)]
}

impl Job {
    pub fn create_child_job(&self) -> Result<Job, Status> {
        let mut out = sys::ZX_HANDLE_INVALID;
        // SAFETY: `out` is a valid out-pointer.
        let s = unsafe { sys::zx_job_create(self.raw_handle(), 0, &mut out) };
        Status::ok(s)?;
        Handle::from_raw(out).map(Job)
    }

    /// Add a basic policy (relative: it may only tighten the parent's).
    pub fn set_policy(&self, policy: JobPolicy) -> Result<(), Status> {
        let entry = match policy {
            JobPolicy::DenyNewProcess => {
                sys::zx_policy_basic { condition: sys::ZX_POL_NEW_PROCESS, policy: sys::ZX_POL_ACTION_DENY }
            }
        };
        // SAFETY: `entry` is one valid zx_policy_basic record for the call.
        let s = unsafe {
            sys::zx_job_set_policy(
                self.raw_handle(),
                sys::ZX_JOB_POL_RELATIVE,
                sys::ZX_JOB_POL_BASIC,
                (&entry as *const sys::zx_policy_basic).cast::<u8>(),
                1,
            )
        };
        Status::ok(s)
    }

    /// A new, unstarted process in this job, and its root VMAR.
    pub fn create_child_process(&self, name: &str) -> Result<(Process, Vmar), Status> {
        let name = name_bytes(name);
        let (mut p, mut v) = (sys::ZX_HANDLE_INVALID, sys::ZX_HANDLE_INVALID);
        // SAFETY: `name` is valid for reads of its length; `p` and `v` are valid out-pointers.
        let s = unsafe { sys::zx_process_create(self.raw_handle(), name.as_ptr(), name.len(), 0, &mut p, &mut v) };
        Status::ok(s)?;
        let process = Process(Handle::from_raw(p)?);
        Ok((process, Vmar::from(Handle::from_raw(v)?)))
    }
}

impl Process {
    pub fn create_thread(&self, name: &str) -> Result<Thread, Status> {
        let name = name_bytes(name);
        let mut out = sys::ZX_HANDLE_INVALID;
        // SAFETY: `name` is valid for reads of its length; `out` is a valid out-pointer.
        let s = unsafe { sys::zx_thread_create(self.raw_handle(), name.as_ptr(), name.len(), 0, &mut out) };
        Status::ok(s)?;
        Handle::from_raw(out).map(Thread)
    }

    /// Start the process: `thread` at `entry` with stack pointer `stack`;
    /// the new thread gets `arg1` (the bootstrap channel, which moves into
    /// the process) and `arg2` (the vDSO base) in its first two registers.
    pub fn start(&self, thread: &Thread, entry: u64, stack: u64, arg1: Handle, arg2: u64) -> Result<(), Status> {
        let (entry, stack, arg2) = (entry as usize, stack as usize, arg2 as usize);
        let raw = arg1.into_raw();
        // SAFETY: plain values and handles; the call consumes `raw`, even on failure.
        let s = unsafe { sys::zx_process_start(self.raw_handle(), thread.raw_handle(), entry, stack, raw, arg2) };
        Status::ok(s)
    }

    pub fn info(&self) -> Result<ProcessInfo, Status> {
        let mut info = sys::zx_info_process_t::default();
        get_info_one(self.raw_handle(), sys::ZX_INFO_PROCESS, &mut info)?;
        Ok(ProcessInfo {
            return_code: info.return_code,
            started: info.flags & sys::ZX_INFO_PROCESS_FLAG_STARTED != 0,
            exited: info.flags & sys::ZX_INFO_PROCESS_FLAG_EXITED != 0,
        })
    }

    /// Its mappings (`ZX_INFO_PROCESS_MAPS`).
    pub fn info_maps(&self) -> Result<Vec<MapsEntry>, Status> {
        // SAFETY: zx_info_maps_t is a plain C record for which all zeroes is valid.
        let zero: sys::zx_info_maps_t = unsafe { std::mem::zeroed() };
        let page = page_size();
        let all = get_info_vec(self.raw_handle(), sys::ZX_INFO_PROCESS_MAPS, zero)?;
        Ok(all.iter().filter_map(|m| maps_entry(m, page)).collect())
    }

    /// The VMOs it maps or holds handles to (`ZX_INFO_PROCESS_VMOS`).
    pub fn info_vmos(&self) -> Result<Vec<VmoInfo>, Status> {
        let all = get_info_vec(self.raw_handle(), sys::ZX_INFO_PROCESS_VMOS, sys::zx_info_vmo_t::default())?;
        Ok(all.iter().map(VmoInfo::from).collect())
    }

    pub fn kill(&self) -> Result<(), Status> {
        // SAFETY: a plain handle argument.
        let s = unsafe { sys::zx_task_kill(self.raw_handle()) };
        Status::ok(s)
    }

    /// Wait for it to terminate; its return code.
    pub fn wait_terminated(&self) -> Result<i64, Status> {
        self.wait_one(sys::ZX_PROCESS_TERMINATED)?;
        Ok(self.info()?.return_code)
    }
}
