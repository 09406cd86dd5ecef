//! `zygote-exec`: the thin exec client (see the library's `client` module).
#![no_std]
#![no_main]

zygote_stub::entry!(zygote_stub::client::client_main);
