//! `sluice import`: another server's configuration turned into a routes file. Each converter is a pure function
//! from the other file's text to routes.toml text and the list of settings it could not carry over, so it is
//! tested without files; the command checks the result with the router's own validation before writing it.

pub mod mediamtx;

use std::path::Path;

/// A converted file: the routes.toml text, and what did not convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub routes_toml: String,
    pub skipped: Vec<Skipped>,
}

/// A setting left behind, with why and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where it was, e.g. `paths.cam1.runOnReady`.
    pub setting: String,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.reason)
    }
}

/// Converts the MediaMTX file at `input`, checks the result as `sluice check` would (the file's syntax, names and
/// plugin configs; `${VAR}`s are not expanded) and writes it to `output` (refusing to replace a file unless
/// `force`), or returns it to print.
pub fn import_mediamtx(input: &Path, output: Option<&Path>, force: bool) -> Result<Conversion, String> {
    let size = std::fs::metadata(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?.len();
    if size > crate::config::MAX_FILE_BYTES {
        return Err(format!("{} is {size} bytes, too large for a MediaMTX configuration", input.display()));
    }
    let text = std::fs::read_to_string(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let conversion = mediamtx::convert(&text).map_err(|e| format!("{}: {e}", input.display()))?;
    // The converter's output is valid by construction; a failure here is the importer's bug, shown as such.
    let label = output.map_or_else(|| "the converted file".to_string(), |p| p.display().to_string());
    crate::config::parse(&conversion.routes_toml, &label, &|_| Some(String::new())).map_err(|e| {
        format!("the converted file does not validate (a bug in `sluice import`; please report it):\n{e}")
    })?;
    if let Some(output) = output {
        if output.exists() && !force {
            return Err(format!("{} exists; pass --force to replace it", output.display()));
        }
        std::fs::write(output, &conversion.routes_toml)
            .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    }
    Ok(conversion)
}
