//! The Linux daemon's protocol, the Linux form of `fidl/fuchsia.process.zygote.fidl`:
//! length-prefixed frames with fds attached, JSON messages, and the blocking
//! client. Shared by the daemon, the CLI and the measurement tools.

#![deny(unsafe_code)]

pub mod client;
pub mod frame;
pub mod message;
