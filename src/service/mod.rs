//! The service: protocol messages, framing, peer checks, the Linux server and
//! client (mini-redis style: one small module each).

pub mod client;
pub mod frame;
pub mod limits;
pub mod message;
pub mod peer;
pub mod server;
pub mod sockdir;
