//! `routes.toml`: parsed into `*Spec` structs ([`spec`]), validated into the typed [`model`] the router runs on
//! ([`validate`]), and compared route by route on reload ([`diff`]).
//!
//! Invariants: a [`model::RouteTable`] is always valid (every name unique, every reference resolved, every
//! address parsed, every `${VAR}` expanded). Errors point at file:line:col of the offending key and say what to
//! write instead; their text is part of the interface and tests assert it exactly.

pub mod diff;
pub mod edit;
pub mod error;
pub mod interpolate;
pub mod model;
pub mod spec;
pub mod units;
pub mod validate;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use model::RouteTable;

/// Reads and validates a routes file, expanding `${VAR}` from the process environment.
pub fn load(path: &Path) -> Result<RouteTable, ConfigErrors> {
    let text = read(path)?;
    parse(&text, &path.display().to_string(), &|name| std::env::var(name).ok())
}

/// The text of a routes file, refused when it is too large to be one.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    let label = path.display().to_string();
    let error = |message: String| ConfigErrors::single(ConfigError::file(&label, message, None));
    // Checked before reading: a huge file costs memory and parse time before validation could refuse it.
    let size = std::fs::metadata(path).map_err(|e| error(format!("cannot read the file: {e}")))?.len();
    if size > MAX_FILE_BYTES {
        return Err(error(format!(
            "the file is {size} bytes; routes files may be at most {MAX_FILE_BYTES} bytes ({} MiB)",
            MAX_FILE_BYTES >> 20
        )));
    }
    std::fs::read_to_string(path).map_err(|e| error(format!("cannot read the file: {e}")))
}

/// The largest routes file read: ten thousand routes (validate's cap) with long comments fit well within it.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// Validates routes-file text. `file` names it in messages; `env` resolves `${VAR}`.
pub fn parse(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<RouteTable, ConfigErrors> {
    let spec = spec::parse(text, file)?;
    validate::validate(spec, text, file, env)
}
