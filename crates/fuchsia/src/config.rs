//! The component's structured configuration (meta/zygote.cml's `config`
//! block, values in meta/zygote_config_values.json5): only what means
//! something on Fuchsia. The Linux daemon's socket, uid, connection and
//! metrics-port settings have no Fuchsia meaning (routing is the access
//! control; statistics go to Inspect), and pre-started launchers are not
//! configured here: a process cannot change jobs, and a launch names the job
//! (docs/FUCHSIA.md). Field names and types are those of the Linux
//! configuration for the same setting; tests/fuchsia_files checks both.

use zygote_core::cache::CacheConfig;

/// Every field, with its structured-config type as the CML spells it.
pub const FIELDS: [(&str, &str); 4] = [
    ("cache_max_entries", "uint64"),
    ("cache_max_bytes", "uint64"),
    ("log_filter", "string"),
    ("preload", "vector<string>"),
];

/// Longest `log_filter`: a severity name.
pub const MAX_LOG_FILTER: usize = 16;
/// Most `preload` entries, and the longest (a path in the namespace).
pub const MAX_PRELOAD: usize = 256;
pub const MAX_PRELOAD_PATH: usize = 4096;
/// The severities `log_filter` may name, least severe first.
pub const SEVERITIES: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// The configuration as the component reads it (the glue copies
/// `zygote_config::Config` into this).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub cache_max_entries: u64,
    pub cache_max_bytes: u64,
    pub log_filter: String,
    pub preload: Vec<String>,
}

/// A configuration value out of bounds, naming the field.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config.{field}: {why}")]
    Field { field: &'static str, why: String },
}

fn field(field: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Field { field, why: why.into() }
}

impl Config {
    /// Check the bounds the CML cannot express, and those it does (so a
    /// value file that passes one passes the other).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cache_max_entries == 0 {
            return Err(field("cache_max_entries", "must be at least 1"));
        }
        if usize::try_from(self.cache_max_entries).is_err() {
            return Err(field("cache_max_entries", "does not fit this machine's usize"));
        }
        if self.log_filter.len() > MAX_LOG_FILTER || !SEVERITIES.contains(&self.log_filter.as_str()) {
            return Err(field("log_filter", format!("must be one of {SEVERITIES:?}, not {:?}", self.log_filter)));
        }
        if self.preload.len() > MAX_PRELOAD {
            return Err(field("preload", format!("{} entries, more than {MAX_PRELOAD}", self.preload.len())));
        }
        for (i, p) in self.preload.iter().enumerate() {
            if !p.starts_with('/') || p.len() > MAX_PRELOAD_PATH {
                return Err(field(
                    "preload",
                    format!("entry {i} must be an absolute path of at most {MAX_PRELOAD_PATH} bytes: {p:?}"),
                ));
            }
        }
        Ok(())
    }

    pub fn cache(&self) -> CacheConfig {
        let max_entries = usize::try_from(self.cache_max_entries).unwrap_or(usize::MAX);
        CacheConfig { max_entries, max_bytes: self.cache_max_bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Config {
        Config { cache_max_entries: 64, cache_max_bytes: 1 << 30, log_filter: "info".into(), preload: vec![] }
    }

    #[test]
    fn bounds_name_their_field() {
        assert_eq!(ok().validate(), Ok(()));
        assert_eq!(ok().cache(), CacheConfig { max_entries: 64, max_bytes: 1 << 30 });
        let err = |c: Config| c.validate().unwrap_err().to_string();
        assert!(err(Config { cache_max_entries: 0, ..ok() }).starts_with("config.cache_max_entries:"));
        assert!(err(Config { log_filter: "loud".into(), ..ok() }).starts_with("config.log_filter:"));
        assert!(err(Config { preload: vec!["rel/path".into()], ..ok() }).starts_with("config.preload:"));
        let many = vec!["/p".to_string(); MAX_PRELOAD + 1];
        assert!(err(Config { preload: many, ..ok() }).contains("257 entries"));
        let longest = format!("/{}", "a".repeat(MAX_PRELOAD_PATH - 1));
        assert_eq!(Config { preload: vec![longest.clone() + ""], ..ok() }.validate(), Ok(()));
        assert!(err(Config { preload: vec![longest + "a"], ..ok() }).contains("entry 0"));
    }
}
