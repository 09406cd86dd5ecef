//! The Linux daemon's service (mini-redis style: one small module each): the
//! server, peer admission, connection limits, the socket directory and the
//! loopback metrics endpoint. Frames, messages and the client are
//! `zygote-protocol`.

pub mod http;
pub mod limits;
pub mod peer;
pub mod server;
pub mod sockdir;

pub use zygote_protocol::{client, frame, message};
