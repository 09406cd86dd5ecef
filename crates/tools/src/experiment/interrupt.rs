//! SIGINT and SIGTERM set a flag (once handled, for the rest of the process's life)
//! that the experiment's loops check, so every instance is stopped before it ends.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use super::ExperimentError;

/// The last signal received, or 0.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Install the handlers (once per process) and clear the flag. The handlers are
/// tokio's (a self-pipe written by an async-signal-safe handler), read by a thread.
pub fn install() -> io::Result<()> {
    static INSTALLED: OnceLock<Result<(), (io::ErrorKind, String)>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| install_once().map_err(|e| (e.kind(), e.to_string())));
    SIGNAL.store(0, Ordering::SeqCst);
    r.clone().map_err(|(kind, msg)| io::Error::new(kind, msg))
}

fn install_once() -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    // Registered before this returns: a signal from now on sets the flag.
    let (mut int, mut term) = {
        let _guard = rt.enter();
        (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?)
    };
    std::thread::Builder::new().name("experiment-signals".into()).spawn(move || {
        rt.block_on(async move {
            loop {
                let sig = tokio::select! {
                    Some(()) = int.recv() => libc::SIGINT,
                    Some(()) = term.recv() => libc::SIGTERM,
                    else => return,
                };
                SIGNAL.store(sig, Ordering::SeqCst);
            }
        })
    })?;
    Ok(())
}

/// The signal that asked us to stop, if one did.
pub fn pending() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

pub(super) fn check_interrupt() -> Result<(), ExperimentError> {
    match pending() {
        Some(signal) => Err(ExperimentError::Interrupted { signal }),
        None => Ok(()),
    }
}
