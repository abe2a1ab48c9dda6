//! Builds every crate in `../plugins` for wasm32-wasip2 with a nested cargo, in its own target directory (the
//! outer build holds the lock on ours). Built-ins (`auth-*`, `record-*`, `signal-*`) are embedded through
//! `$OUT_DIR/builtin_plugins.rs`; the others (the SDK example, the hostile test plugins) are left for the tests,
//! which find them through `SLUICE_TEST_PLUGINS`. Each built-in must be exercised by the host tests
//! (`tests/plugin_host.rs` names `builtin:NAME`), or the build fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::wasm_target::WASM_TARGET;
const BUILTIN_PREFIXES: [&str; 3] = ["auth-", "record-", "signal-"];

pub fn build() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("the router sits in the workspace").to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The root manifest holds the `plugin` profile; the recorder is built on the media crate (its fMP4 muxer).
    for watched in ["plugins", "sdk/src", "sdk/wit", "sdk/Cargo.toml", "router/media", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", manifest.join("tests/plugin_host.rs").display());

    let crates = plugin_crates(&root.join("plugins"));
    // OUT_DIR is <target>/<profile>/build/<pkg>/out: the wasm builds go to <target>/plugins.
    let target_dir = out.ancestors().nth(4).expect("OUT_DIR is inside the target directory").join("plugins");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&root)
        .args(["build", "--profile", "plugin", "--locked", "--target", WASM_TARGET, "--target-dir"])
        .arg(&target_dir);
    for (package, _) in &crates {
        cargo.args(["-p", package]);
    }
    // Flags meant for the host build must not leak into the wasm one.
    for var in
        ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTC_WORKSPACE_WRAPPER"]
    {
        cargo.env_remove(var);
    }
    let status = cargo.status().expect("run cargo to build the plugins");
    assert!(status.success(), "building the plugins for {WASM_TARGET} failed (see above)");

    let wasm_dir = target_dir.join(WASM_TARGET).join("plugin");
    let host_tests = std::fs::read_to_string(manifest.join("tests/plugin_host.rs")).unwrap_or_default();
    let mut table = String::from("&[\n");
    for (package, dir) in &crates {
        let wasm = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(wasm.is_file(), "{} was not built", wasm.display());
        if BUILTIN_PREFIXES.iter().any(|p| dir.starts_with(p)) {
            assert!(
                host_tests.contains(&format!("builtin:{dir}")),
                "the built-in plugin {dir} has no test under the real host: name `builtin:{dir}` in router/tests/plugin_host.rs"
            );
            table.push_str(&format!("    ({dir:?}, include_bytes!({:?})),\n", wasm.display().to_string()));
        }
    }
    table.push_str("]\n");
    std::fs::write(out.join("builtin_plugins.rs"), table).expect("write builtin_plugins.rs");
    println!("cargo:rustc-env=SLUICE_TEST_PLUGINS={}", wasm_dir.display());
}

/// (package name, folder name) of every crate under `plugins/`.
fn plugin_crates(dir: &Path) -> Vec<(String, String)> {
    let mut crates = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read plugins/").flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \"").and_then(|r| r.strip_suffix('"')))
            .unwrap_or_else(|| panic!("{} has no package name", manifest.display()));
        crates.push((name.to_string(), entry.file_name().to_string_lossy().to_string()));
    }
    crates.sort();
    crates
}
