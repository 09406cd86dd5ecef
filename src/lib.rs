//! zygote, the product: the Linux daemon's service (server, peers, limits,
//! socket directory, the metrics endpoint), its configuration, and the
//! client-side commands of the CLI. The layers below are crates of their own
//! (see docs/ARCHITECTURE.md): `zygote-core` (kernel-neutral), `zygote-linux`
//! (the backend), `zygote-protocol` (frames, messages, client), and
//! `zygote-tools` (measurement, behind the default `tools` feature).

#![deny(unsafe_code)]

pub mod config;
pub mod remote;
pub mod service;
