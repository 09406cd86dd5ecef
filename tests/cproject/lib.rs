//! Empty: this manifest only fetches lua-src (see Cargo.toml).
