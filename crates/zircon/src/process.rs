//! A process started from an image: its koid, its job (a spawn's own, which
//! dies with it), waiting, killing, and measuring its mappings of the image
//! (`ZX_INFO_PROCESS_MAPS` and `ZX_INFO_PROCESS_VMOS`, joined with the image's
//! sealed VMOs by [`crate::account`]).

use std::io;
use std::sync::Arc;

use zygote_core::kernel::{ExitStatus, Process as CoreProcess};
use zygote_core::metrics::{ImageLayout, ProcessUsage};

use crate::account::{self, MapRecord, SealedRecord, VmoRecord};
use crate::kernel::ZirconImage;
use crate::zx::{AsHandleRef, Job, Process, Status};

/// `ZX_TASK_RETCODE_SYSCALL_KILL`: the return code of a killed process.
pub const RETCODE_KILLED: i64 = -1024;
/// The signal a killed process is reported as (Zircon has none: any kill
/// is SIGKILL's).
const SIGKILL: i32 = 9;

/// What the kernel says about a process's memory and the image's VMOs.
struct Records {
    maps: Vec<MapRecord>,
    vmos: Vec<VmoRecord>,
    sealed: Vec<SealedRecord>,
}

/// A started process.
#[derive(Debug)]
pub struct ZirconProcess {
    process: Process,
    /// The spawn's job (with the raw-process policy); closing the last handle
    /// to a job with no children lets the kernel reclaim it.
    job: Job,
    koid: u64,
    image: Arc<ZirconImage>,
}

impl ZirconProcess {
    pub(crate) fn new(process: Process, job: Job, image: Arc<ZirconImage>) -> Self {
        let koid = process.get_koid().map_or(0, |k| k.0);
        ZirconProcess { process, job, koid, image }
    }
    pub fn process(&self) -> &Process {
        &self.process
    }
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The records [`account::mappings`] joins.
    fn records(&self) -> Result<Records, Status> {
        let maps = self.process.info_maps()?;
        let maps = maps
            .iter()
            .map(|m| MapRecord { base: m.base, size: m.size, vmo_koid: m.vmo_koid.0, committed: m.committed_bytes })
            .collect();
        let vmos = self.process.info_vmos()?;
        let vmos = vmos
            .iter()
            .map(|v| VmoRecord {
                koid: v.koid.0,
                parent_koid: v.parent_koid.0,
                committed: v.committed_bytes,
                share_count: v.share_count,
            })
            .collect();
        let mut sealed = Vec::with_capacity(self.image.objects().len());
        for o in self.image.objects() {
            let i = o.vmo().info()?;
            sealed.push(SealedRecord {
                koid: i.koid.0,
                size: i.size_bytes,
                committed: i.committed_bytes,
                users: i.num_children + i.num_mappings,
            });
        }
        Ok(Records { maps, vmos, sealed })
    }
}

impl CoreProcess for ZirconProcess {
    fn id(&self) -> u64 {
        self.koid
    }
    fn wait(&mut self) -> io::Result<ExitStatus> {
        let code = self.process.wait_terminated()?;
        Ok(if code == RETCODE_KILLED { ExitStatus::Signaled(SIGKILL) } else { ExitStatus::Exited(code as i32) })
    }
    /// Any signal kills: Zircon has `zx_task_kill` only.
    fn kill(&self, _signal: i32) -> io::Result<()> {
        Ok(self.process.kill()?)
    }
    fn measure(&self, layout: &ImageLayout) -> io::Result<Option<ProcessUsage>> {
        if self.process.info()?.exited {
            return Ok(None);
        }
        let r = self.records()?;
        Ok(Some(layout.account(&account::mappings(&r.maps, &r.vmos, &r.sealed))))
    }
}
