//! `zygote-stub`: the daemon's launcher (see the library's docs).
#![no_std]
#![no_main]

zygote_stub::entry!(zygote_stub::stub_main);
