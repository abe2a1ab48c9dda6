//! `routes.toml`: parsed into `*Spec` structs ([`spec`]), validated into the typed [`model`] the router runs on
//! ([`validate`]), and compared route by route on reload ([`diff`]).
//!
//! Invariants: a [`model::RouteTable`] is always valid (every name unique, every reference resolved, every
//! address parsed, every `${VAR}` expanded). Errors point at file:line:col of the offending key and say what to
//! write instead; their text is part of the interface and tests assert it exactly.

pub mod diff;
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
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::single(ConfigError::file(&label, format!("cannot read the file: {e}"), None)))?;
    parse(&text, &label, &|name| std::env::var(name).ok())
}

/// Validates routes-file text. `file` names it in messages; `env` resolves `${VAR}`.
pub fn parse(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<RouteTable, ConfigErrors> {
    let spec = spec::parse(text, file)?;
    validate::validate(spec, text, file, env)
}
