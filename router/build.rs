//! Puts into the binary what `sluice` needs beside its code, so `cargo run` needs no extra step:
//! - the browser files in `../web`: `$OUT_DIR/web_assets.rs`, a table of (path, bytes) that `api::web` serves;
//! - the built-in plugins in `../plugins`, compiled to wasm32-wasip2 components: `$OUT_DIR/builtin_plugins.rs`
//!   (see `build/plugins.rs`).

#[path = "build/plugins.rs"]
mod plugins;
#[path = "build/wasm_target.rs"]
mod wasm_target;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const SERVED: [&str; 9] = ["html", "js", "mjs", "css", "svg", "png", "ico", "webmanifest", "txt"];
/// Development-only folders: dependencies and browser tests are not part of the UI.
const SKIPPED_DIRS: [&str; 3] = ["node_modules", "tests", "test-results"];

fn main() {
    // First, before anything else is printed: when the target cannot be had, the one line saying so is all a
    // newcomer's failed build shows from this script.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Err(line) = wasm_target::ensure(&rustc) {
        eprintln!("error: {line}");
        std::process::exit(1);
    }
    web_assets();
    plugins::build();
}

fn web_assets() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let mut files = Vec::new();
    collect(&web, &web, &mut files);
    files.sort();
    let mut out = String::from("pub static WEB_ASSETS: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        println!("cargo:rerun-if-changed={}", abs.display());
        writeln!(out, "    ({rel:?}, include_bytes!({:?})),", abs.display().to_string()).expect("write to string");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_assets.rs");
    std::fs::write(dest, out).expect("write web_assets.rs");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) && !name.starts_with('.') {
                collect(root, &path, files);
            }
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| SERVED.contains(&e)) {
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            files.push((rel, std::fs::canonicalize(&path).unwrap_or(path)));
        }
    }
}
